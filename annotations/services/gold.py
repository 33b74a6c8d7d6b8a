"""Reference items (gold): a curator marks an approved candidate of a campaign's kind with the scores and decision
held right for it on the campaign's rubric; the queue serves it to each counselor at most once, at the campaign's
``gold_rate`` (``annotations.services.queue``), and a review of it is scored against the reference and decides
nothing (``annotations.services.reviews``).
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from generation import selectors as gen_selectors
from generation.models import Candidate
from psyroom_admin import roles

from ..models import Campaign, CampaignItem, GoldItem, Review
from .audit import audit_record
from .reviews import validate_scores

GOLD_MANAGERS = (roles.CURATOR, roles.ADMIN)


def _check_manager(user) -> None:
    if not roles.user_has_role(user, *GOLD_MANAGERS):
        raise PermissionDenied("Only curators and administrators mark reference items.")


def _check_candidate(candidate: Candidate, campaign: Campaign) -> None:
    """A reference must be settled: approved on its latest revision, of the campaign's kind, with no open risk."""
    if candidate.kind != campaign.kind:
        raise ValidationError(
            {
                "candidate": f"{candidate} is a {candidate.kind}; campaign {campaign.name!r} reviews "
                f"{campaign.kind} items"
            }
        )
    if candidate.status != Candidate.Status.APPROVED:
        raise ValidationError({"candidate": f"{candidate} is {candidate.get_status_display().lower()}, not approved"})
    latest = gen_selectors.candidate_latest_revision(candidate=candidate)
    if candidate.approved_revision_id != latest.pk:
        raise ValidationError({"candidate": f"{candidate} was edited after its approval: it is not settled"})
    if candidate.open_risk_flags().exists():
        raise ValidationError({"candidate": f"{candidate} has an open risk flag: a senior clinician must sign it off"})


def gold_mark(*, campaign: Campaign, candidate: Candidate, user, scores: dict, decision: str) -> GoldItem:
    """Mark ``candidate`` as a reference item of ``campaign`` (or change its reference, or mark it again).

    Curators and administrators only. Refuses, naming the field, a candidate that is not approved on its latest
    revision, has an open risk flag, is of another kind or is already one of the campaign's own items; scores
    outside the campaign rubric's criteria or scale; an unknown decision. Nothing is written on a refusal.
    """
    _check_manager(user)
    if decision not in Review.Decision.values:
        raise ValidationError({"decision": f"must be approve, reject or needs_revision, not {decision!r}"})
    clean = validate_scores(rubric=campaign.rubric, scores=scores)
    with transaction.atomic():
        locked = Candidate.objects.select_for_update().get(pk=candidate.pk)
        _check_candidate(locked, campaign)
        item = CampaignItem.objects.select_for_update().filter(campaign=campaign, candidate=locked).first()
        if item is None:
            item = CampaignItem.objects.create(campaign=campaign, candidate=locked, state=CampaignItem.State.GOLD)
        elif item.state != CampaignItem.State.GOLD:
            raise ValidationError(
                {"candidate": f"{locked} is one of campaign {campaign.name!r}'s own items: its reviewers decide it"}
            )
        gold, _ = GoldItem.objects.update_or_create(
            item=item, defaults={"scores": clean, "decision": decision, "active": True, "marked_by": user}
        )
        audit_record(
            actor=user,
            action="gold.mark",
            candidate=locked,
            data={"campaign": campaign.pk, "item": item.pk, "scores": clean, "decision": decision},
        )
    return gold


def gold_unmark(*, campaign: Campaign, candidate: Candidate, user) -> GoldItem:
    """Stop serving ``candidate`` as a reference item of ``campaign``; the reviews written keep their reference."""
    _check_manager(user)
    with transaction.atomic():
        gold = (
            GoldItem.objects.select_for_update()
            .filter(item__campaign=campaign, item__candidate=candidate, active=True)
            .first()
        )
        if gold is None:
            raise ValidationError({"candidate": f"{candidate} is not a reference item of campaign {campaign.name!r}"})
        gold.active = False
        gold.marked_by = user
        gold.save(update_fields=["active", "marked_by", "marked_at"])
        audit_record(
            actor=user, action="gold.unmark", candidate=candidate, data={"campaign": campaign.pk, "item": gold.item_id}
        )
    return gold
