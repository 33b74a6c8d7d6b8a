"""Writes of the course review pages: edits of a session's memory and of a course's own fields.

Turn edits of a session go through ``edits.turn_edit`` (a session's content has turns like a dialogue's); reviews
through ``reviews.review_submit`` with the session and course rubrics. Every edit is a new revision made by
``edits.candidate_edit`` (risk screen, optimistic version check, audit event).
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.utils.translation import gettext as _

from generation.models import Candidate, CandidateKind, Revision
from generation.schemas import MEMORY_FIELDS
from generation.services.candidates import StaleVersion
from psyroom_admin import roles

from .edits import candidate_edit


def _check_editor(editor) -> None:
    if not roles.user_can_review(editor):
        raise PermissionDenied(_("Only counselors and senior clinicians may edit."))


def session_memory_edit(
    *, session: Candidate, editor, memory: dict, base_version: int, category: str, reason: str = ""
) -> Revision:
    """Replace a session's memory with a complete one written by a person; the turns stay as they are.

    An unparsed memory's raw model text stays in revision 0. Raises ``StaleVersion`` when the session changed since
    ``base_version``.
    """
    _check_editor(editor)
    if session.kind != CandidateKind.SESSION:
        raise ValidationError(_("%(item)s is not a session of a course") % {"item": session})
    if session.version != base_version:
        # Checked before "nothing changed": an edit of an old version is stale even if it matches the new one.
        raise StaleVersion(session)
    clean = {name: str(memory.get(name) or "").strip() for name in MEMORY_FIELDS}
    empty = [name for name, text in clean.items() if not text]
    if empty:
        raise ValidationError(
            {"memory": _("%(fields)s: every field of the memory needs text") % {"fields": ", ".join(empty)}}
        )
    if {k: v for k, v in session.content["memory"].items() if k in MEMORY_FIELDS} == clean:
        raise ValidationError({"memory": _("nothing changed")})
    return candidate_edit(
        candidate=session, editor=editor, content={**session.content, "memory": clean}, base_version=base_version,
        category=category, reason=reason, action="session.memory_edit",
    )  # fmt: skip


def course_edit(
    *, course: Candidate, editor, goals: str, notes: str, base_version: int, category: str, reason: str = ""
) -> Revision:
    """Change a course's own fields (its goals and the reviewers' notes); the profile snapshot is kept."""
    _check_editor(editor)
    if course.kind != CandidateKind.COURSE:
        raise ValidationError(_("%(item)s is not a course") % {"item": course})
    if course.version != base_version:
        raise StaleVersion(course)
    content = {**course.content, "goals": goals.strip(), "notes": notes.strip()}
    if content == course.content:
        raise ValidationError({"goals": _("nothing changed")})
    return candidate_edit(
        candidate=course, editor=editor, content=content, base_version=base_version, category=category,
        reason=reason, action="course.edit",
    )  # fmt: skip
