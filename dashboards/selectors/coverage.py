"""Coverage: how many dialogues each sub-emotion has, against the quota (``settings.PSYROOM_COVERAGE_QUOTA``).

Per sub-emotion, counted in SQL (one grouped query): dialogues generated (every status), waiting (generated, in
review or needing revision: they may still be approved), approved, released (held by at least one ready release,
``releases.selectors.released_candidate_ids``); the gap is what the quota still lacks once what is waiting is counted
(``missing = max(0, quota - approved - waiting)``), so that filling a gap twice does not generate twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, Q

from generation.models import Candidate, CandidateKind, EmotionCategory, SubEmotion
from releases.selectors import released_candidate_ids

WAITING = (Candidate.Status.GENERATED, Candidate.Status.IN_REVIEW, Candidate.Status.NEEDS_REVISION)


@dataclass
class SubEmotionCoverage:
    key: str
    label: str
    generated: int
    waiting: int
    approved: int
    quota: int
    # In at least one ready release (a candidate in two releases counts once).
    released: int = 0

    @property
    def missing(self) -> int:
        return max(0, self.quota - self.approved - self.waiting)

    @property
    def share(self) -> float:
        """The approved share of the quota, capped at 1 (the heat map's colour)."""
        return min(1.0, self.approved / self.quota)


@dataclass
class CategoryCoverage:
    key: str
    label: str
    subs: list[SubEmotionCoverage] = field(default_factory=list)

    @property
    def approved(self) -> int:
        return sum(s.approved for s in self.subs)

    @property
    def missing(self) -> int:
        return sum(s.missing for s in self.subs)

    @property
    def released(self) -> int:
        return sum(s.released for s in self.subs)


@dataclass
class Coverage:
    quota: int
    categories: list[CategoryCoverage]

    @property
    def gaps(self) -> list[SubEmotionCoverage]:
        return [s for c in self.categories for s in c.subs if s.missing]

    @property
    def missing(self) -> int:
        return sum(s.missing for s in self.gaps)


def coverage_get(*, quota: int | None = None) -> Coverage:
    """The dialogues of each of the 8 categories x 35 sub-emotions against ``quota`` (default: the setting)."""
    quota = quota or settings.PSYROOM_COVERAGE_QUOTA
    counts: dict[int, dict] = {
        row["sub_emotion"]: dict(row)
        for row in Candidate.objects.filter(kind=CandidateKind.DIALOGUE, sub_emotion__isnull=False)
        .order_by()
        .values("sub_emotion")
        .annotate(
            generated=Count("id"),
            waiting=Count("id", filter=Q(status__in=WAITING)),
            approved=Count("id", filter=Q(status=Candidate.Status.APPROVED)),
            released=Count("id", filter=Q(pk__in=released_candidate_ids())),
        )
    }
    categories = {c.pk: CategoryCoverage(c.key, c.label_en) for c in EmotionCategory.objects.order_by("key")}
    for sub in SubEmotion.objects.order_by("key"):
        row = counts.get(sub.pk, {})
        categories[sub.category_id].subs.append(
            SubEmotionCoverage(
                key=sub.key,
                label=sub.label_en,
                generated=row.get("generated", 0),
                waiting=row.get("waiting", 0),
                approved=row.get("approved", 0),
                quota=quota,
                released=row.get("released", 0),
            )
        )
    return Coverage(quota=quota, categories=list(categories.values()))
