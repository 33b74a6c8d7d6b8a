"""Read-only pieces the review pages share (the candidate page, the campaign screens, adjudication, courses).

What a user may see is decided in ``annotations.visibility``; this module only lays it out for the templates.
"""

from generation import selectors as gen_selectors
from generation.models import Candidate, Revision
from psyroom_admin import roles

from . import visibility


def _original_turns(candidate: Candidate) -> list[dict]:
    try:
        return gen_selectors.candidate_original_revision(candidate=candidate).content.get("turns", [])
    except Revision.DoesNotExist:
        return []


def turn_rows(candidate: Candidate) -> list[dict]:
    """Each turn with the model's own text (revision 0) where a person has changed it."""
    original = _original_turns(candidate)
    rows = []
    for index, turn in enumerate(candidate.content.get("turns", [])):
        before = original[index].get("text") if index < len(original) else None
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
    }
