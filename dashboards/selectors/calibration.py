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
from django.db import connections
from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q, QuerySet
from django.db.models.fields.json import KT

from annotations.models import Campaign, Review
from annotations.rubrics import DIALOGUE_RUBRIC
from dashboards import stats
from dashboards.cache import cached, version_of
from dashboards.columns import int_columns, score_code
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


def _raw(queryset: QuerySet) -> list[tuple]:
    """The rows of a ``values_list`` query without the ORM's per-value converters (every column here is a plain
    number or string the database extracted from JSON; the converters decoded each JSON value again)."""
    sql, params = queryset.query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# A score as the database extracts it: PostgreSQL's ->> gives text, SQLite's json_extract a number.
_SCORE: dict[object, float] = {**{s: float(s) for s in SCORES}, **{str(s): float(s) for s in SCORES}}


def _number(value) -> float:
    """A JSON number as the database extracted it (text, a number, ``None`` or the text ``null``), else ``nan``."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _scores(column) -> np.ndarray:
    return np.array([_SCORE.get(v, np.nan) for v in column], dtype=np.float64)


def _clinician_means(filters: CalibrationFilters, candidates: QuerySet[Candidate], keys: list[str], ids: np.ndarray):
    """The mean of the clinicians' scores of revision 0 of each candidate in ``ids`` (sorted), per criterion (a
    reviewer's latest review counts): an ``(len(ids), len(keys))`` array, ``nan`` where no one scored."""
    reviews = Review.objects.filter(candidate__in=candidates, revision__number=0, gold=False)
    if filters.campaign:
        reviews = reviews.filter(campaign=filters.campaign)
    means = np.full((len(ids), len(keys)), np.nan)
    vendor = connections[reviews.db].vendor
    # Integers computed by the database (``columns.int_columns``): no review's JSON is decoded in Python.
    _, candidate_ids, reviewer_ids, *codes = int_columns(
        reviews, "id", "candidate_id", "reviewer_id", *[score_code(vendor, k) for k in keys]
    )
    if not len(candidate_ids) or not len(ids):
        return means
    # The last review of each (candidate, reviewer) in id order.
    pairs = (candidate_ids * (int(reviewer_ids.max()) + 1) + reviewer_ids)[::-1]
    _, first_from_end = np.unique(pairs, return_index=True)
    keep = np.sort(len(pairs) - 1 - first_from_end)
    position = np.searchsorted(ids, candidate_ids[keep])
    inside = (position < len(ids)) & (ids[np.minimum(position, len(ids) - 1)] == candidate_ids[keep])
    for k, column in enumerate(codes):
        values = np.where(column[keep] >= 0, column[keep] + SCORES[0], np.nan).astype(np.float64)
        rated = inside & ~np.isnan(values)
        sums = np.bincount(position[rated], weights=values[rated], minlength=len(ids))
        counts = np.bincount(position[rated], minlength=len(ids))
        with np.errstate(divide="ignore", invalid="ignore"):
            means[:, k] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return means


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
    category_keys = {key: sub.category.key for key, sub in subs.items()}

    def category_of(key: str | None) -> str:
        return category_keys.get(key, "") if key is not None else ""

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


def _group(model: str, version: str, data: _Rows, mask: np.ndarray, subs: dict[str, str], category: str | None):
    ai, people = data.ai[mask], data.people[mask]
    classified = mask & data.classified & np.array([bool(t) for t in data.targets], dtype=bool)
    targets: list[str] = [t for t, ok in zip(data.targets, classified, strict=True) if ok and t]
    labels = [label for label, ok in zip(data.labels, classified, strict=True) if ok]
    labels_of = {c["key"]: c.get("label", c["key"]) for c in DIALOGUE_RUBRIC["criteria"]}
    criteria = [_criterion(k, labels_of[k], ai[:, i], people[:, i]) for i, k in enumerate(data.keys)]
    right = sum(1 for t, label in zip(targets, labels, strict=True) if label == t)
    same_category = sum(
        1
        for t, label in zip(targets, labels, strict=True)
        if label is not None and label in subs and subs[label] == subs.get(t)
    )
    none = "no candidate with a target sub-emotion was classified"
    accuracy, accuracy_ci = stats.proportion(right, len(targets), none=none)
    category_accuracy, category_ci = stats.proportion(same_category, len(targets), none=none)
    scored = int((~np.isnan(ai).all(axis=1) & ~np.isnan(people).all(axis=1)).sum()) if len(ai) else 0
    return CalibrationGroup(
        model=model,
        prompt_version=version,
        scored_items=scored,
        criteria=criteria,
        classified=len(targets),
        accuracy=accuracy,
        accuracy_ci=accuracy_ci,
        category_accuracy=category_accuracy,
        category_accuracy_ci=category_ci,
        confusion=_confusion(targets, labels, category),
    )


