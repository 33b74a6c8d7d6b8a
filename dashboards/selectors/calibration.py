"""The AI against the clinicians: the supervisor agent's scores against the clinicians' mean, and the emotion
classifier's label against the target sub-emotion, per model spec and prompt version.

What is compared:
- the supervisor's scores of the attempt whose turns were kept (the best mean, the last on a tie, as the dialogue
  pipeline keeps it: ``ai_review["supervisor"]["attempts"]``), criterion by criterion, against the mean of the
  clinicians' scores of the same text: reviews of revision 0 (a later revision is a person's edit, which the AI never
  scored), each reviewer's latest review of it;
- the classifier's label (``ai_review["emotion"]["label"]``, a sub-emotion key) against the candidate's target
  sub-emotion. Reviews carry no emotion label, so there is no clinician label to compare with.

Filters: ``since`` and ``until`` on the candidate's creation (when it was generated), ``model`` and
``prompt_version`` of its run, ``campaign``: the candidates of that campaign and its reviews only. Only the roles that
see everything (``visibility.SEE_ALL``) read this: the AI's judgement is what a blind reviewer must not see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform, KeyTransform

from annotations.models import Campaign, Review
from annotations.rubrics import DIALOGUE_RUBRIC
from dashboards import stats
from dashboards.cache import cached, version_of
from dashboards.stats import Estimate, Interval
from generation.models import Candidate, EmotionCategory, SubEmotion

SCORES = [1, 2, 3, 4, 5]
NO_LABEL = "none"
OTHER_CATEGORY = "other"


@dataclass(frozen=True)
class CalibrationFilters:
    since: date | None = None
    until: date | None = None
    model: str | None = None
    prompt_version: str | None = None
    campaign: Campaign | None = None
    # The confusion matrix's drill-down: the sub-emotions of this category (its key); None: the 8 categories.
    category: str | None = None


@dataclass
class CriterionCalibration:
    key: str
    label: str
    items: int
    spearman: Estimate
    spearman_ci: Interval
    bias: Estimate
    # table[i][j]: items the AI scored i+1 and the clinicians' mean, rounded half up, is j+1.
    table: list[list[int]]


@dataclass
class Confusion:
    """Counts of the target (rows) against the classifier's label (columns)."""

    rows: list[tuple[str, str]]
    columns: list[tuple[str, str]]
    counts: list[list[int]]


@dataclass
class CalibrationGroup:
    """The numbers of one model spec and prompt version (both empty: all of them together)."""

    model: str
    prompt_version: str
    scored_items: int
    criteria: list[CriterionCalibration]
    classified: int
    accuracy: Estimate
    accuracy_ci: Interval
    category_accuracy: Estimate
    category_accuracy_ci: Interval
    confusion: Confusion

    @property
    def name(self) -> str:
        return f"{self.model} / {self.prompt_version}" if self.model else "All models and prompt versions"


@dataclass
class Calibration:
    filters: CalibrationFilters
    groups: list[CalibrationGroup] = field(default_factory=list)


def _candidates(filters: CalibrationFilters) -> QuerySet[Candidate]:
    qs = Candidate.objects.filter(run__isnull=False).order_by()
    if filters.since:
        qs = qs.filter(created_at__date__gte=filters.since)
    if filters.until:
        qs = qs.filter(created_at__date__lte=filters.until)
    if filters.model:
        qs = qs.filter(run__model_spec__name=filters.model)
    if filters.prompt_version:
        qs = qs.filter(run__prompt_version=filters.prompt_version)
    if filters.campaign:
        qs = qs.filter(campaign_items__campaign=filters.campaign)
    return qs


def best_attempt_scores(supervisor) -> dict[str, int]:
    """The per-criterion scores of the attempt the pipeline kept: the best mean, the last one on a tie."""
    attempts = supervisor.get("attempts") if isinstance(supervisor, dict) else None
    scored = [a for a in attempts or [] if isinstance(a, dict) and a.get("mean") is not None]
    if not scored:
        return {}
    best = max(reversed(scored), key=lambda a: a["mean"])
    out = {}
    for key, entry in (best.get("scores") or {}).items():
        score = entry.get("score") if isinstance(entry, dict) else None
        if score in SCORES:
            out[key] = score
    return out


