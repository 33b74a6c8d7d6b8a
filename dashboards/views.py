"""The dashboard pages: ``/dashboards/`` (the campaigns) and ``/dashboards/campaigns/<id>/agreement/``.

Each table of a page is also a CSV file: the same URL with ``format=csv&table=<name>``. Filters live in the URL, so a
page can be bookmarked and shared; a filter the page does not know, or a bad value, is a message on the page (400),
never an error page. What a user may see is decided in ``dashboards.selectors``.
"""

import csv
from dataclasses import dataclass
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from psyroom_admin import roles

from . import charts, selectors, services
from .forms import AgreementFilterForm, CalibrationFilterForm, FunnelFilterForm, unknown_parameters
from .selectors import Agreement, MetricRow, RaterRow
from .selectors.calibration import Calibration, CalibrationGroup, calibration_for
from .selectors.coverage import Coverage, coverage_get
from .selectors.funnel import GROUPS, STAGES, Funnel, funnel_for
from .selectors.gold import GoldAccuracy, gold_accuracy_for
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


@dataclass(frozen=True)
class Link:
    """A cell that links somewhere on the page (a drill-down); its CSV cell is the text."""

    text: str
    url: str

    def __str__(self) -> str:
        return self.text


# A filter change on these pages asks (htmx) for the results only: the part under the filters.
PARTIALS = {
    "dashboards/agreement.html": "dashboards/_agreement_results.html",
    "dashboards/calibration.html": "dashboards/_calibration_results.html",
    "dashboards/funnel.html": "dashboards/_funnel_results.html",
}


def _render(request: HttpRequest, template: str, context: dict, *, status: int = 200) -> HttpResponse:
    """The page, or its results only when htmx asks for them after a filter change (the form pushes the new URL, so
    the filters stay in it). A history restore (htmx reloading a page it has no copy of) gets the whole page."""
    htmx = getattr(request, "htmx", None)
    if htmx and not htmx.history_restore_request and template in PARTIALS:
        template = PARTIALS[template]
    response = render(request, template, context, status=status)
    # The same URL answers with a page or a part of one: a cache must tell them apart.
    patch_vary_headers(response, ("HX-Request",))
    return response


def _check_role(request: HttpRequest) -> None:
    if not roles.user_can_see_candidates(request.user):
        raise PermissionDenied(_("You have no role in PsyRoom: ask an administrator for one."))


def _check_sees_all(request: HttpRequest) -> None:
    """The pages on the AI's judgement and the whole pipeline: senior clinicians, curators and admins."""
    _check_role(request)
    if not selectors.sees_all(request.user):
        raise PermissionDenied(_("This dashboard is for senior clinicians, curators and admins."))


def _filter_errors(request: HttpRequest, names: tuple[str, ...], form: forms.Form) -> list[str]:
    """What is wrong with the page's query: unknown parameters, bad filter values, an unknown format."""
    known = f"the filters are {', '.join(names)}" if names else "it has none"
    errors = [
        f'"{name}" is not a filter of this page: {known}.'
        for name in unknown_parameters(request.GET, (*names, *PAGE_PARAMETERS))
    ]
    if not form.is_valid():
        errors += [f'"{name}": {" ".join(str(m) for m in messages)}' for name, messages in form.errors.items()]
    if request.GET.get("format", "html") not in FORMATS:
        errors.append(f'"format": must be one of {", ".join(FORMATS)}.')
    return errors


def _query(data: dict, **extra) -> str:
    """A query string of the filters set in ``data`` (a model instance by its id) and ``extra``."""
    kept = {k: str(getattr(v, "pk", v)) for k, v in data.items() if v not in (None, "")}
    return "?" + urlencode({**kept, **extra})


def _tables_page(
    request: HttpRequest, template: str, context: dict, tables: dict[str, Table], *, filename: str, kept: dict
) -> HttpResponse:
    """The page with its tables, or one table as CSV (``format=csv&table=<name>``)."""
    if request.GET.get("format", "html") == "csv":
        name = request.GET.get("table", "")
        if name not in tables:
            context["errors"] = [f'"table": must be one of {", ".join(tables)}.']
            return _render(request, template, context, status=400)
        return _csv_response(f"{filename}-{name}.csv", tables[name])
    context["tables"] = [(table, _query(kept, format="csv", table=name)) for name, table in tables.items()]
    return _render(request, template, context)


