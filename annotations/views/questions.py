"""The review of a Psyche-R1 question: the page itself is the candidate page (``templates/annotations/_question.html``);
these are its two forms (the reference answer; the ratings of the rationales), each calling one service of
``annotations/services/questions.py``.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from generation import selectors as gen_selectors
from generation.models import Candidate, CandidateKind
from generation.services.candidates import StaleVersion
from psyroom_admin import roles

from ..selectors import visibility
from ..services.questions import RATING_KEYS, question_correct_answer, question_rate_rationales


def _get_question_for_reviewer(request: HttpRequest, pk: int) -> Candidate:
    if not roles.user_can_review(request.user):
        raise PermissionDenied(_("Only counselors and senior clinicians may edit and review."))
    # The same scope as the candidate page: a counselor reaches only the candidates of their campaigns.
    visible = visibility.candidate_scope(user=request.user, queryset=gen_selectors.candidate_list())
    return get_object_or_404(visible.filter(kind=CandidateKind.QUESTION), pk=pk)


def _version(request: HttpRequest) -> int:
    text = request.POST.get("version", "").strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise ValidationError({"version": "missing: reload the page"})
    return int(text)


def _small_int(text: str) -> int | None:
    """A rating or an answer's index from the form: ASCII digits ("¹".isdigit() is true, and int() refuses it)."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


def _errors(request: HttpRequest, error: ValidationError) -> None:
    for message in error.messages:
        messages.error(request, message)


@login_required
@require_POST
def question_answer(request: HttpRequest, pk: int) -> HttpResponse:
    candidate = _get_question_for_reviewer(request, pk)
    try:
        revision = question_correct_answer(
            candidate=candidate,
            reviewer=request.user,
            answer=request.POST.get("answer", ""),
            base_version=_version(request),
            reason=request.POST.get("reason", ""),
        )
    except StaleVersion:
        messages.error(request, _("Someone changed this question meanwhile: look again before correcting it."))
        return redirect("annotations:candidate", pk=pk)
    except ValidationError as error:
        _errors(request, error)
        return redirect("annotations:candidate", pk=pk)
    messages.success(request, _("Reference answer corrected.") if revision else _("Reference answer confirmed."))
    return redirect("annotations:candidate", pk=pk)


@login_required
@require_POST
def question_rate(request: HttpRequest, pk: int) -> HttpResponse:
    candidate = _get_question_for_reviewer(request, pk)
    ratings = []
    try:
        for i in range(len(candidate.content.get("answers", []))):
            rating: dict[str, int | None] = {"index": i}
            for key in RATING_KEYS:
                raw = request.POST.get(f"rating-{i}-{key}", "")
                rating[key] = _small_int(raw)
            ratings.append(rating)
        best_raw = request.POST.get("best", "")
        question_rate_rationales(
            candidate=candidate,
            reviewer=request.user,
            ratings=ratings,
            best=_small_int(best_raw),
            edited=request.POST.get("edited", ""),
            base_version=_version(request),
        )
    except StaleVersion:
        messages.error(request, _("Someone changed this question meanwhile: look again before editing it."))
        return redirect("annotations:candidate", pk=pk)
    except ValidationError as error:
        _errors(request, error)
        return redirect("annotations:candidate", pk=pk)
    messages.success(request, _("Ratings saved."))
    return redirect("annotations:candidate", pk=pk)
