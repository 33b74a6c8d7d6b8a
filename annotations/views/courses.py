"""Review of a multi-session course: a timeline of its sessions, each with its memory beside its turns.

Reviewers rate each session on the session rubric and the course on the course rubric, and edit turns, a session's
memory or the course's own fields; every edit is a new revision with the optimistic version check (409 when someone
saved first). Curators edit client profiles here too (``profile_edit``). Views check access, validate with a form,
call one service and render the whole page again (there are few sessions, and a full page keeps the versions true).
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from generation import selectors as gen_selectors
from generation.models import Candidate, CandidateKind, ClientProfile, Revision
from generation.schemas import MEMORY_FIELDS, ContentError
from generation.selectors import course_sessions
from generation.services.candidates import StaleVersion
from generation.services.courses import profile_save
from psyroom_admin import roles

from ..forms.courses import MEMORY_FIELD_LABELS, CourseEditForm, MemoryEditForm, ProfileForm, SessionTurnEditForm
from ..forms.reviews import ReviewForm
from ..selectors import visibility
from ..services import courses as course_services
from ..services import edits, reviews
from ..services.rubrics import rubric_get_default


def _get_candidate(request: HttpRequest, pk: int, kind: str) -> Candidate:
    """A course or session for a user with a role: 403 without one (before a 404 could tell what exists), 404 when
    missing or outside the user's campaigns."""
    if not roles.user_can_see_candidates(request.user):
        raise PermissionDenied(_("You have no role in PsyRoom: ask an administrator for one."))
    return get_object_or_404(visibility.course_scope(user=request.user, kind=kind), pk=pk)


def _check_can_review(request: HttpRequest) -> None:
    if not roles.user_can_review(request.user):
        raise PermissionDenied(_("Only counselors and senior clinicians may edit and review."))


def _original(candidate: Candidate) -> dict:
    try:
        return gen_selectors.candidate_original_revision(candidate=candidate).content
    except Revision.DoesNotExist:
        return {}


def _session_row(session: Candidate, bound: dict) -> dict:
    """One session of the timeline: its turns (with the model's text where edited), its memory and its forms."""
    original = _original(session)
    original_turns = original.get("turns", [])
    turns = []
    for index, turn in enumerate(session.content["turns"]):
        before = original_turns[index]["text"] if index < len(original_turns) else None
        form = bound.get(("turn", session.pk, index)) or SessionTurnEditForm(
            initial={"text": turn["text"], "version": session.version}, prefix=f"s{session.pk}t{index}"
        )
        turns.append(
            {
                "index": index,
                "role": turn["role"],
                "text": turn["text"],
                "form": form,
                "original": before if before is not None and before != turn["text"] else None,
            }
        )
    memory = session.content["memory"]
    initial = {name: memory.get(name, "") for name in MEMORY_FIELDS}
    memory_form = bound.get(("memory", session.pk)) or MemoryEditForm(
        initial={**initial, "version": session.version}, prefix=f"m{session.pk}"
    )
    review_form = bound.get(("review", session.pk)) or ReviewForm(
        initial={"version": session.version},
        rubric=rubric_get_default(kind=CandidateKind.SESSION),
        prefix=f"r{session.pk}",
    )
    return {
        "session": session,
        "turns": turns,
        "memory": [(MEMORY_FIELD_LABELS[name], memory.get(name, "")) for name in MEMORY_FIELDS],
        "memory_unparsed": bool(memory.get("unparsed")),
        "memory_raw": memory.get("raw", ""),
        "memory_edited": original.get("memory") not in (None, memory),
        "memory_form": memory_form,
        "review_form": review_form,
        "stale": bound.get(("stale", session.pk), False),
    }


def _render_course(request: HttpRequest, course: Candidate, *, bound: dict | None = None, status: int = 200):
    bound = bound or {}
    course.refresh_from_db()
    sessions = course_sessions(course=course)
    context = {
        "course": course,
        "profile": course.content.get("profile", {}),
        "sessions": [_session_row(s, bound) for s in sessions],
        "can_review": roles.user_can_review(request.user),
        "can_edit_profile": roles.user_has_role(request.user, roles.CURATOR, roles.ADMIN),
        "course_form": bound.get(("course", course.pk))
        or CourseEditForm(
            initial={
                "goals": course.content.get("goals", ""),
                "notes": course.content.get("notes", ""),
                "version": course.version,
            },
            prefix="c",
        ),
        "course_review_form": bound.get(("review", course.pk))
        or ReviewForm(
            initial={"version": course.version},
            rubric=rubric_get_default(kind=CandidateKind.COURSE),
            prefix="cr",
        ),
        "stale": bound.get(("stale", course.pk), False),
    }
    return render(request, "annotations/course_detail.html", context, status=status)


def _error_messages(error: ValidationError) -> list[str]:
    return [str(m) for m in error.messages]


@login_required
@require_GET
def course_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _render_course(request, _get_candidate(request, pk, CandidateKind.COURSE))


