"""The counselor's pages: the review queue, a candidate with its turns and rubric, turn edits, reviews, sign-offs.

Each view checks access, validates with a form, calls one service and renders. Turn edits are HTMX partials (with
a plain POST-and-redirect fallback); 400 and 409 partials are swapped in too (see ``htmx-config`` in base.html).
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from generation import selectors as gen_selectors
from generation.models import Candidate
from generation.schemas import ContentError
from generation.services.candidates import StaleVersion
from psyroom_admin import roles

from ..forms.reviews import QueueFilterForm, ReviewForm, SignOffForm, TurnEditForm, started_at_token
from ..models import Review
from ..rubrics import DEFAULTS as RUBRICS
from ..selectors import display, visibility
from ..selectors import gold as gold_selectors
from ..services import adjudication, edits, policy, reviews
from ..services.rubrics import rubric_get_default

QUEUE_PAGE_SIZE = 50
# The kinds these pages can show and review: those with a rubric.
REVIEW_KINDS = tuple(RUBRICS)


class HtmxHttpRequest(HttpRequest):
    """A request that went through django-htmx's middleware (django-htmx's documented type for ``request.htmx``)."""

    htmx: HtmxDetails


# --- Access -----------------------------------------------------------------------------------------------------


def _check_can_see_candidates(request: HttpRequest) -> None:
    if not roles.user_can_see_candidates(request.user):
        raise PermissionDenied(_("You have no role in PsyRoom: ask an administrator for one."))


def _check_can_review(request: HttpRequest) -> None:
    if not roles.user_can_review(request.user):
        raise PermissionDenied(_("Only counselors and senior clinicians may edit and review."))


def _check_can_sign_off(request: HttpRequest) -> None:
    if not roles.user_can_sign_off_risk(request.user):
        raise PermissionDenied(_("Only a senior clinician may sign off a risk flag."))


def _get_candidate_for_viewer(request: HttpRequest, pk: int) -> Candidate:
    """The candidate, for a user with a role: 403 without one (before a 404 could tell what exists), 404 if missing."""
    _check_can_see_candidates(request)
    # A counselor sees only the candidates of their campaigns (404 for the rest, as if missing).
    visible = visibility.candidate_scope(user=request.user, queryset=gen_selectors.candidate_list())
    return get_object_or_404(visible.filter(kind__in=REVIEW_KINDS), pk=pk)


# --- Reads for the pages ----------------------------------------------------------------------------------------


def _turn_row(candidate: Candidate, index: int) -> dict:
    rows = display.turn_rows(candidate)
    if not 0 <= index < len(rows):
        raise Http404(_("%(item)s has no turn %(index)s") % {"item": candidate, "index": index})
    return rows[index]


def _add_service_errors(form, error: ValidationError) -> None:
    """Put a service's ValidationError on the form field it names, or on the form as a whole."""
    if hasattr(error, "error_dict"):
        for field, field_errors in error.message_dict.items():
            form.add_error(field if field in form.fields else None, field_errors)
    else:
        form.add_error(None, error.messages)


def _render_detail(
    request: HttpRequest,
    candidate: Candidate,
    *,
    review_form: ReviewForm | None = None,
    sign_off_form: SignOffForm | None = None,
    turn_states: dict[int, dict] | None = None,
    stale: bool = False,
    status: int = 200,
) -> HttpResponse:
    rubric = rubric_get_default(kind=candidate.kind)
    if review_form is None:
        review_form = ReviewForm(
            rubric=rubric, initial={"version": candidate.version, "started_at": started_at_token()}
        )
    turns = display.turn_rows(candidate)
    for index, state in (turn_states or {}).items():
        turns[index].update(state)
    context = {
        **display.fragments_context(request.user, candidate),
        "turns": turns,
        "rubric": rubric,
        "review_form": review_form,
        "sign_off_form": sign_off_form or SignOffForm(),
        # The importers write "license"; the model's comment says "licence": show either.
        "source_licence": candidate.source.get("license") or candidate.source.get("licence", ""),
        "stale": stale,
        "gold_campaigns": gold_selectors.gold_campaigns_for(user=request.user, candidate=candidate),
    }
    return render(request, "annotations/candidate_detail.html", context, status=status)


def _render_turn(request: HttpRequest, candidate: Candidate, template: str, row: dict, status: int = 200, **extra):
    context = {**display.fragments_context(request.user, candidate), "turn": row, **extra}
    return render(request, template, context, status=status)


# --- Pages ------------------------------------------------------------------------------------------------------


