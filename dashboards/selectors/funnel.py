"""Where data dies in the pipeline, and who reviews how fast.

Funnel (senior clinicians, curators and admins): candidates by status (generated and not yet reviewed, in review,
approved, rejected, needs revision) and adjudicated (an adjudication exists), grouped by run, model spec, prompt
version, source dataset (imports) or sub-emotion, counted in SQL, and exported (held by at least one ready release,
``releases.selectors.released_candidate_ids``), the funnel's end. Beside it: which criteria rejecting reviews scored
1 or 2 (reviews carry no rejection reason code, so the low criteria stand for it), risk-flag codes and edit
categories.

Throughput (everyone with a role; a counselor sees only their own row, so no other name ever reaches them): per
reviewer, reviews, items per hour of review time (``time_spent_s``), the median seconds per review, the share of
reviewed items the reviewer also edited, and the reviews faster than the floor, flagged as suspicious. The floor is
the campaign's ``policy["min_seconds"]`` when one campaign is chosen, else ``settings.PSYROOM_REVIEW_MIN_SECONDS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform

from annotations.models import Adjudication, Campaign, CampaignItem, Review
from annotations.rubrics import DIALOGUE_RUBRIC
from dashboards.cache import cached, version_of
from generation.models import Candidate, Revision, RiskFlag
from releases.selectors import release_items_visible, released_candidate_ids

# What ``by`` may group the funnel by, and the column it groups on.
GROUPS = {
    "run": "run_id",
    "model": "run__model_spec__name",
    "prompt_version": "run__prompt_version",
    "source": "source_dataset",
    "sub_emotion": "sub_emotion__key",
}
STAGES = ["total", "generated", "in_review", "approved", "rejected", "needs_revision", "adjudicated", "exported"]


@dataclass(frozen=True)
class FunnelFilters:
    since: date | None = None
    until: date | None = None
    campaign: Campaign | None = None
    by: str = "model"


@dataclass
class FunnelRow:
    group: str
    counts: dict[str, int]


@dataclass
class ThroughputRow:
    reviewer: str
    own: bool
    reviews: int
    hours: float
    items_per_hour: float | None
    median_seconds: float | None
    edited_share: float | None
    fast: int
    suspicious: bool


@dataclass
class Funnel:
    filters: FunnelFilters
    scope: str  # "all" or "own"
    floor_seconds: int
    stages: list[FunnelRow] = field(default_factory=list)
    rejection_criteria: list[tuple[str, int]] = field(default_factory=list)
    risk_flags: list[tuple[str, int]] = field(default_factory=list)
    edits: list[tuple[str, int]] = field(default_factory=list)
    throughput: list[ThroughputRow] = field(default_factory=list)


def _candidates(filters: FunnelFilters) -> QuerySet[Candidate]:
    qs = Candidate.objects.order_by()
    if filters.since:
        qs = qs.filter(created_at__date__gte=filters.since)
    if filters.until:
        qs = qs.filter(created_at__date__lte=filters.until)
    if filters.campaign:
        # Its own items: a reference item was decided elsewhere.
        qs = qs.filter(campaign_items__campaign=filters.campaign).exclude(
            Exists(
                CampaignItem.objects.filter(
                    candidate_id=OuterRef("pk"), campaign=filters.campaign, state=CampaignItem.State.GOLD
                )
            )
        )
    return qs


def _reviews(filters: FunnelFilters) -> QuerySet[Review]:
    # Reviews of reference items are scored against the reference (the gold table), not part of the pipeline.
    qs = Review.objects.filter(gold=False).order_by()
    if filters.since:
        qs = qs.filter(created_at__date__gte=filters.since)
    if filters.until:
        qs = qs.filter(created_at__date__lte=filters.until)
    if filters.campaign:
        qs = qs.filter(campaign=filters.campaign)
    return qs


def _stages(filters: FunnelFilters) -> list[FunnelRow]:
    column = GROUPS[filters.by]
    qs = _candidates(filters).annotate(
        adjudicated=Exists(Adjudication.objects.filter(candidate=OuterRef("pk"))),
        source_dataset=KeyTextTransform("dataset", "source"),
    )
    status = Candidate.Status
    rows = (
        qs.values(column)
        .annotate(
            total=Count("id"),
            generated=Count("id", filter=Q(status=status.GENERATED)),
            in_review=Count("id", filter=Q(status=status.IN_REVIEW)),
            approved=Count("id", filter=Q(status=status.APPROVED)),
            rejected=Count("id", filter=Q(status=status.REJECTED)),
            needs_revision=Count("id", filter=Q(status=status.NEEDS_REVISION)),
            adjudicated_n=Count("id", filter=Q(adjudicated=True)),
            exported=Count("id", filter=Q(pk__in=released_candidate_ids())),
        )
        .order_by(column)
    )
    out = []
    for row in rows:
        counts = {stage: row[stage] for stage in STAGES if stage != "adjudicated"}
        counts["adjudicated"] = row["adjudicated_n"]
        value = row[column]
        label = "(none)" if value in (None, "") else (f"run {value}" if filters.by == "run" else str(value))
        out.append(FunnelRow(group=label, counts=counts))
    return out


def _rejection_criteria(reviews: QuerySet[Review]) -> list[tuple[str, int]]:
    rejecting = reviews.filter(decision=Review.Decision.REJECT)
    criteria = DIALOGUE_RUBRIC["criteria"]
    counts = rejecting.aggregate(
        **{c["key"]: Count("id", filter=Q(**{f"scores__{c['key']}__lte": 2})) for c in criteria},
        total=Count("id"),
    )
    return [("Rejecting reviews", counts["total"])] + [(c["label"], counts[c["key"]]) for c in criteria]


def _throughput(*, user, everything: bool, reviews: QuerySet[Review], floor: int) -> list[ThroughputRow]:
    if not everything:
        reviews = reviews.filter(reviewer=user)
    rows = list(reviews.values_list("reviewer_id", "candidate_id", "time_spent_s"))
    if not rows:
        return []
    reviewer, candidate, seconds = (np.asarray(column, dtype=np.int64) for column in zip(*rows, strict=True))
    ids = np.unique(reviewer)
    edits = set(
        Revision.objects.filter(number__gt=0, author_id__in=ids.tolist(), candidate_id__in=reviews.values("candidate"))
        .values_list("author_id", "candidate_id")
        .distinct()
    )
    people = get_user_model().objects.only("username", "first_name", "last_name").in_bulk(ids.tolist())
    out = []
    for pk in ids.tolist():
        mine = reviewer == pk
        spent = seconds[mine]
        items = set(candidate[mine].tolist())
        edited = sum(1 for c in items if (pk, c) in edits)
        hours = float(spent.sum()) / 3600
        fast = int((spent < floor).sum())
        person = people[pk]
        out.append(
            ThroughputRow(
                reviewer=person.get_full_name() or person.get_username(),
                own=pk == user.pk,
                reviews=int(mine.sum()),
                hours=round(hours, 2),
                items_per_hour=round(mine.sum() / hours, 1) if hours else None,
                median_seconds=float(np.median(spent)),
                edited_share=round(edited / len(items), 3) if items else None,
                fast=fast,
                suspicious=fast > 0,
            )
        )
    return out


def funnel_for(*, user, filters: FunnelFilters, everything: bool) -> Funnel:
    """``funnel_compute``, cached under the candidates, reviews, revisions, adjudications and flags as they are now
    (a status changes with a review, an adjudication or an edit, each of which makes a new key)."""
    parts = [
        filters.since,
        filters.until,
        filters.campaign.pk if filters.campaign else None,
        filters.campaign.policy if filters.campaign else None,
        filters.by,
        "all" if everything else f"own:{user.pk}",
        settings.PSYROOM_REVIEW_MIN_SECONDS,
        version_of(Candidate.objects.all(), field="updated_at"),
        version_of(Review.objects.all()),
        version_of(Revision.objects.all()),
        version_of(Adjudication.objects.all()),
        version_of(RiskFlag.objects.all()),
        # A release becoming ready makes its rows count: the visible rows' count and largest id change.
        version_of(release_items_visible()),
    ]
    return cached("funnel", parts, lambda: funnel_compute(user=user, filters=filters, everything=everything))


def funnel_compute(*, user, filters: FunnelFilters, everything: bool) -> Funnel:
    """The funnel and throughput as ``user`` may see them: ``everything`` (the roles that see every review) gets the
    whole pipeline and every reviewer; anyone else only their own throughput row."""
    policy = filters.campaign.policy if filters.campaign else {}
    floor = policy.get("min_seconds") if isinstance(policy.get("min_seconds"), int) else None
    result = Funnel(
        filters=filters,
        scope="all" if everything else "own",
        floor_seconds=floor if floor is not None else settings.PSYROOM_REVIEW_MIN_SECONDS,
    )
    reviews = _reviews(filters)
    if everything:
        result.stages = _stages(filters)
        result.rejection_criteria = _rejection_criteria(reviews)
        candidates = _candidates(filters)
        result.risk_flags = list(
            RiskFlag.objects.filter(candidate__in=candidates)
            .values_list("code")
            .annotate(n=Count("id"))
            .order_by("-n", "code")
        )
        result.edits = list(
            Revision.objects.filter(candidate__in=candidates, number__gt=0)
            .values_list("category")
            .annotate(n=Count("id"))
            .order_by("-n", "category")
        )
    result.throughput = _throughput(user=user, everything=everything, reviews=reviews, floor=result.floor_seconds)
    return result