def _clinician_means(filters: CalibrationFilters, candidates: QuerySet[Candidate], keys: list[str]):
    """Per candidate, the mean of the clinicians' scores of its revision 0 for each criterion (a reviewer's latest
    review counts): ``{candidate_id: {key: mean}}``."""
    reviews = Review.objects.filter(candidate__in=candidates, revision__number=0).order_by("id")
    if filters.campaign:
        reviews = reviews.filter(campaign=filters.campaign)
    latest: dict[tuple[int, int], tuple] = {}
    for candidate_id, reviewer_id, *scores in reviews.values_list(
        "candidate_id", "reviewer_id", *[KeyTransform(k, "scores") for k in keys]
    ):
        latest[(candidate_id, reviewer_id)] = scores
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, np.ndarray] = {}
    for (candidate_id, _), scores in latest.items():
        values = np.array([s if s in SCORES else np.nan for s in scores], dtype=np.float64)
        rated = ~np.isnan(values)
        sums.setdefault(candidate_id, np.zeros(len(keys)))[rated] += values[rated]
        counts.setdefault(candidate_id, np.zeros(len(keys)))[rated] += 1
    with np.errstate(divide="ignore", invalid="ignore"):
        return {pk: np.where(counts[pk] > 0, sums[pk] / counts[pk], np.nan) for pk in sums}


def _criterion(key: str, label: str, ai: np.ndarray, people: np.ndarray) -> CriterionCalibration:
    ok = ~np.isnan(ai) & ~np.isnan(people)
    a, p = ai[ok], people[ok]
    rho, ci = stats.spearman(a, p)
    table = np.zeros((len(SCORES), len(SCORES)), dtype=np.int64)
    if len(a):
        nearest = np.clip(np.floor(p + 0.5), 1, 5).astype(np.int64) - 1
        np.add.at(table, (a.astype(np.int64) - 1, nearest), 1)
    return CriterionCalibration(
        key=key,
        label=label,
        items=int(ok.sum()),
        spearman=rho,
        spearman_ci=ci,
        bias=stats.mean_difference(a, p),
        table=table.tolist(),
    )


def _confusion(targets: list[str], labels: list[str | None], category: str | None) -> Confusion:
    subs = {s.key: s for s in SubEmotion.objects.select_related("category").order_by("key")}
    categories = list(EmotionCategory.objects.order_by("key"))

    def category_of(key: str | None) -> str:
        return subs[key].category.key if key is not None and key in subs else ""

    if category is None:
        rows = [(c.key, c.label_en) for c in categories]
        columns = [*rows, (NO_LABEL, "No label")]
        index = {key: i for i, (key, _) in enumerate(rows)}
        counts = np.zeros((len(rows), len(columns)), dtype=np.int64)
        for target, label in zip(targets, labels, strict=True):
            row = index.get(category_of(target))
            if row is not None:
                counts[row][index.get(category_of(label), len(rows))] += 1
    else:
        own = [(k, s.label_en) for k, s in subs.items() if s.category.key == category]
        rows = own
        columns = [*own, (OTHER_CATEGORY, "Another category"), (NO_LABEL, "No label")]
        index = {key: i for i, (key, _) in enumerate(own)}
        counts = np.zeros((len(rows), len(columns)), dtype=np.int64)
        for target, label in zip(targets, labels, strict=True):
            row = index.get(target)
            if row is None:
                continue
            if label in index:
                column = index[label]
            elif label in subs:
                column = len(own)
            else:
                column = len(own) + 1
            counts[row][column] += 1
    return Confusion(rows=rows, columns=columns, counts=counts.tolist())


# A candidate the classifier never saw (no ``emotion`` in its ai_review), as opposed to one it could not label.
_UNCLASSIFIED = object()