@dataclass
class _Rows:
    """The candidates compared, sorted by id: the AI's kept scores and the clinicians' means (``(n, criteria)``,
    ``nan`` where none), the target, the classifier's label and whether the classifier saw the candidate."""

    keys: list[str]
    ids: np.ndarray
    groups: list[tuple[str, str]]
    ai: np.ndarray
    people: np.ndarray
    targets: list[str | None]
    labels: list[str | None]
    classified: np.ndarray


# More attempts than the run parameter allows (max_attempts: 1 to 5) are never recorded.
MAX_ATTEMPTS = 10


def _read(filters: CalibrationFilters, keys: list[str]) -> _Rows:
    candidates = _candidates(filters)
    reviewed = Review.objects.filter(candidate=OuterRef("pk"), revision__number=0, gold=False)
    if filters.campaign:
        reviewed = reviewed.filter(campaign=filters.campaign)
    relevant = candidates.filter(Exists(reviewed) | Q(ai_review__has_key="emotion")).order_by("id")
    # Each attempt's mean and scores are extracted by the database (a JSON path each): the attempts also hold the
    # dialogue's turns, which need never leave the database.
    attempts = 0
    while (
        attempts < MAX_ATTEMPTS
        and relevant.filter(**{f"ai_review__supervisor__attempts__{attempts}__isnull": False}).exists()
    ):
        attempts += 1
    columns = []
    for a in range(attempts):
        base = f"ai_review__supervisor__attempts__{a}"
        columns += [KT(f"{base}__mean"), *[KT(f"{base}__scores__{k}__score") for k in keys]]
    has_emotion = ExpressionWrapper(Q(ai_review__has_key="emotion"), output_field=BooleanField())
    rows = _raw(
        relevant.values_list(
            "id",
            "run__model_spec__name",
            "run__prompt_version",
            "sub_emotion__key",
            KT("ai_review__emotion__label"),
            has_emotion,
            *columns,
        )
    )
    n, width = len(rows), len(keys) + 1
    ids, models, versions, targets, labels, seen, *attempt_columns = (
        zip(*rows, strict=True) if rows else [()] * (6 + attempts * width)
    )
    ai = np.full((n, len(keys)), np.nan)
    if attempts and n:
        means = np.column_stack([np.array([_number(v) for v in attempt_columns[a * width]]) for a in range(attempts)])
        # The attempt the pipeline kept: the best mean, the last one on a tie.
        ranked = np.where(np.isnan(means), -np.inf, means)[:, ::-1]
        best = attempts - 1 - ranked.argmax(axis=1)
        scored = ~np.isnan(means).all(axis=1)
        for k in range(len(keys)):
            per_attempt = np.column_stack([_scores(attempt_columns[a * width + 1 + k]) for a in range(attempts)])
            ai[:, k] = np.where(scored, per_attempt[np.arange(n), best], np.nan)
    id_array = np.asarray(ids, dtype=np.int64)
    return _Rows(
        keys=keys,
        ids=id_array,
        groups=list(zip(models, versions, strict=True)),
        ai=ai,
        people=_clinician_means(filters, candidates, keys, id_array),
        targets=list(targets),
        labels=list(labels),
        classified=np.array([bool(v) for v in seen], dtype=bool),
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
    data = _read(filters, keys)
    subs = dict(SubEmotion.objects.values_list("key", "category__key"))
    result = Calibration(filters=filters)
    everything = np.ones(len(data.ids), dtype=bool)
    result.groups.append(_group("", "", data, everything, subs, filters.category))
    for model, version in sorted(set(data.groups)):
        mask = np.array([g == (model, version) for g in data.groups], dtype=bool)
        result.groups.append(_group(model, version, data, mask, subs, filters.category))
    return result
