// Sortable dashboard tables: a click on a column's header sorts by it, a second click reverses. Numbers sort by
// value (data-sort), undefined values last whatever the direction; the page works without this file.
(function () {
  "use strict";

  function key(cell) {
    var raw = cell.getAttribute("data-sort");
    if (raw === null) return { text: cell.textContent.trim().toLowerCase() };
    return raw === "" ? { missing: true } : { number: parseFloat(raw) };
  }

  function compare(a, b, direction) {
    if (a.missing || b.missing) return (a.missing ? 1 : 0) - (b.missing ? 1 : 0);
    if (a.number !== undefined && b.number !== undefined) return direction * (a.number - b.number);
    var left = a.text !== undefined ? a.text : String(a.number);
    var right = b.text !== undefined ? b.text : String(b.number);
    return direction * left.localeCompare(right);
  }

  function sortBy(table, column, button) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).filter(function (row) {
      return !row.classList.contains("empty-row");
    });
    var header = button.closest("th");
    var direction = header.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    table.querySelectorAll("th[aria-sort]").forEach(function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
    rows.sort(function (a, b) { return compare(key(a.cells[column]), key(b.cells[column]), direction); });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  function setUp() {
    document.querySelectorAll("table.sortable:not([data-sortable])").forEach(function (table) {
      table.setAttribute("data-sortable", "");
      table.querySelectorAll("thead th").forEach(function (th, column) {
        var button = document.createElement("button");
        button.type = "button";
        button.className = "sort-button";
        button.textContent = th.textContent;
        button.title = "Sort by " + th.textContent;
        th.textContent = "";
        th.appendChild(button);
        button.addEventListener("click", function () { sortBy(table, column, button); });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", setUp);
  // A filter change replaces the results (htmx): make the new tables sortable too.
  document.addEventListener("htmx:afterSettle", setUp);
})();