@login_required
@require_GET
def dashboard_index(request: HttpRequest) -> HttpResponse:
    _check_role(request)
    context = {
        "summaries": selectors.campaign_summaries(user=request.user),
        "sees_all": selectors.sees_all(request.user),
    }
    return _render(request, "dashboards/index.html", context)


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


def gold_table(accuracy: GoldAccuracy) -> Table:
    """Accuracy on the campaign's reference items: one row per reviewer (a counselor: their own)."""
    headers = [
        gettext("Rater"),
        gettext("Reference items"),
        gettext("Decision accuracy"),
        gettext("Accuracy 95% CI low"),
        gettext("Accuracy 95% CI high"),
        gettext("Mean abs. difference"),
        *[gettext("Mean abs. difference: %(criterion)s") % {"criterion": name} for name in accuracy.criteria],
    ]
    rows = [
        [
            row.rater,
            row.items,
            row.decision_accuracy,
            row.decision_ci.low,
            row.decision_ci.high,
            row.mad,
            *[value for _, value in row.criteria],
        ]
        for row in accuracy.rows
    ]
    return Table("gold", gettext("Accuracy on reference items"), headers, rows)


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
        return _render(request, "dashboards/agreement.html", context, status=400)
    agreement = selectors.agreement_for(user=request.user, campaign=campaign, filters=form.filters())
    tables = agreement_tables(agreement)
    accuracy = gold_accuracy_for(user=request.user, campaign=campaign, filters=form.filters())
    tables["gold"] = gold_table(accuracy)
    if fmt == "csv":
        name = request.GET.get("table", "")
        if name not in tables:
            context["errors"] = [f'"table": must be one of {", ".join(tables)}.']
            return _render(request, "dashboards/agreement.html", context, status=400)
        return _csv_response(f"campaign-{campaign.pk}-{name}.csv", tables[name])
    kept = {name: value for name, value in form.cleaned_data.items() if value}
    drift = charts.drift_lines(agreement)
    context.update(
        figures=[drift] if drift else [],
        agreement=agreement,
        tables=[
            (table, "?" + urlencode({**{k: str(v) for k, v in kept.items()}, "format": "csv", "table": name}))
            for name, table in tables.items()
            if name != "gold"
        ],
        gold=(
            tables["gold"],
            "?" + urlencode({**{k: str(v) for k, v in kept.items()}, "format": "csv", "table": "gold"}),
        ),
    )
    return _render(request, "dashboards/agreement.html", context)


# --- AI against clinicians ------------------------------------------------------------------------------------------

CALIBRATION_FILTERS = ("since", "until", "model", "prompt_version", "campaign", "category")


def _group_cells(group: CalibrationGroup) -> list[str]:
    return [group.model or "(all)", group.prompt_version or "(all)"]


