"""The review of a Psyche-R1 question: confirm or correct the reference answer, rate each model's rationale, edit
the best one (the forms are in ``annotations/views/questions.py``).

A corrected reference answer and an edited rationale become new revisions through
``edits.candidate_edit``; the ratings are an audit event (``question.rate``) that the export reads to
pick the best-rated rationale.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from generation.models import Candidate, Revision
from generation.services.questions import question_rescore
from psyroom_admin import roles

from ..models import AuditEvent
from .audit import audit_record
from .edits import candidate_edit

RATING_KEYS = ("correct", "clinical", "clear")


# --- Services ----------------------------------------------------------------------------------------------------


def question_correct_answer(*, candidate: Candidate, reviewer, answer: str, base_version: int, reason: str = ""):
    """Confirm (same letters: nothing is written but the audit event) or correct a question's reference answer.

    A correction is a new revision; every model's answer is checked again and the difficulty set again.
    """
    if not roles.user_can_review(reviewer):
        raise PermissionDenied(_("Only counselors and senior clinicians may review."))
    content = candidate.content
    letters = "".join(sorted(set(answer.replace(",", "").replace(" ", "").upper())))
    if content["question_type"] == "open":
        raise ValidationError({"answer": _("an open question's reference answer is edited as text, not letters")})
    if not letters or set(letters) - set(content["options"]):
        raise ValidationError(
            {
                "answer": _("%(value)s: give letters among %(letters)s")
                % {"value": repr(answer), "letters": "".join(sorted(content["options"]))}
            }
        )
    if content["question_type"] == "single" and len(letters) != 1:
        raise ValidationError({"answer": _("a single-choice question has exactly one answer letter")})
    if letters == content["answer"]:
        audit_record(actor=reviewer, action="question.confirm_answer", candidate=candidate, data={"answer": letters})
        return None
    return candidate_edit(
        candidate=candidate,
        editor=reviewer,
        content=question_rescore(content={**content, "answer": letters}),
        base_version=base_version,
        category=Revision.Category.CLINICAL,
        reason=reason or f"reference answer {content['answer']} corrected to {letters}",
        action="question.correct_answer",
        data={"from": content["answer"], "to": letters},
    )


def question_rate_rationales(
    *, candidate: Candidate, reviewer, ratings: list[dict], best: int | None, edited: str = "", base_version: int
) -> AuditEvent:
    """Record one reviewer's 1-5 ratings (correct, clinically sound, clear) of each model's rationale.

    ``best`` names the rationale to train on; ``edited``, when given, replaces its text in a new revision.
    """
    if not roles.user_can_review(reviewer):
        raise PermissionDenied(_("Only counselors and senior clinicians may review."))
    answers = candidate.content.get("answers", [])
    if len(ratings) != len(answers):
        raise ValidationError({"ratings": _("rate each of the %(count)d rationales") % {"count": len(answers)}})
    for rating in ratings:
        for key in RATING_KEYS:
            value = rating.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 5:
                raise ValidationError(
                    {
                        "ratings": _("rationale %(index)s: %(key)s needs a score from 1 to 5")
                        % {"index": rating.get("index"), "key": key}
                    }
                )
    if best is not None and not 0 <= best < len(answers):
        raise ValidationError({"best": _("%(value)s is not one of the rationales") % {"value": best}})
    if edited.strip() and best is None:
        raise ValidationError({"best": _("say which rationale the edit is of")})
    with transaction.atomic():
        if edited.strip() and edited.strip() != answers[best].get("rationale", ""):
            content = {**candidate.content, "answers": [dict(a) for a in answers], "chosen": best}
            content["answers"][best].update(rationale=edited.strip(), edited=True)
            candidate_edit(
                candidate=candidate,
                editor=reviewer,
                content=content,
                base_version=base_version,
                category=Revision.Category.WORDING,
                reason=f"rationale of {answers[best]['model']} edited",
                action="question.edit_rationale",
            )
        event = audit_record(
            actor=reviewer, action="question.rate", candidate=candidate, data={"ratings": ratings, "best": best}
        )
    return event
