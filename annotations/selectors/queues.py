"""The queues, read: a counselor's claim and what they would be served next in a campaign, and what waits for a
senior clinician. Nothing here claims or writes; the claim itself is ``annotations.services.queue``.
"""

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, JSONField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from generation import selectors as gen_selectors
from generation.models import Candidate, CandidateKind
from psyroom_admin import roles

from ..models import Assignment, Campaign, CampaignItem, Draft
from . import visibility


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


def gold_draw(*, campaign: Campaign, counselor, position: int) -> float:
    """A number in [0, 1) fixed by the campaign, the person and how many items they were served (``position``).

    Keyed with the secret key, so that where reference items fall in a queue cannot be told from the ids, yet the
    same queue gives the same draws (a claim and the prefetch of it agree, and a seeded test is repeatable).
    """
    message = f"gold:{campaign.pk}:{counselor.pk}:{position}".encode()
    digest = hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def gold_rate(campaign: Campaign) -> float:
    """The share of each counselor's queue given to reference items (the campaign's policy; 0 when unset)."""
    rate = (campaign.policy or {}).get("gold_rate") or 0
    return float(rate) if isinstance(rate, int | float) and not isinstance(rate, bool) else 0.0


def gold_items_for(campaign: Campaign, counselor) -> QuerySet[CampaignItem]:
    """The campaign's reference items this person was never served, still approved and with no open risk flag."""
    served = Assignment.objects.filter(item=OuterRef("pk"), counselor=counselor)
    return (
        CampaignItem.objects.filter(campaign=campaign, state=CampaignItem.State.GOLD, gold__active=True)
        .filter(candidate__status=Candidate.Status.APPROVED)
        .filter(~Exists(served), ~gen_selectors.open_risk_q(candidate="candidate_id"))
        .order_by("id")
    )


def gold_due(*, campaign: Campaign, counselor, now) -> CampaignItem | None:
    """The reference item the next claim serves this person, or None for an item of the campaign's own.

    At the campaign's ``gold_rate``: the draw for the person's next position (``gold_draw``) decides, and only while
    the campaign still has work of its own for them, so a queue never ends on reference items. The same queries run
    whatever the draw says, so the time a claim takes does not tell the two apart.
    """
    rate = gold_rate(campaign)
    if rate <= 0:
        return None
    position = Assignment.objects.filter(item__campaign=campaign, counselor=counselor).count()
    reference = gold_items_for(campaign, counselor).first()
    work_left = open_items_for(campaign, counselor, now).exists()
    if (
        reference is not None
        and work_left
        and gold_draw(campaign=campaign, counselor=counselor, position=position) < rate
    ):
        return reference
    return None


def queue_current_claim(*, campaign: Campaign, counselor) -> Assignment | None:
    """The counselor's unexpired claim in this campaign, if they hold one; claims nothing (what a GET may show)."""
    check_member(campaign, counselor)
    if campaign.status != Campaign.Status.OPEN:
        return None
    return own_claim(campaign, counselor)


def queue_peek_next(*, campaign: Campaign, counselor) -> Candidate | None:
    """What the next claim would most likely give after the current one; reserves nothing (the UI prefetches it).

    The claim's own choice (the current claim is excluded: it was served to this person), reference items included.
    """
    now = timezone.now()
    item = gold_due(campaign=campaign, counselor=counselor, now=now)
    if item is None:
        item = open_items_for(campaign, counselor, now).select_related("candidate").first()
    return item.candidate if item else None


@dataclass(frozen=True)
class DeskClaim:
    """A counselor's slot on an item (its item, campaign, rubric and candidate loaded), their draft of it and the id
    of the candidate's newest plan."""

    assignment: Assignment
    draft_data: dict | None
    draft_saved_at: datetime | None
    plan_id: int | None


def desk_claim(*, campaign_id: int, candidate_id: int, counselor) -> DeskClaim | None:
    """The counselor's slot on one item of a campaign they are a member of, read with everything the review desk
    shows of it in one query: the item, the campaign and its rubric, the candidate with its sub-emotion, category and
    scenario, the counselor's draft and the id of the candidate's newest plan. ``None`` when there is no such slot
    (not a member, no claim, no such item): the caller then takes the slow path that says which.
    """
    drafts = Draft.objects.filter(user=counselor, candidate_id=OuterRef("item__candidate_id"))
    plans = Candidate.objects.filter(parent_id=OuterRef("item__candidate_id"), kind=CandidateKind.PLAN).order_by(
        "-created_at"
    )
    assignment = (
        Assignment.objects.filter(
            counselor=counselor,
            item__campaign_id=campaign_id,
            item__candidate_id=candidate_id,
            item__campaign__members=counselor,
        )
        .select_related(
            "item__campaign__rubric",
            "item__candidate__sub_emotion__category",
            "item__candidate__scenario",
        )
        .annotate(
            draft_data=Subquery(drafts.values("data")[:1], output_field=JSONField()),
            draft_saved_at=Subquery(drafts.values("updated_at")[:1]),
            newest_plan_id=Subquery(plans.values("pk")[:1]),
            is_reference=Exists(
                CampaignItem.objects.filter(
                    visibility.reference_q(user=counselor, candidate_id=OuterRef("item__candidate_id"))
                )
            ),
        )
        .first()
    )
    if assignment is None:
        return None
    values = assignment.__dict__
    visibility.reference_known(user=counselor, candidate=assignment.item.candidate, reference=values["is_reference"])
    return DeskClaim(
        assignment=assignment,
        draft_data=values["draft_data"],
        draft_saved_at=values["draft_saved_at"],
        plan_id=values["newest_plan_id"],
    )


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
        .filter(
            Q(state=CampaignItem.State.ADJUDICATION)
            | (open_risk & Q(state__in=[CampaignItem.State.OPEN, CampaignItem.State.GOLD]))
        )
        .exclude(candidate__reviews__reviewer=clinician)
        .order_by("id")
    )