def calibration_tables(result: Calibration, *, drill_url) -> dict[str, Table]:
    """The calibration page's tables: every model spec and prompt version, all of them together first."""
    criteria_rows, table_rows, classifier_rows, confusion_rows = [], [], [], []
    for group in result.groups:
        for c in group.criteria:
            criteria_rows.append(
                [*_group_cells(group), c.label, c.items, c.spearman, c.spearman_ci.low, c.spearman_ci.high, c.bias]
            )
            for score, counts in enumerate(c.table, start=1):
                table_rows.append([*_group_cells(group), c.label, score, *counts])
        classifier_rows.append(
            [
                *_group_cells(group),
                group.classified,
                group.accuracy,
                group.accuracy_ci.low,
                group.accuracy_ci.high,
                group.category_accuracy,
                group.category_accuracy_ci.low,
                group.category_accuracy_ci.high,
            ]
        )
        for (key, label), counts in zip(group.confusion.rows, group.confusion.counts, strict=True):
            target = Link(label, drill_url(key)) if result.filters.category is None else label
            confusion_rows.append([*_group_cells(group), target, *counts])
    confusion_columns = [label for _, label in result.groups[0].confusion.columns] if result.groups else []
    drilled = result.filters.category
    scope = f"the sub-emotions of {drilled}" if drilled else "by category (a category opens its sub-emotions)"
    return {
        table.name: table
        for table in (
            Table(
                "criteria",
                "The supervisor's score against the clinicians' mean, per criterion",
                ["Model", "Prompt version", "Criterion", "Items", "Spearman", "95% CI low", "95% CI high", "Mean bias"],
                criteria_rows,
            ),
            Table(
                "calibration",
                "Calibration: the AI's score (rows) against the clinicians' mean rounded (columns)",
                ["Model", "Prompt version", "Criterion", "AI score", *[f"Clinicians {s}" for s in range(1, 6)]],
                table_rows,
            ),
            Table(
                "classifier",
                "The emotion classifier against the target sub-emotion",
                [
                    "Model",
                    "Prompt version",
                    "Classified",
                    "Sub-emotion accuracy",
                    "95% CI low",
                    "95% CI high",
                    "Category accuracy",
                    "95% CI low",
                    "95% CI high",
                ],
                classifier_rows,
            ),
            Table(
                "confusion",
                f"Confusion: the target (rows) against the classifier's label, {scope}",
                ["Model", "Prompt version", "Target", *confusion_columns],
                confusion_rows,
            ),
        )
    }


def _calibration_choices(user) -> dict[str, list[tuple[str, str]]]:
    return {
        **selectors.filter_choices(user=user),
        "prompt_versions": [(v, v) for v in selectors.prompt_versions()],
        "campaigns": [(str(c.pk), c.name) for c in selectors.campaigns_for(user=user)],
        "categories": [(c.key, c.label_en) for c in selectors.categories()],
    }


@login_required
@require_GET
def calibration(request: HttpRequest) -> HttpResponse:
    _check_sees_all(request)
    names = CALIBRATION_FILTERS
    form = CalibrationFilterForm(
        {name: request.GET[name] for name in names if request.GET.get(name)},
        campaigns=selectors.campaigns_for(user=request.user),
    )
    errors = _filter_errors(request, names, form)
    context: dict = {"form": form, "errors": errors, "choices": _calibration_choices(request.user)}
    template = "dashboards/calibration.html"
    if errors:
        return _render(request, template, context, status=400)
    filters = form.filters()
    kept = {name: value for name, value in form.cleaned_data.items() if value}
    result = calibration_for(filters=filters)
    context.update(calibration=result, overall=result.groups[0], figures=charts.calibration_heatmaps(result.groups[0]))
    tables = calibration_tables(result, drill_url=lambda key: _query({**kept, "category": key}))
    return _tables_page(request, template, context, tables, filename="calibration", kept=kept)


# --- Coverage -------------------------------------------------------------------------------------------------------


def coverage_tables(coverage: Coverage) -> dict[str, Table]:
    rows = [
        [c.label, s.key, s.label, s.generated, s.waiting, s.approved, s.released, s.quota, s.missing]
        for c in coverage.categories
        for s in c.subs
    ]
    headers = ["Category", "Sub-emotion", "Label", "Generated", "Waiting", "Approved", "Released", "Quota", "Missing"]
    return {"sub_emotions": Table("sub_emotions", "Every sub-emotion", headers, rows)}


def _heat(share: float) -> int:
    return min(4, int(share * 5))


@login_required
@require_GET
def coverage(request: HttpRequest) -> HttpResponse:
    _check_sees_all(request)
    template = "dashboards/coverage.html"
    form = forms.Form({})
    errors = _filter_errors(request, (), form)
    context: dict = {"errors": errors}
    if errors:
        return _render(request, template, context, status=400)
    result = coverage_get()
    width = max((len(c.subs) for c in result.categories), default=0)
    grid = [(c, [(s, _heat(s.share)) for s in c.subs] + [(None, 0)] * (width - len(c.subs))) for c in result.categories]
    context.update(
        coverage=result,
        grid=grid,
        can_fill=roles.user_can_run_generation(request.user),
        figures=[charts.coverage_heatmap(result)],
    )
    return _tables_page(request, template, context, coverage_tables(result), filename="coverage", kept={})


