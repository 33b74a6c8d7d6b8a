"""Writes of the annotations app shared by the others: the audit trail, default rubrics and people's edits.

Reviews, the approval policy, adjudication and risk sign-offs live in ``annotations.reviews``; the campaign queue in
``annotations.campaigns``. Candidates are changed only through ``generation.services``; each service here records its
audit event.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from generation import services as gen_services
from generation.models import Candidate, Revision
from psyroom_admin import roles

from .models import AuditEvent, CampaignItem, Rubric
from .rubrics import DEFAULTS


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


def candidate_edit(
    *,
    candidate: Candidate,
    editor,
    content: dict,
    base_version: int,
    category: str,
    reason: str,
    action: str,
    data: dict | None = None,
) -> Revision:
    """Every person's edit of a candidate, of any kind: a new revision, screened for risk, and its audit event.

    An edit of an approved candidate sends it back to review (``generation.services.candidate_revise``), and each
    campaign item that had decided it waits for a senior clinician's adjudication of the edit. Raises
    ``StaleVersion`` (409) when the candidate changed since ``base_version``.
    """
    if not roles.user_can_review(editor):
        raise PermissionDenied("Only counselors and senior clinicians may edit.")
    with transaction.atomic():
        was_approved = Candidate.objects.filter(pk=candidate.pk, status=Candidate.Status.APPROVED).exists()
        revision = gen_services.candidate_revise(
            candidate=candidate, author=editor, content=content, base_version=base_version, category=category,
            reason=reason,
        )  # fmt: skip
        reopened = []
        if was_approved:
            decided = CampaignItem.objects.filter(candidate=candidate, state=CampaignItem.State.DECIDED)
            reopened = list(decided.values_list("pk", flat=True))
            decided.update(state=CampaignItem.State.ADJUDICATION)
        audit_record(
            actor=editor,
            action=action,
            candidate=candidate,
            data={
                "revision": revision.number, "category": category, "reason": reason, **(data or {}),
                **({"reopened_items": reopened} if was_approved else {}),
            },
        )  # fmt: skip
    candidate.refresh_from_db()
    return revision


def turn_edit(
    *, candidate: Candidate, editor, index: int, text: str, base_version: int, category: str, reason: str = ""
) -> Revision:
    """Replace the text of one turn, as a new revision; the model's own text stays in revision 0.

    Raises ``StaleVersion`` (HTTP 409) when the candidate changed since ``base_version``.
    """
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
    return candidate_edit(
        candidate=candidate, editor=editor, content=content, base_version=base_version, category=category,
        reason=reason, action="candidate.edit", data={"turn": index},
    )  # fmt: skip
