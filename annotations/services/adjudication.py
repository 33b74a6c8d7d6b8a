"""A senior clinician's acts: adjudication of items waiting for it, and the sign-off of risk flags.

Both bind to what the clinician read: the version (a stale one is a 409) and the flags they name.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from generation import selectors as gen_selectors
from generation.models import Candidate
from generation.services.candidates import StaleVersion, candidate_set_status, candidate_sign_off_risk
from psyroom_admin import roles

from ..models import Adjudication, CampaignItem, Review
from .audit import audit_record
from .reviews import DECISION_STATUS


def adjudicate(
    *,
    item: CampaignItem,
    clinician,
    decision: str,
    reason: str,
    base_version: int,
    flag_ids: list[int] | None = None,
) -> Adjudication:
    """A senior clinician's final decision on an item waiting for adjudication, on the version they read.

    Approving signs off the open risk flags, which the clinician names (``flag_ids``, as the page showed them): a
    flag raised after they read the item is not covered, and the approval is refused. Someone who rated the item, or
    wrote its latest revision, cannot approve it.
    """
    if not roles.user_can_sign_off_risk(clinician):
        raise PermissionDenied(_("Only a senior clinician adjudicates."))
    if decision not in Review.Decision.values:
        raise ValidationError(
            {"decision": _("must be approve, reject or needs_revision, not %(value)s") % {"value": repr(decision)}}
        )
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("say why: an adjudication needs a reason")})
    with transaction.atomic():
        locked_item = CampaignItem.objects.select_for_update().select_related("campaign").get(pk=item.pk)
        if locked_item.state != CampaignItem.State.ADJUDICATION:
            raise ValidationError(
                {
                    "item": _("this item is %(state)s: only items waiting for adjudication are adjudicated")
                    % {"state": locked_item.get_state_display().lower()}
                }
            )
        candidate = Candidate.objects.select_for_update().get(pk=locked_item.candidate_id)
        if candidate.version != base_version:
            raise StaleVersion(candidate)
        if Review.objects.filter(candidate=candidate, reviewer=clinician).exists():
            raise ValidationError(
                {"item": _("you rated this item: another senior clinician, who did not, must adjudicate it")}
            )
        revision = gen_selectors.candidate_latest_revision(candidate=candidate)
        if decision == Review.Decision.APPROVE:
            if revision.author_id == clinician.pk:
                raise ValidationError(
                    {
                        "item": _("you wrote revision %(number)s: another senior clinician must judge your edit")
                        % {"number": revision.number}
                    }
                )
            open_ids = set(candidate.open_risk_flags().values_list("pk", flat=True))
            unseen = sorted(open_ids - set(flag_ids or []))
            if unseen:
                raise ValidationError(
                    {
                        "flags": _(
                            "risk flag(s) %(ids)s are open and not among those you read: read them, then decide again"
                        )
                        % {"ids": ", ".join(map(str, unseen))}
                    }
                )
            if open_ids:
                candidate_sign_off_risk(
                    candidate=candidate, clinician=clinician, flag_ids=sorted(open_ids), base_version=base_version,
                    note=reason,
                )  # fmt: skip
                audit_record(
                    actor=clinician,
                    action="risk.sign_off",
                    candidate=candidate,
                    data={"note": reason, "flags": sorted(open_ids), "version": base_version, "adjudication": True},
                )
        candidate_set_status(
            candidate=candidate,
            status=DECISION_STATUS[decision],
            revision=revision if decision == Review.Decision.APPROVE else None,
        )
        adjudication = Adjudication.objects.create(
            candidate=candidate,
            campaign=locked_item.campaign,
            clinician=clinician,
            decision=decision,
            reason=reason,
            revision=revision,
        )
        CampaignItem.objects.filter(pk=locked_item.pk).update(state=CampaignItem.State.DECIDED)
        audit_record(
            actor=clinician,
            action="adjudication",
            candidate=candidate,
            data={
                "adjudication": adjudication.pk,
                "campaign": locked_item.campaign_id,
                "decision": decision,
                "reason": reason,
                "revision": revision.number,
            },
        )
    item.refresh_from_db()
    return adjudication


# --- Risk sign-off -------------------------------------------------------------------------------------------------


def risk_sign_off(*, candidate: Candidate, clinician, note: str, flag_ids: list[int], base_version: int) -> list:
    """A senior clinician's sign-off of the risk flags they read (``flag_ids``) on version ``base_version``."""
    if not roles.user_can_sign_off_risk(clinician):
        raise PermissionDenied(_("Only a senior clinician may sign off a risk flag."))
    note = (note or "").strip()
    if not note:
        raise ValidationError({"note": _("say why the risk is handled acceptably")})
    with transaction.atomic():
        flags = candidate_sign_off_risk(
            candidate=candidate, clinician=clinician, flag_ids=flag_ids, base_version=base_version, note=note
        )
        audit_record(
            actor=clinician,
            action="risk.sign_off",
            candidate=candidate,
            data={"note": note, "flags": sorted(f.pk for f in flags), "version": base_version},
        )
    candidate.refresh_from_db()
    return flags
