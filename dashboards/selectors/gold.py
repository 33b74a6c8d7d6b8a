"""Each counselor's accuracy on a campaign's reference items (gold): how many they reviewed, how often their
decision matched the reference (with a 95% Wilson interval) and the mean absolute difference of their scores from
the reference's, over all criteria and per criterion.

Who sees what follows the agreement page: senior clinicians, curators and admins every reviewer, by name; anyone
else only their own row, and only over reviews submitted before today, so that the count moving right after a
review does not tell them which item was a reference item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time

from django.utils import timezone

from annotations.models import Campaign, GoldItem, Review
from annotations.selectors import visibility
from annotations.selectors.gold import gold_scores
from dashboards import stats
from dashboards.cache import cached, version_of
from dashboards.stats import Estimate, Interval

from . import AgreementFilters, rater_labels, sees_all


@dataclass
class GoldRow:
    rater: str
    own: bool
    items: int
    decision_accuracy: Estimate
    decision_ci: Interval
    mad: Estimate
    # Per criterion of the campaign's rubric, in its order: (label, mean absolute difference).
    criteria: list[tuple[str, Estimate]] = field(default_factory=list)


@dataclass
class GoldAccuracy:
    campaign: Campaign
    # "all": every reviewer; "own": the viewer's own row only.
    scope: str
    criteria: list[str] = field(default_factory=list)
    rows: list[GoldRow] = field(default_factory=list)


def _gold_reviews(campaign: Campaign, filters: AgreementFilters, *, user, everything: bool):
    qs = Review.objects.filter(campaign=campaign, gold=True)
    if filters.since:
        qs = qs.filter(created_at__date__gte=filters.since)
    if filters.until:
        qs = qs.filter(created_at__date__lte=filters.until)
    if filters.sub_emotion:
        qs = qs.filter(candidate__sub_emotion__key=filters.sub_emotion)
    if filters.model:
        qs = qs.filter(candidate__run__model_spec__name=filters.model)
    if not everything:
        today = timezone.make_aware(datetime.combine(timezone.localdate(), time.min))
        qs = qs.filter(reviewer=user, created_at__lt=today)
    return qs


def _mean(values: list[int], reason: str) -> Estimate:
    return stats.defined(sum(values) / len(values)) if values else stats.undefined(reason)


def gold_accuracy_compute(*, user, campaign: Campaign, filters: AgreementFilters) -> GoldAccuracy:
    everything = sees_all(user)
    result = GoldAccuracy(campaign=campaign, scope="all" if everything else "own")
    criteria = [(c["key"], c.get("label", c["key"])) for c in campaign.rubric.criteria]
    result.criteria = [label for _, label in criteria]
    scored = gold_scores(reviews=_gold_reviews(campaign, filters, user=user, everything=everything))
    rater_ids = sorted({s.reviewer_id for s in scored})
    labels = rater_labels(user=user, campaign=campaign, rater_ids=rater_ids)
    for pk, label in zip(rater_ids, labels, strict=True):
        mine = [s for s in scored if s.reviewer_id == pk]
        accuracy, interval = stats.proportion(sum(s.decision_match for s in mine), len(mine))
        every = [d for s in mine for d in s.differences.values()]
        per_criterion = [
            (name, _mean([s.differences[key] for s in mine if key in s.differences], "no reference score"))
            for key, name in criteria
        ]
        result.rows.append(
            GoldRow(
                rater=label,
                own=pk == user.pk,
                items=len(mine),
                decision_accuracy=accuracy,
                decision_ci=interval,
                mad=_mean(every, "no reference score"),
                criteria=per_criterion,
            )
        )
    return result


def gold_accuracy_for(*, user, campaign: Campaign, filters: AgreementFilters) -> GoldAccuracy:
    """``gold_accuracy_compute``, cached under the reviews in scope as they are now (a new review, a new key)."""
    everything = sees_all(user)
    reviews = _gold_reviews(campaign, filters, user=user, everything=everything)
    parts = [
        campaign.pk,
        filters,
        "all" if everything else f"own:{user.pk}",
        visibility.campaign_works_blind(user=user, campaign=campaign),
        version_of(reviews),
        # A reference changed since (marked again with other scores) changes every score.
        version_of(GoldItem.objects.filter(item__campaign=campaign), field="marked_at"),
    ]
    return cached("gold", parts, lambda: gold_accuracy_compute(user=user, campaign=campaign, filters=filters))
