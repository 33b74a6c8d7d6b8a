"""Writes of the annotations app: reviews, edits, risk sign-offs, exports. Views, the API and commands call these.

Candidates are changed only through ``generation.services``; each service here records its audit event.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from generation import selectors as gen_selectors
from generation import services as gen_services
from generation.models import Candidate, Revision
from psyroom_admin import roles

from .models import AuditEvent, Review, RiskFlag, Rubric
from .rubrics import DEFAULTS, SCALE

DECISION_STATUS = {
    Review.Decision.APPROVE: Candidate.Status.APPROVED,
    Review.Decision.REJECT: Candidate.Status.REJECTED,
    Review.Decision.NEEDS_REVISION: Candidate.Status.NEEDS_REVISION,
}


def audit_record(*, actor, action: str, candidate: Candidate | None = None, data: dict | None = None) -> AuditEvent:
    return AuditEvent.objects.create(actor=actor, action=action, candidate=candidate, data=data or {})


def rubric_get_default(*, kind: str) -> Rubric:
    """The newest rubric of the default family for a kind, created from ``rubrics.DEFAULTS`` on first use."""
    definition = DEFAULTS.get(kind)
    if definition is None:
        raise ValidationError(f"kind: no default rubric for {kind!r}")
    rubric, _ = Rubric.objects.get_or_create(
        kind=kind,
        name=definition["name"],
        version=definition["version"],
        defaults={"criteria": definition["criteria"]},
    )
    return rubric


def _validate_scores(*, rubric: Rubric, scores: dict) -> dict:
    low, high = SCALE
    keys = [c["key"] for c in rubric.criteria]
    if not isinstance(scores, dict):
        raise ValidationError({"scores": "must be an object of criterion: score"})
    unknown = set(scores) - set(keys)
    if unknown:
        raise ValidationError({"scores": f"unknown criteria: {', '.join(sorted(unknown))}"})
    clean = {}
    for key in keys:
        value = scores.get(key)
        if value is None or value == "":
            raise ValidationError({"scores": f"{key}: a score from {low} to {high} is required"})
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValidationError({"scores": f"{key}: {value!r} is not a whole number"}) from None
        if isinstance(value, bool) or not low <= number <= high or str(number) != str(value).strip():
            raise ValidationError({"scores": f"{key}: {value!r} is not a score from {low} to {high}"})
        clean[key] = number
    return clean


def _validate_review(*, decision: str, risk_flags: list[str] | None, comment: str) -> list[str]:
    """Check a review's decision, risk flags and comment (plain or in a campaign); returns the risk flags."""
    if decision not in Review.Decision.values:
        raise ValidationError({"decision": f"must be approve, reject or needs_revision, not {decision!r}"})
    risk_flags = list(risk_flags or [])
    bad_flags = [f for f in risk_flags if f not in RiskFlag.values]
    if bad_flags:
        raise ValidationError({"risk_flags": f"unknown risk flag(s): {', '.join(map(str, bad_flags))}"})
    if comment and len(comment) > 10_000:
        raise ValidationError({"comment": "at most 10000 characters"})
    if risk_flags and not comment.strip():
        raise ValidationError({"comment": "say what the risk is: a comment is required with a risk flag"})
    return risk_flags


def review_submit(
    *,
    candidate: Candidate,
    reviewer,
    scores: dict,
    decision: str,
    comment: str = "",
    risk_flags: list[str] | None = None,
    base_version: int,
    time_spent_s: int = 0,
) -> Review:
    """Record a counselor's review of the candidate's current revision and apply its decision.

    The review judges the revision the reviewer saw (``base_version``); if the candidate changed since, nothing is
    written. A risk flag raised here, or an open one, blocks approval until a senior clinician signs it off.
    """
    if not roles.user_can_review(reviewer):
        raise PermissionDenied("Only counselors and senior clinicians may review.")
    risk_flags = _validate_review(decision=decision, risk_flags=risk_flags, comment=comment)
    rubric = rubric_get_default(kind=candidate.kind)
    clean_scores = _validate_scores(rubric=rubric, scores=scores)
    if decision == Review.Decision.APPROVE and (risk_flags or candidate.has_open_risk):
        raise ValidationError(
            {"decision": "This item is flagged for risk: a senior clinician must sign it off before approval."}
        )

    with transaction.atomic():
        locked = Candidate.objects.select_for_update().get(pk=candidate.pk)
        if locked.version != base_version:
            raise gen_services.StaleVersion(locked)
        revision = gen_selectors.candidate_latest_revision(candidate=locked)
        review = Review.objects.create(
            candidate=locked,
            revision=revision,
            reviewer=reviewer,
            rubric=rubric,
            scores=clean_scores,
            decision=decision,
            comment=comment,
            risk_flags=risk_flags,
            time_spent_s=max(0, int(time_spent_s)),
        )
        if risk_flags:
            now = timezone.now().isoformat()
            gen_services.candidate_flag_risk(
                candidate=locked,
                flags=[{"by": f"review:{review.pk}", "code": f, "detail": comment, "at": now} for f in risk_flags],
            )
        gen_services.candidate_set_status(candidate=locked, status=DECISION_STATUS[decision])
        audit_record(
            actor=reviewer,
            action="review.submit",
            candidate=locked,
            data={"review": review.pk, "decision": decision, "revision": revision.number, "risk_flags": risk_flags},
        )
    candidate.refresh_from_db()
    return review


def turn_edit(
    *, candidate: Candidate, editor, index: int, text: str, base_version: int, category: str, reason: str = ""
) -> Revision:
    """Replace the text of one turn, as a new revision; the model's own text stays in revision 0.

    Raises ``StaleVersion`` (HTTP 409) when the candidate changed since ``base_version``.
    """
    if not roles.user_can_review(editor):
        raise PermissionDenied("Only counselors and senior clinicians may edit.")
    turns = candidate.content.get("turns", [])
    if not 0 <= index < len(turns):
        raise ValidationError({"index": f"turn {index} does not exist (this dialogue has {len(turns)} turns)"})
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": "a turn cannot be empty"})
    if turns[index]["text"] == text:
        raise ValidationError({"text": "nothing changed"})
    content = {**candidate.content, "turns": [dict(t) for t in turns]}
    content["turns"][index]["text"] = text
    with transaction.atomic():
        revision = gen_services.candidate_revise(
            candidate=candidate,
            author=editor,
            content=content,
            base_version=base_version,
            category=category,
            reason=reason,
        )
        audit_record(
            actor=editor,
            action="candidate.edit",
            candidate=candidate,
            data={"revision": revision.number, "turn": index, "category": category, "reason": reason},
        )
    candidate.refresh_from_db()
    return revision


def risk_sign_off(*, candidate: Candidate, clinician, note: str) -> Candidate:
    """A senior clinician's sign-off of a candidate's risk flags, with the reason recorded."""
    if not roles.user_can_sign_off_risk(clinician):
        raise PermissionDenied("Only a senior clinician may sign off a risk flag.")
    if not note.strip():
        raise ValidationError({"note": "say why the risk is handled acceptably"})
    with transaction.atomic():
        gen_services.candidate_sign_off_risk(candidate=candidate, clinician=clinician)
        audit_record(
            actor=clinician,
            action="risk.sign_off",
            candidate=candidate,
            data={"note": note, "flags": candidate.risk_flags},
        )
    return candidate
