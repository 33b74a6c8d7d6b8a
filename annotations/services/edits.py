"""People's edits of candidates (every kind, through ``candidate_edit``) and regeneration with a critique.

Candidates are changed only through ``generation.services.candidates``; each service here records its audit event.
"""

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from generation.models import Candidate, Revision
from generation.services.candidates import candidate_revise
from generation.services.modelspecs import modelspec_get_default
from generation.services.runs import run_create, runs_waiting_lock_count
from psyroom_admin import roles

from ..models import Campaign, CampaignItem
from .audit import audit_record


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

    An edit of an approved candidate sends it back to review (``generation.services.candidates.candidate_revise``),
    and each campaign item that had decided it waits for a senior clinician's adjudication of the edit. Raises
    ``StaleVersion`` (409) when the candidate changed since ``base_version``.
    """
    if not roles.user_can_review(editor):
        raise PermissionDenied(_("Only counselors and senior clinicians may edit."))
    with transaction.atomic():
        was_approved = Candidate.objects.filter(pk=candidate.pk, status=Candidate.Status.APPROVED).exists()
        revision = candidate_revise(
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
        raise ValidationError(
            {
                "index": _("turn %(index)s does not exist (this dialogue has %(count)d turns)")
                % {"index": index, "count": len(turns)}
            }
        )
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": _("a turn cannot be empty")})
    if turns[index]["text"] == text:
        raise ValidationError({"text": _("nothing changed")})
    content = {**candidate.content, "turns": [dict(t) for t in turns]}
    content["turns"][index]["text"] = text
    return candidate_edit(
        candidate=candidate, editor=editor, content=content, base_version=base_version, category=category,
        reason=reason, action="candidate.edit", data={"turn": index},
    )  # fmt: skip


# --- Regeneration ---------------------------------------------------------------------------------------------


def candidate_regenerate_with_critique(
    *, candidate: Candidate, reviewer, critique: str, campaign: Campaign | None = None
):
    """Queue a dialogue run that writes a new version of the candidate, told what was wrong with it.

    The new candidate has ``parent=candidate``; when it is saved, ``annotations.signals`` adds it to ``campaign``.
    """
    if not roles.user_can_review(reviewer):
        raise PermissionDenied(_("Only counselors and senior clinicians ask for a regeneration."))
    critique = (critique or "").strip()
    if not critique:
        raise ValidationError({"critique": _("say what should change")})
    if candidate.kind != "dialogue":
        raise ValidationError(
            {"candidate": _("only dialogues are regenerated, not %(kind)s") % {"kind": candidate.kind}}
        )
    if campaign is not None and not campaign.items.filter(candidate=candidate).exists():
        raise ValidationError(
            {
                "campaign": _("candidate %(item)s is not in campaign %(campaign)s")
                % {"item": candidate.pk, "campaign": campaign.pk}
            }
        )
    critique_target = {"parent": candidate, "feedback": critique}
    if campaign is not None:
        critique_target["campaign"] = campaign.pk
    limit = settings.PSYROOM_REGENERATIONS_PER_USER
    with transaction.atomic():
        # One reviewer's requests one at a time (their row locked), so that a burst cannot pass the limit together.
        waiting = runs_waiting_lock_count(user=reviewer)
        if waiting >= limit:
            raise ValidationError(
                {
                    "critique": _(
                        "you have %(waiting)d regenerations waiting or running (at most %(limit)d): wait until one "
                        "is done"
                    )
                    % {"waiting": waiting, "limit": limit}
                }
            )
        # The run is started for the reviewer, who may not start runs of their own: it is theirs (created_by) for
        # the limit and the record, and the audit event below says what they asked.
        run = run_create(
            kind="dialogue",
            critiques=[critique_target],
            model_spec=modelspec_get_default(),
            created_by=reviewer,
        )
    audit_record(
        actor=reviewer,
        action="candidate.regenerate",
        candidate=candidate,
        data={"run": run.pk, "critique": critique, "campaign": campaign.pk if campaign else None},
    )
    return run
