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


def coverage_heatmap(coverage: Coverage) -> dict:
    """Approved of quota: a row per category, a column per sub-emotion position (categories have 3 to 6)."""
    width = max((len(c.subs) for c in coverage.categories), default=0)
    z, text = [], []
    for category in coverage.categories:
        z.append([s.share for s in category.subs] + [None] * (width - len(category.subs)))
        text.append(
            [f"{s.key}: {s.approved}/{s.quota} approved, {s.missing} missing" for s in category.subs]
            + [""] * (width - len(category.subs))
        )
    return _figure(
        "coverage",
        f"Approved share of the quota ({coverage.quota} per sub-emotion)",
        [
            {
                "type": "heatmap",
                "z": z,
                "text": text,
                "hoverinfo": "text",
                "x": [f"#{i}" for i in range(width)],
                "y": [c.label for c in coverage.categories],
                "zmin": 0,
                "zmax": 1,
                "colorscale": "RdYlGn",
            }
        ],
    )


def calibration_heatmaps(group: CalibrationGroup) -> list[dict]:
    """One calibration table per criterion: the AI's score against the clinicians' mean, rounded."""
    scores = [str(s) for s in range(1, 6)]
    return [
        _figure(
            f"calibration-{c.key}",
            c.label,
            [{"type": "heatmap", "z": c.table, "x": scores, "y": scores, "colorscale": "Blues"}],
            {
                "xaxis": {"title": {"text": "Clinicians' mean (rounded)"}},
                "yaxis": {"title": {"text": "AI supervisor"}},
                "height": 320,
                "margin": {"t": 48, "l": 64},
            },
        )
        for c in group.criteria
    ]


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