def _group(model: str, version: str, rows: list[tuple], means: dict, keys: list[str], category: str | None):
    ai = np.full((len(rows), len(keys)), np.nan)
    people = np.full((len(rows), len(keys)), np.nan)
    targets, labels = [], []
    for n, (pk, _, _, target, supervisor, label) in enumerate(rows):
        scores = best_attempt_scores(supervisor)
        ai[n] = [scores.get(k, np.nan) for k in keys]
        if pk in means:
            people[n] = means[pk]
        if target and label is not _UNCLASSIFIED:
            targets.append(target)
            labels.append(label)
    labels_of = {c["key"]: c.get("label", c["key"]) for c in DIALOGUE_RUBRIC["criteria"]}
    criteria = [_criterion(k, labels_of[k], ai[:, i], people[:, i]) for i, k in enumerate(keys)]
    subs = dict(SubEmotion.objects.values_list("key", "category__key"))
    right = sum(1 for t, label in zip(targets, labels, strict=True) if label == t)
    same_category = sum(
        1 for t, label in zip(targets, labels, strict=True) if label in subs and subs[label] == subs.get(t)
    )
    none = "no candidate with a target sub-emotion was classified"
    accuracy, accuracy_ci = stats.proportion(right, len(targets), none=none)
    category_accuracy, category_ci = stats.proportion(same_category, len(targets), none=none)
    scored = (~np.isnan(ai).all(axis=1) & ~np.isnan(people).all(axis=1)).sum() if len(rows) else 0
    return CalibrationGroup(
        model=model,
        prompt_version=version,
        scored_items=int(scored),
        criteria=criteria,
        classified=len(targets),
        accuracy=accuracy,
        accuracy_ci=accuracy_ci,
        category_accuracy=category_accuracy,
        category_accuracy_ci=category_ci,
        confusion=_confusion(targets, labels, category),
    )


def calibration_for(*, filters: CalibrationFilters) -> Calibration:
    """``calibration_compute``, cached under the generated candidates and the reviews as they are now."""
    candidates = _candidates(filters)
    parts = [
        filters.since,
        filters.until,
        filters.model,
        filters.prompt_version,
        filters.campaign.pk if filters.campaign else None,
        filters.category,
        version_of(candidates, field="updated_at"),
        version_of(Review.objects.filter(candidate__in=candidates)),
    ]
    return cached("calibration", parts, lambda: calibration_compute(filters=filters))


def calibration_compute(*, filters: CalibrationFilters) -> Calibration:
    """The AI against the clinicians under ``filters``: all models and prompt versions together first, then each
    (model spec, prompt version) that has candidates. The caller checks the role (``visibility.SEE_ALL``)."""
    # The supervisor scores the dialogue rubric's criteria (generation.agents.psyroom.SUPERVISOR_DIMENSIONS has the
    # same keys), so a clinician's score and the AI's of one key judge the same thing.
    keys = [c["key"] for c in DIALOGUE_RUBRIC["criteria"]]
    candidates = _candidates(filters)
    reviewed = Review.objects.filter(candidate=OuterRef("pk"), revision__number=0)
    if filters.campaign:
        reviewed = reviewed.filter(campaign=filters.campaign)
    has_emotion = ExpressionWrapper(Q(ai_review__has_key="emotion"), output_field=BooleanField())
    relevant = candidates.filter(Exists(reviewed) | Q(ai_review__has_key="emotion"))
    rows = []
    for pk, model, version, target, supervisor, emotion, classified in relevant.values_list(
        "id",
        "run__model_spec__name",
        "run__prompt_version",
        "sub_emotion__key",
        KeyTransform("supervisor", "ai_review"),
        KeyTextTransform("label", KeyTransform("emotion", "ai_review")),
        has_emotion,
    ):
        rows.append((pk, model, version, target, supervisor, emotion if classified else _UNCLASSIFIED))
    means = _clinician_means(filters, candidates, keys)
    result = Calibration(filters=filters)
    result.groups.append(_group("", "", rows, means, keys, filters.category))
    by_group: dict[tuple[str, str], list[tuple]] = {}
    for row in rows:
        by_group.setdefault((row[1], row[2]), []).append(row)
    for (model, version), group_rows in sorted(by_group.items()):
        result.groups.append(_group(model, version, group_rows, means, keys, filters.category))
    return result
