"""Reference items (gold), read: a campaign's reference items for those who mark them, and each counselor's reviews
of them scored against the reference. Marking is ``annotations.services.gold``; serving is the queue's.
"""

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet

from generation.models import Candidate
from psyroom_admin import roles

from ..models import Campaign, GoldItem, Review

GOLD_READERS = (roles.CURATOR, roles.ADMIN)


def gold_list(*, campaign: Campaign, user) -> QuerySet[GoldItem]:
    """A campaign's reference items (unmarked ones too), with how many reviews each has had; curators and admins."""
    if not roles.user_has_role(user, *GOLD_READERS):
        raise PermissionDenied("Only curators and administrators see reference items.")
    return (
        GoldItem.objects.filter(item__campaign=campaign)
        .select_related("item__candidate", "marked_by")
        .annotate(review_count=Count("item__assignments__review", filter=Q(item__assignments__review__gold=True)))
        .order_by("item_id")
    )


def gold_campaigns_for(*, user, candidate: Candidate) -> QuerySet[Campaign]:
    """The open campaigns ``candidate`` could be a reference item of, for a curator or admin: it is approved, and
    they are of its kind; none for anyone else."""
    if not roles.user_has_role(user, *GOLD_READERS) or candidate.status != Candidate.Status.APPROVED:
        return Campaign.objects.none()
    return Campaign.objects.filter(kind=candidate.kind, status=Campaign.Status.OPEN).order_by("-created_at", "-id")


@dataclass(frozen=True)
class GoldScore:
    """One review of a reference item against the reference: the decision matched, and per criterion the absolute
    difference of the score from the reference's."""

    reviewer_id: int
    candidate_id: int
    decision_match: bool
    differences: dict[str, int]


def gold_scores(*, reviews: QuerySet[Review]) -> list[GoldScore]:
    """``reviews`` that judged a reference item, scored against its reference (a person is served a reference item
    once, so each reviewer appears once per item). No access check: the caller (the dashboards) decides whose
    reviews are in ``reviews``."""
    rows = (
        reviews.filter(gold=True, assignment__item__gold__isnull=False)
        .values_list(
            "reviewer_id",
            "candidate_id",
            "decision",
            "scores",
            "assignment__item__gold__decision",
            "assignment__item__gold__scores",
        )
        .order_by("id")
    )
    scored = []
    for reviewer_id, candidate_id, decision, scores, ref_decision, ref_scores in rows:
        differences = {
            key: abs(int(scores[key]) - int(ref))
            for key, ref in (ref_scores or {}).items()
            if isinstance(scores, dict) and key in scores
        }
        scored.append(GoldScore(reviewer_id, candidate_id, decision == ref_decision, differences))
    return scored
