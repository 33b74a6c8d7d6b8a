"""The dashboard pages: ``/dashboards/`` (the campaigns) and ``/dashboards/campaigns/<id>/agreement/``.

Each table of a page is also a CSV file: the same URL with ``format=csv&table=<name>``. Filters live in the URL, so a
page can be bookmarked and shared; a filter the page does not know, or a bad value, is a message on the page (400),
never an error page. What a user may see is decided in ``dashboards.selectors``.
"""

import csv
from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from psyroom_admin import roles

from . import selectors
from .forms import AgreementFilterForm, unknown_parameters
from .selectors import Agreement, MetricRow, RaterRow
from .stats import Estimate

# What a page reads besides its filters: the CSV download.
PAGE_PARAMETERS = ("format", "table")
FORMATS = ("html", "csv")


@dataclass
class Table:
    name: str
    title: str
    headers: list[str]
    rows: list[list]


def _check_role(request: HttpRequest) -> None:
    if not roles.user_can_see_candidates(request.user):
        raise PermissionDenied("You have no role in PsyRoom: ask an administrator for one.")


@login_required
@require_GET
def dashboard_index(request: HttpRequest) -> HttpResponse:
    _check_role(request)
    context = {
        "summaries": selectors.campaign_summaries(user=request.user),
        "sees_all": selectors.sees_all(request.user),
    }
    return render(request, "dashboards/index.html", context)


# --- Agreement ----------------------------------------------------------------------------------------------------


def _metric_rows(rows: list[MetricRow]) -> list[list]:
    return [
        [
            row.label,
            row.level,
            row.items,
            row.alpha,
            row.alpha_ci.low,
            row.alpha_ci.high,
            row.percent_agreement,
            row.agreement_ci.low,
            row.agreement_ci.high,
        ]
        for row in rows
    ]


METRIC_HEADERS = [
    "Rated",
    "Level",
    "Items rated twice or more",
    "Alpha",
    "Alpha 95% CI low",
    "Alpha 95% CI high",
    "Percent agreement",
    "Agreement 95% CI low",
    "Agreement 95% CI high",
]
RATER_HEADERS = ["Rater", "Reviews", "Shared items", "Mean abs. difference", "Kappa (quadratic)", "Decision agreement"]


def _rater_cells(row: RaterRow) -> list:
    return [row.rater, row.reviews, row.shared_items, row.mad, row.kappa, row.decision_agreement]


def agreement_tables(agreement: Agreement) -> dict[str, Table]:
    """The page's tables, in order; each is also a CSV download. A counselor's page has only their own rows."""
    tables = []
    if agreement.scope == "all":
        metrics = agreement.criteria + ([agreement.decision] if agreement.decision else [])
        tables.append(Table("criteria", "Per criterion and the decision", METRIC_HEADERS, _metric_rows(metrics)))
        tables.append(Table("risk_flags", "Risk flags", METRIC_HEADERS, _metric_rows(agreement.risk_flags)))
        kappa_labels = [k.label for k in agreement.pairs[0].kappas] if agreement.pairs else []
        tables.append(
            Table(
                "pairs",
                f"Pairs of raters (Cohen's kappa, {selectors.MIN_SHARED_ITEMS} or more shared items)",
                ["Rater A", "Rater B", "Shared items", *kappa_labels],
                [[p.rater_a, p.rater_b, p.shared_items, *[k.kappa for k in p.kappas]] for p in agreement.pairs],
            )
        )
    tables.append(
        Table(
            "raters",
            "Each rater against the others' consensus",
            RATER_HEADERS,
            [_rater_cells(row) for row in agreement.rater_rows],
        )
    )
    tables.append(
        Table(
            "weekly",
            "The same, per ISO week",
            ["Week", *RATER_HEADERS],
            [[row.week, *_rater_cells(row)] for row in agreement.weekly],
        )
    )
    return {table.name: table for table in tables}


def _csv_cell(value) -> str:
    if isinstance(value, Estimate):
        return f"{value.value:.4f}" if value.value is not None else f"undefined: {value.reason}"
    text = str(value)
    # A spreadsheet runs a cell that starts with one of these as a formula: a rater's name must stay text.
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_response(filename: str, table: Table) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(table.headers)
    for row in table.rows:
        writer.writerow([_csv_cell(cell) for cell in row])
    return response


@login_required
@require_GET
def campaign_agreement(request: HttpRequest, campaign_id: int) -> HttpResponse:
    _check_role(request)
    campaign = selectors.campaign_get(user=request.user, campaign_id=campaign_id)
    names = selectors.filter_names(user=request.user)
    errors = [
        f'"{name}" is not a filter of this page: the filters are {", ".join(names)}.'
        for name in unknown_parameters(request.GET, (*names, *PAGE_PARAMETERS))
    ]
    form = AgreementFilterForm({name: request.GET[name] for name in names if request.GET.get(name)})
    if not form.is_valid():
        errors += [f'"{name}": {" ".join(str(m) for m in messages)}' for name, messages in form.errors.items()]
    fmt = request.GET.get("format", "html")
    if fmt not in FORMATS:
        errors.append(f'"format": must be one of {", ".join(FORMATS)}.')
    context = {
        "campaign": campaign,
        "form": form,
        "errors": errors,
        "choices": selectors.filter_choices(user=request.user),
    }
    if errors:
        return render(request, "dashboards/agreement.html", context, status=400)
    agreement = selectors.agreement_for(user=request.user, campaign=campaign, filters=form.filters())
    tables = agreement_tables(agreement)
    if fmt == "csv":
        name = request.GET.get("table", "")
        if name not in tables:
            context["errors"] = [f'"table": must be one of {", ".join(tables)}.']
            return render(request, "dashboards/agreement.html", context, status=400)
        return _csv_response(f"campaign-{campaign.pk}-{name}.csv", tables[name])
    kept = {name: value for name, value in form.cleaned_data.items() if value}
    context.update(
        agreement=agreement,
        tables=[
            (table, "?" + urlencode({**{k: str(v) for k, v in kept.items()}, "format": "csv", "table": name}))
            for name, table in tables.items()
        ],
    )
    return render(request, "dashboards/agreement.html", context)