@login_required
@require_POST
def coverage_fill(request: HttpRequest) -> HttpResponse:
    """Start the runs that fill the gaps (all, or the ``sub_emotion`` keys posted), then show the run."""
    if not roles.user_can_run_generation(request.user):
        raise PermissionDenied(_("Only curators and admins may start generation runs."))
    keys = [k for k in request.POST.getlist("sub_emotion") if k] or None
    try:
        fill = services.coverage_fill(user=request.user, keys=keys)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("dashboards:coverage")
    except services.QueueUnavailable as error:
        messages.error(request, str(error))
        return redirect("dashboards:coverage")
    total = sum(run.count for run in fill.runs)
    messages.success(
        request,
        ngettext(
            "%(count)d run queued: %(total)d dialogues for the gaps.",
            "%(count)d runs queued: %(total)d dialogues for the gaps.",
            len(fill.runs),
        )
        % {"count": len(fill.runs), "total": total},
    )
    if fill.stopped:
        messages.warning(request, _("Some gaps were left: %(reason)s") % {"reason": fill.stopped})
    if len(fill.runs) == 1:
        return redirect("generation:run", pk=fill.runs[0].pk)
    return redirect("generation:runs")


# --- Funnel and throughput --------------------------------------------------------------------------------------

FUNNEL_FILTERS = ("since", "until", "campaign", "by")
STAGE_HEADERS = [
    "All", "Not yet reviewed", "In review", "Approved", "Rejected", "Needs revision", "Adjudicated", "Exported"
]  # fmt: skip


def funnel_tables(result: Funnel) -> dict[str, Table]:
    tables = []
    if result.scope == "all":
        tables += [
            Table(
                "stages",
                f"Candidates by stage, per {result.filters.by.replace('_', ' ')}",
                [result.filters.by.replace("_", " ").capitalize(), *STAGE_HEADERS],
                [[row.group, *[row.counts[s] for s in STAGES]] for row in result.stages],
            ),
            Table(
                "rejections",
                "Rejecting reviews, and the criteria they scored 1 or 2",
                ["What", "Reviews"],
                [list(r) for r in result.rejection_criteria],
            ),
            Table("risk_flags", "Risk flags by code", ["Code", "Flags"], [list(r) for r in result.risk_flags]),
            Table("edits", "Edits by category", ["Category", "Revisions"], [list(r) for r in result.edits]),
        ]
    tables.append(
        Table(
            "throughput",
            f"Reviewers (a review under {result.floor_seconds} s is suspicious)",
            [
                "Reviewer",
                "Reviews",
                "Hours",
                "Items per hour",
                "Median seconds",
                "Share of items edited",
                "Fast reviews",
                "Suspicious",
            ],
            [
                [
                    row.reviewer,
                    row.reviews,
                    row.hours,
                    row.items_per_hour if row.items_per_hour is not None else "",
                    row.median_seconds if row.median_seconds is not None else "",
                    row.edited_share if row.edited_share is not None else "",
                    row.fast,
                    "yes" if row.suspicious else "",
                ]
                for row in result.throughput
            ],
        )
    )
    return {table.name: table for table in tables}


@login_required
@require_GET
def funnel(request: HttpRequest) -> HttpResponse:
    _check_role(request)
    names = FUNNEL_FILTERS
    campaigns = selectors.campaigns_for(user=request.user)
    form = FunnelFilterForm({name: request.GET[name] for name in names if request.GET.get(name)}, campaigns=campaigns)
    errors = _filter_errors(request, names, form)
    context: dict = {
        "form": form,
        "errors": errors,
        "choices": {"campaigns": [(str(c.pk), c.name) for c in campaigns], "by": list(GROUPS)},
    }
    template = "dashboards/funnel.html"
    if errors:
        return _render(request, template, context, status=400)
    everything = selectors.sees_all(request.user)
    result = funnel_for(user=request.user, filters=form.filters(), everything=everything)
    kept = {name: value for name, value in form.cleaned_data.items() if value}
    context["funnel"] = result
    return _tables_page(request, template, context, funnel_tables(result), filename="funnel", kept=kept)
