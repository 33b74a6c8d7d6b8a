// Dashboard charts: each figure is a JSON data block (<script type="application/json" id="chart-data-NAME">, written by
// Django's json_script) drawn into <div id="chart-NAME">; plotly.min.js (served from the installed plotly wheel) draws it. No inline script, no eval; plotly's
// own stylesheet is a linked file (static/vendor/plotly/plotly.css) marked no-inline-styles. Without JavaScript the
// tables below hold the same numbers.
(function () {
  "use strict";

  function draw() {
    if (typeof window.Plotly === "undefined") return;
    document.querySelectorAll('script[type="application/json"][id^="chart-data-"]').forEach(function (block) {
      var target = document.getElementById("chart-" + block.id.slice("chart-data-".length));
      if (!target) return;
      var figure = JSON.parse(block.textContent);
      window.Plotly.newPlot(target, figure.data, figure.layout, { displayModeBar: false, responsive: true });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
  // A filter change replaces the results (htmx): draw the charts it brought.
  document.addEventListener("htmx:afterSettle", draw);
})();