def _review(request: HttpRequest, candidate: Candidate, course: Candidate, prefix: str) -> HttpResponse:
    rubric = rubric_get_default(kind=candidate.kind)
    form = ReviewForm(request.POST, rubric=rubric, prefix=prefix)
    if not form.is_valid():
        return _render_course(request, course, bound={("review", candidate.pk): form}, status=400)
    try:
        reviews.review_submit(candidate=candidate, reviewer=request.user, **form.review_fields())
    except StaleVersion:
        return _render_course(request, course, bound={("stale", candidate.pk): True}, status=409)
    except ValidationError as error:
        form.add_error(None, "; ".join(_error_messages(error)))
        return _render_course(request, course, bound={("review", candidate.pk): form}, status=400)
    messages.success(request, _("Review of %(item)s saved.") % {"item": candidate})
    return redirect("annotations:course", course.pk)


@login_required
@require_POST
def course_review(request: HttpRequest, pk: int) -> HttpResponse:
    course = _get_candidate(request, pk, CandidateKind.COURSE)
    _check_can_review(request)
    return _review(request, course, course, "cr")


@login_required
@require_POST
def session_review(request: HttpRequest, pk: int) -> HttpResponse:
    session = _get_candidate(request, pk, CandidateKind.SESSION)
    _check_can_review(request)
    course = session.parent
    assert course is not None  # a session belongs to its course
    return _review(request, session, course, f"r{session.pk}")


def _edit(request: HttpRequest, course: Candidate, key: tuple, form, save) -> HttpResponse:
    """Validate ``form``, call ``save(form)``; 400 with the form on an error, 409 when someone saved first."""
    if not form.is_valid():
        return _render_course(request, course, bound={key: form}, status=400)
    try:
        save(form)
    except StaleVersion:
        return _render_course(request, course, bound={("stale", key[1]): True}, status=409)
    except (ValidationError, ContentError) as error:
        form.add_error(None, "; ".join(_error_messages(error)) if isinstance(error, ValidationError) else str(error))
        return _render_course(request, course, bound={key: form}, status=400)
    messages.success(request, _("Saved as a new revision."))
    return redirect("annotations:course", course.pk)


@login_required
@require_POST
def session_memory_edit(request: HttpRequest, pk: int) -> HttpResponse:
    session = _get_candidate(request, pk, CandidateKind.SESSION)
    _check_can_review(request)

    def save(form):
        course_services.session_memory_edit(
            session=session,
            editor=request.user,
            memory=form.memory(),
            base_version=form.cleaned_data["version"],
            category=form.cleaned_data["category"],
            reason=form.cleaned_data["reason"],
        )

    form = MemoryEditForm(request.POST, prefix=f"m{session.pk}")
    course = session.parent
    assert course is not None  # a session belongs to its course
    return _edit(request, course, ("memory", session.pk), form, save)


@login_required
@require_POST
def session_turn_edit(request: HttpRequest, pk: int, index: int) -> HttpResponse:
    session = _get_candidate(request, pk, CandidateKind.SESSION)
    _check_can_review(request)

    def save(form):
        edits.turn_edit(
            candidate=session,
            editor=request.user,
            index=index,
            text=form.cleaned_data["text"],
            base_version=form.cleaned_data["version"],
            category=form.cleaned_data["category"],
            reason=form.cleaned_data["reason"],
        )

    form = SessionTurnEditForm(request.POST, prefix=f"s{session.pk}t{index}")
    course = session.parent
    assert course is not None  # a session belongs to its course
    return _edit(request, course, ("turn", session.pk, index), form, save)


@login_required
@require_POST
def course_edit(request: HttpRequest, pk: int) -> HttpResponse:
    course = _get_candidate(request, pk, CandidateKind.COURSE)
    _check_can_review(request)

    def save(form):
        course_services.course_edit(
            course=course,
            editor=request.user,
            goals=form.cleaned_data["goals"],
            notes=form.cleaned_data["notes"],
            base_version=form.cleaned_data["version"],
            category=form.cleaned_data["category"],
            reason=form.cleaned_data["reason"],
        )

    return _edit(request, course, ("course", course.pk), CourseEditForm(request.POST, prefix="c"), save)


# --- Client profiles (curators) ---------------------------------------------------------------------------------


def _check_curator(request: HttpRequest) -> None:
    if not roles.user_has_role(request.user, roles.CURATOR, roles.ADMIN):
        raise PermissionDenied(_("Only curators and admins may edit client profiles."))


@login_required
@require_http_methods(["GET", "POST"])
def profile_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """Create (no ``pk``) or edit a client profile; the service checks the role again."""
    _check_curator(request)
    profile = get_object_or_404(ClientProfile, pk=pk) if pk else None
    if request.method == "POST":
        form = ProfileForm(request.POST)
        if form.is_valid():
            try:
                profile = profile_save(user=request.user, data=form.cleaned_data, profile=profile)
            except ValidationError as error:
                form.add_error(None, "; ".join(_error_messages(error)))
            else:
                messages.success(request, _("Client profile %(name)s saved.") % {"name": profile.name})
                return redirect("annotations:profile_edit", profile.pk)
        return render(request, "annotations/course_profile_form.html", {"form": form, "profile": profile}, status=400)
    initial = {f: getattr(profile, f) for f in ProfileForm.base_fields} if profile else {"language": "en"}
    context: dict[str, object] = {"form": ProfileForm(initial=initial), "profile": profile}
    if profile:
        context["courses"] = gen_selectors.candidate_list(filters={"kind": CandidateKind.COURSE}).filter(
            profile=profile
        )
    return render(request, "annotations/course_profile_form.html", context)
