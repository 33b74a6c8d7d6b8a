// Small conveniences for the review pages; everything works without them.
(function () {
  "use strict";

  // "3 of 5 criteria rated" next to the submit button, so a missed criterion is noticed before submitting.
  function updateRatedCount() {
    var form = document.getElementById("review-form");
    var out = document.getElementById("rated-count");
    if (!form || !out) return;
    var criteria = form.querySelectorAll("fieldset.criterion");
    var rated = form.querySelectorAll("fieldset.criterion input[type=radio]:checked").length;
    out.textContent = rated + " of " + criteria.length + " criteria rated";
  }

  // An HTMX request that failed without a partial to show (403, 500, network): say so instead of doing nothing.
  function showError(text) {
    var box = document.getElementById("messages");
    if (!box) return;
    var div = document.createElement("div");
    div.className = "message message-error";
    div.setAttribute("role", "alert");
    div.textContent = text;
    box.appendChild(div);
    window.scrollTo({ top: 0, behavior: "smooth" });
  }

  document.addEventListener("DOMContentLoaded", updateRatedCount);
  document.addEventListener("change", function (event) {
    if (event.target.closest && event.target.closest("#review-form")) updateRatedCount();
  });
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    showError(status === 403 ? "You are not allowed to do that." : "Something went wrong (HTTP " + status + "). Reload the page and try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    showError("The server could not be reached. Your change was not saved.");
  });
})();
