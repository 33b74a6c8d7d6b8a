"""Plotly figures as plain dicts: a page puts each in a JSON data block (``json_script``) and static/js/charts.js
draws it with the plotly.min.js of the installed wheel. No inline script, so the strict CSP holds; the tables under
each chart hold the same numbers, and the page is whole without JavaScript."""

from __future__ import annotations

from .selectors import Agreement
from .selectors.calibration import CalibrationGroup
from .selectors.coverage import Coverage

FONT = {"family": "system-ui, sans-serif", "size": 12}


def _figure(chart_id: str, title: str, data: list[dict], layout: dict | None = None) -> dict:
    return {
        "id": chart_id,
        "script_id": f"chart-data-{chart_id}",
        "figure": {
            "data": data,
            "layout": {"title": {"text": title}, "font": FONT, "margin": {"t": 48, "l": 140}, **(layout or {})},
        },
    }


# Five steps from none to full, as the coverage table's cells (static/css/app.css, .heat-0 to .heat-4), darker.
STEPS = {
    "coverage": ["#e57373", "#f0b45b", "#e8d86a", "#9ccc7a", "#43a047"],
    "counts": ["#f1f5fb", "#c6dbef", "#9ecae1", "#4292c6", "#08519c"],
}


def _tiles(x: list, y: list, values: list, text: list, *, palette: str, top: float) -> dict:
    """A heat map drawn as square markers, each coloured here in five steps of ``values`` (0 to ``top``): Plotly's
    heatmap trace sets a style attribute on its image, which the CSP refuses; markers it styles through the DOM."""
    colours = STEPS[palette]
    steps = [min(len(colours) - 1, int(len(colours) * v / top)) if top else 0 for v in values]
    return {
        "type": "scatter",
        "mode": "markers",
        "x": x,
        "y": y,
        "text": text,
        "hoverinfo": "text",
        "marker": {"symbol": "square", "size": 22, "color": [colours[s] for s in steps], "line": {"width": 0}},
    }


def coverage_heatmap(coverage: Coverage) -> dict:
    """Approved of quota: a row per category, a column per sub-emotion position (categories have 3 to 6)."""
    x, y, values, text = [], [], [], []
    for category in coverage.categories:
        for i, s in enumerate(category.subs):
            x.append(f"#{i}")
            y.append(category.label)
            values.append(s.share)
            text.append(f"{s.key}: {s.approved}/{s.quota} approved, {s.missing} missing")
    return _figure(
        "coverage",
        f"Approved share of the quota ({coverage.quota} per sub-emotion; green: full)",
        [_tiles(x, y, values, text, palette="coverage", top=1)],
        {"height": 480, "xaxis": {"type": "category"}, "yaxis": {"type": "category", "autorange": "reversed"}},
    )


def calibration_heatmaps(group: CalibrationGroup) -> list[dict]:
    """One calibration table per criterion: the AI's score against the clinicians' mean, rounded."""
    figures = []
    for c in group.criteria:
        x, y, values, text = [], [], [], []
        for ai, row in enumerate(c.table, start=1):
            for people, n in enumerate(row, start=1):
                x.append(people)
                y.append(ai)
                values.append(n)
                text.append(f"AI {ai}, clinicians {people}: {n} items")
        figures.append(
            _figure(
                f"calibration-{c.key}",
                c.label,
                [_tiles(x, y, values, text, palette="counts", top=max(values) or 1)],
                {
                    "xaxis": {"title": {"text": "Clinicians' mean (rounded)"}, "dtick": 1},
                    "yaxis": {"title": {"text": "AI supervisor"}, "dtick": 1},
                    "height": 320,
                    "margin": {"t": 48, "l": 64},
                },
            )
        )
    return figures


def drift_lines(agreement: Agreement) -> dict | None:
    """Each rater's mean absolute difference from the others' consensus, per ISO week."""
    series: dict[str, tuple[list[str], list[float]]] = {}
    for row in agreement.weekly:
        if row.mad.value is not None:
            weeks, values = series.setdefault(row.rater, ([], []))
            weeks.append(row.week)
            values.append(row.mad.value)
    if not series:
        return None
    return _figure(
        "drift",
        "Drift: mean absolute difference from the others' consensus, per week",
        [
            {"type": "scatter", "mode": "lines+markers", "name": rater, "x": w, "y": v}
            for rater, (w, v) in series.items()
        ],
        {"yaxis": {"title": {"text": "Mean abs. difference"}, "rangemode": "tozero"}, "margin": {"t": 48, "l": 64}},
    )
