"""The queues, read: a counselor's claim and what they would be served next in a campaign, and what waits for a
senior clinician. Nothing here claims or writes; the claim itself is ``annotations.services.queue``.
"""

from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from generation import selectors as gen_selectors
from generation.models import Candidate
from psyroom_admin import roles

from ..models import Assignment, Campaign, CampaignItem


def check_member(campaign: Campaign, user) -> None:
    if not roles.user_can_review(user):
        raise PermissionDenied("Only counselors and senior clinicians review.")
    if not campaign.members.filter(pk=user.pk).exists():
        raise PermissionDenied(f"You are not a member of campaign {campaign.name!r}.")


def own_claim(campaign: Campaign, counselor) -> Assignment | None:
    return (
        Assignment.objects.select_related("item__candidate")
        .filter(
            item__campaign=campaign,
            counselor=counselor,
            status=Assignment.Status.CLAIMED,
            lease_expires_at__gt=timezone.now(),
        )
        .order_by("id")
        .first()
    )


def open_items_for(campaign: Campaign, counselor, now) -> QuerySet[CampaignItem]:
    """The campaign's open items with fewer than k live slots that this person was never served, in queue order:
    what ``CLAIM_SQL`` chooses from, without its lock."""
    live = (
        Assignment.objects.filter(Assignment.live_q(now), item=OuterRef("pk"))
        .order_by()
        .values("item")
        .annotate(n=Count("pk"))
        .values("n")
    )
    served = Assignment.objects.filter(item=OuterRef("pk"), counselor=counselor)
    return (
        CampaignItem.objects.filter(campaign=campaign, state=CampaignItem.State.OPEN)
        .filter(~Exists(served))
        .annotate(live=Coalesce(Subquery(live), 0))
        .filter(live__lt=campaign.overlap)
        .order_by("id")
    )


def queue_current_claim(*, campaign: Campaign, counselor) -> Assignment | None:
    """The counselor's unexpired claim in this campaign, if they hold one; claims nothing (what a GET may show)."""
    check_member(campaign, counselor)
    if campaign.status != Campaign.Status.OPEN:
        return None
    return own_claim(campaign, counselor)


def queue_peek_next(*, campaign: Campaign, counselor) -> Candidate | None:
    """What the next claim would most likely give after the current one; reserves nothing (the UI prefetches it).

    One query, like the claim's (the current claim is excluded: it was served to this person).
    """
    item = open_items_for(campaign, counselor, timezone.now()).select_related("candidate").first()
    return item.candidate if item else None


# --- Adjudication --------------------------------------------------------------------------------------------------


def adjudication_queue(*, clinician) -> QuerySet[CampaignItem]:
    """Items waiting for this senior clinician: to decide (reviewers disagreed, flagged risk, or an approved item was
    edited: state ``adjudication``) or to sign off (an open risk flag on an item still under review).

    Items the clinician rated are left out: someone who rated an item does not settle it.
    """
    if not roles.user_can_sign_off_risk(clinician):
        raise PermissionDenied("Only a senior clinician adjudicates.")
    open_risk = gen_selectors.open_risk_q(candidate="candidate_id")
    return (
        CampaignItem.objects.select_related("campaign", "candidate")
        .filter(Q(state=CampaignItem.State.ADJUDICATION) | (open_risk & Q(state=CampaignItem.State.OPEN)))
        .exclude(candidate__reviews__reviewer=clinician)
        .order_by("id")
    )
