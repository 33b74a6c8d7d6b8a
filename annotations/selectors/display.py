"""Read-only pieces the review pages share (the candidate page, the campaign screens, adjudication, courses).

What a user may see is decided in ``annotations.visibility``; this module only lays it out for the templates.
"""

from generation import selectors as gen_selectors
from generation.models import Candidate, Revision
from generation.schemas import MEMORY_FIELDS
from generation.selectors import course_sessions
from psyroom_admin import roles

from ..forms.courses import MEMORY_FIELD_LABELS
from . import visibility


def _original_content(candidate: Candidate) -> dict:
    """The model's own content (revision 0), or nothing for a candidate without one."""
    try:
        return gen_selectors.candidate_original_revision(candidate=candidate).content
    except Revision.DoesNotExist:
        return {}


def turn_rows(candidate: Candidate, *, original: dict | None = None) -> list[dict]:
    """Each turn with the model's own text (revision 0) where a person has changed it (``original``: revision 0's
    content, when the caller has it already)."""
    original_turns = (_original_content(candidate) if original is None else original).get("turns", [])
    rows = []
    for index, turn in enumerate(candidate.content.get("turns", [])):
        before = original_turns[index].get("text") if index < len(original_turns) else None
        rows.append(
            {
                "index": index,
                "number": index + 1,
                "role": turn.get("role", ""),
                "text": turn.get("text", ""),
                "strategy": turn.get("strategy", ""),
                "original": before if before is not None and before != turn.get("text") else None,
            }
        )
    return rows


def course_rows(course: Candidate) -> dict:
    """A course as its reviewers rate it: the client profile it was written for (the snapshot in its content, not
    the profile as edited since), its goals and notes, and each session's turns and memory, in order."""
    content = course.content
    sessions = []
    for session in course_sessions(course=course):
        original = _original_content(session)
        memory = session.content.get("memory", {})
        sessions.append(
            {
                "session": session,
                "turns": turn_rows(session, original=original),
                "memory": [(MEMORY_FIELD_LABELS[name], memory.get(name, "")) for name in MEMORY_FIELDS],
                "memory_unparsed": bool(memory.get("unparsed")),
                "memory_raw": memory.get("raw", ""),
                "memory_edited": original.get("memory") not in (None, memory),
            }
        )
    return {
        "profile": content.get("profile", {}),
        "goals": content.get("goals", ""),
        "notes": content.get("notes", ""),
        "sessions": sessions,
    }


def question_rows(question: Candidate) -> dict:
    """A question as its reviewers rate it: the stem, each option marked where it is in the answer key, the key, and
    each model's answer with its rationale (the content being rated, shown blind or not)."""
    content = question.content
    key = content.get("answer", "")
    options = content.get("options") or {}
    return {
        **content,
        "option_rows": [{"letter": letter, "text": text, "in_key": letter in key} for letter, text in options.items()],
    }


def fragments_context(user, candidate: Candidate, campaign=None) -> dict:
    """What the turn partials, the risk banner, the reviews, the AI review and the revision list need, as ``user``
    may see them (``visibility.candidate_view``)."""
    view = visibility.candidate_view(user=user, candidate=candidate, campaign=campaign)
    return {
        "candidate": candidate,
        "can_review": roles.user_can_review(user),
        "can_sign_off": roles.user_can_sign_off_risk(user),
        "blind": view.blind,
        "risk": view.risk,
        "revisions": view.revisions,
        "reviews": view.reviews,
        "ai_review": view.ai_review,
        "status": view.status,
        "status_label": view.status_label,
        "original_content": view.original,
    }