@login_required
@require_GET
def candidate_queue(request: HttpRequest) -> HttpResponse:
    _check_can_see_candidates(request)
    form = QueueFilterForm(request.GET)
    reviewable = visibility.candidate_scope(
        user=request.user, queryset=gen_selectors.candidate_list_reviewable(filters=form.filters())
    ).filter(kind__in=REVIEW_KINDS)
    paginator = Paginator(reviewable, QUEUE_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    return render(request, "annotations/queue.html", {"form": form, "page": page, "paginator": paginator})


@login_required
@require_GET
def candidate_detail(request: HttpRequest, pk: int) -> HttpResponse:
    candidate = _get_candidate_for_viewer(request, pk)
    return _render_detail(request, candidate)


@login_required
@require_GET
def candidate_turn_edit_form(request: HtmxHttpRequest, pk: int, index: int) -> HttpResponse:
    """The edit form of one turn, based on the version the page shows (``?version=``); 409 if that is stale."""
    candidate = _get_candidate_for_viewer(request, pk)
    _check_can_review(request)
    row = _turn_row(candidate, index)
    seen = request.GET.get("version", "")
    if seen.isascii() and seen.isdigit() and int(seen) != candidate.version:
        if not request.htmx:
            return _render_detail(request, candidate, turn_states={index: {"conflict": True}}, status=409)
        return _render_turn(request, candidate, "annotations/_turn_conflict.html", row, status=409)
    form = TurnEditForm(initial={"text": row["text"], "version": candidate.version})
    if not request.htmx:
        return _render_detail(request, candidate, turn_states={index: {"form": form}})
    return _render_turn(request, candidate, "annotations/_turn_form.html", row, form=form)


@login_required
@require_http_methods(["GET", "POST"])
def candidate_turn(request: HtmxHttpRequest, pk: int, index: int) -> HttpResponse:
    """GET: the turn as shown on the page (to cancel an edit). POST: save the edit as a new revision."""
    candidate = _get_candidate_for_viewer(request, pk)
    row = _turn_row(candidate, index)
    detail_url = reverse("annotations:candidate", args=[candidate.pk]) + f"#turn-{index}"
    if request.method == "GET":
        if not request.htmx:
            return redirect(detail_url)
        return _render_turn(request, candidate, "annotations/_turn.html", row)

    _check_can_review(request)
    form = TurnEditForm(request.POST)
    if form.is_valid():
        try:
            revision = edits.turn_edit(
                candidate=candidate,
                editor=request.user,
                index=index,
                text=form.cleaned_data["text"],
                base_version=form.cleaned_data["version"],
                category=form.cleaned_data["category"],
                reason=form.cleaned_data["reason"],
            )
        except StaleVersion as stale:
            # Nothing was written: show what the turn says now, and keep the draft so it is not lost.
            candidate = stale.candidate
            draft = form.cleaned_data["text"]
            if not request.htmx:
                return _render_detail(
                    request, candidate, turn_states={index: {"conflict": True, "draft": draft}}, status=409
                )
            return _render_turn(
                request, candidate, "annotations/_turn_conflict.html", _turn_row(candidate, index), 409, draft=draft
            )
        except ValidationError as error:
            _add_service_errors(form, error)
        except ContentError as error:
            form.add_error("text", str(error))
    if form.errors:
        if not request.htmx:
            return _render_detail(request, candidate, turn_states={index: {"form": form}}, status=400)
        return _render_turn(request, candidate, "annotations/_turn_form.html", row, status=400, form=form)

    if not request.htmx:
        messages.success(
            request,
            _("Turn %(turn)d saved as revision %(revision)d.") % {"turn": index + 1, "revision": revision.number},
        )
        return redirect(detail_url)
    return _render_turn(request, candidate, "annotations/_turn_saved.html", _turn_row(candidate, index))


@login_required
@require_POST
def candidate_review(request: HttpRequest, pk: int) -> HttpResponse:
    candidate = _get_candidate_for_viewer(request, pk)
    _check_can_review(request)
    rubric = rubric_get_default(kind=candidate.kind)
    form = ReviewForm(request.POST, rubric=rubric)
    if not form.is_valid():
        return _render_detail(request, candidate, review_form=form, status=400)
    try:
        review = reviews.review_submit(candidate=candidate, reviewer=request.user, **form.review_fields())
    except StaleVersion as stale:
        # Keep what the reviewer entered, now against the current text, which the page shows with a warning.
        data = request.POST.copy()
        data["version"] = str(stale.candidate.version)
        form = ReviewForm(data, rubric=rubric)
        return _render_detail(request, stale.candidate, review_form=form, stale=True, status=409)
    except ValidationError as error:
        _add_service_errors(form, error)
        return _render_detail(request, candidate, review_form=form, status=400)
    status = candidate.get_status_display().lower()
    if review.decision == Review.Decision.APPROVE and candidate.status != Candidate.Status.APPROVED:
        text = _("Review of %(item)s saved: %(status)s, until the review policy is met (%(policy)s).")
        params = {"item": candidate, "status": status, "policy": policy.review_policy_get()}
    else:
        text = _("Review of %(item)s saved: %(status)s.")
        params = {"item": candidate, "status": status}
    messages.success(request, text % params)
    return redirect("annotations:queue")


@login_required
@require_POST
def candidate_sign_off(request: HttpRequest, pk: int) -> HttpResponse:
    candidate = _get_candidate_for_viewer(request, pk)
    _check_can_sign_off(request)
    form = SignOffForm(request.POST)
    if form.is_valid():
        try:
            adjudication.risk_sign_off(
                candidate=candidate,
                clinician=request.user,
                note=form.cleaned_data["note"],
                flag_ids=form.cleaned_data["flags"],
                base_version=form.cleaned_data["version"],
            )
        except StaleVersion as stale:
            form.add_error(None, "The item changed since you read it: read it again, then sign off.")
            return _render_detail(request, stale.candidate, sign_off_form=form, stale=True, status=409)
        except ValidationError as error:
            _add_service_errors(form, error)
    if form.errors:
        return _render_detail(request, candidate, sign_off_form=form, status=400)
    messages.success(request, _("Risk flags of %(item)s signed off.") % {"item": candidate})
    return redirect("annotations:candidate", pk=candidate.pk)
