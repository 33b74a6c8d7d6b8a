"""What the dashboards show, computed from the reviews as one user may see them.

Access follows ``annotations.selectors.visibility``: a user sees the dashboards of the campaigns they may open
(``campaign_list_for``); senior clinicians, curators and admins see every number with names; a counselor sees only
their own numbers (their row against the consensus of the others, overall and per week), and where they work blind
(``campaign_works_blind``) no other rater is named anywhere, as on the review pages.

The numbers (``dashboards.stats``) are computed in numpy from the few columns fetched with ``values_list``: an item
of agreement is one revision of one candidate (reviews of different revisions judged different texts), and a rater's
latest review of it counts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import numpy as np
from django.contrib.auth import get_user_model
from django.db import connections
from django.db.models import Case, Count, IntegerField, Max, Min, QuerySet, Value, When
from django.db.models.fields.json import KeyTransform
from django.shortcuts import get_object_or_404
from django.utils import timezone

from annotations.models import Campaign, Review, RiskCode
from annotations.selectors import visibility
from psyroom_admin import roles

from . import stats
from .stats import Estimate, Interval

SCORES = [1, 2, 3, 4, 5]
DECISIONS = list(Review.Decision.values)
# Cohen's kappa of a pair of raters is shown from this many shared items on: on fewer it is mostly noise.
MIN_SHARED_ITEMS = 20
ANY_FLAG = "any"


@dataclass(frozen=True)
class AgreementFilters:
    """Reviews submitted from ``since`` to ``until`` (dates, both included; either may be open)."""

    since: date | None = None
    until: date | None = None


@dataclass
class MetricRow:
    """Agreement on one thing rated (a criterion, the decision, a risk flag) over the items rated twice or more."""

    key: str
    label: str
    level: str
    items: int
    ratings: int
    alpha: Estimate
    alpha_ci: Interval
    percent_agreement: Estimate
    agreement_ci: Interval


@dataclass
class PairKappa:
    key: str
    label: str
    kappa: Estimate


@dataclass
class PairRow:
    rater_a: str
    rater_b: str
    shared_items: int
    kappas: list[PairKappa]


@dataclass
class RaterRow:
    """One rater against the leave-one-out consensus of the others (per week when ``week`` is set)."""

    rater: str
    own: bool
    reviews: int
    shared_items: int
    mad: Estimate
    kappa: Estimate
    decision_agreement: Estimate
    week: str = ""


@dataclass
class Agreement:
    campaign: Campaign
    filters: AgreementFilters
    # "all": every number with every rater; "own": the viewer's own rows only.
    scope: str
    reviews: int = 0
    items: int = 0
    raters: int = 0
    criteria: list[MetricRow] = field(default_factory=list)
    decision: MetricRow | None = None
    risk_flags: list[MetricRow] = field(default_factory=list)
    pairs: list[PairRow] = field(default_factory=list)
    rater_rows: list[RaterRow] = field(default_factory=list)
    weekly: list[RaterRow] = field(default_factory=list)


@dataclass
class CampaignSummary:
    campaign: Campaign
    reviews: int
    items: int
    # None where the viewer sees only their own numbers.
    decision_alpha: Estimate | None


# --- Access -------------------------------------------------------------------------------------------------------


def sees_all(user) -> bool:
    """Whether ``user`` sees every rater's numbers (the roles that see every review)."""
    return roles.user_has_role(user, *visibility.SEE_ALL)


def campaigns_for(*, user) -> QuerySet[Campaign]:
    """The campaigns whose dashboards ``user`` may open: the campaigns they may open."""
    return visibility.campaign_list_for(user=user)


def campaign_get(*, user, campaign_id: int) -> Campaign:
    """A campaign ``user`` may see the dashboards of; 404 for any other."""
    return get_object_or_404(campaigns_for(user=user), pk=campaign_id)


# --- Reading the reviews -----------------------------------------------------------------------------------------


def _reviews(campaign: Campaign, filters: AgreementFilters) -> QuerySet[Review]:
    qs = Review.objects.filter(campaign=campaign)
    if filters.since:
        qs = qs.filter(created_at__date__gte=filters.since)
    if filters.until:
        qs = qs.filter(created_at__date__lte=filters.until)
    return qs


@dataclass
class _Dimension:
    """The ratings of one thing rated, one entry per review that rated it."""

    key: str
    label: str
    level: stats.Level
    domain: list
    review: np.ndarray  # index into the review arrays
    codes: np.ndarray


@dataclass
class _Data:
    unit: np.ndarray
    rater: np.ndarray
    week: np.ndarray
    rater_ids: list[int]
    weeks: list[str]
    n_units: int
    criteria: list[_Dimension]
    decision: _Dimension
    flags: list[_Dimension]


def _weeks(reviews: QuerySet[Review]) -> tuple[Case, list[str]]:
    """An SQL expression giving each review the index of its ISO week (weeks start on Monday at midnight in the
    current time zone), and the weeks' names. The boundaries are computed here and compared in the database, where
    a per-row date function would run in Python on SQLite."""
    span = reviews.aggregate(first=Min("created_at"), last=Max("created_at"))
    monday = timezone.localdate(span["first"])
    monday -= timedelta(days=monday.weekday())
    names, whens = [], []
    while True:
        iso = monday.isocalendar()
        names.append(f"{iso.year}-W{iso.week:02d}")
        monday += timedelta(days=7)
        end = timezone.make_aware(datetime.combine(monday, time.min))
        whens.append(When(created_at__lt=end, then=Value(len(names) - 1)))
        if end > span["last"]:
            break
    return Case(*whens, default=Value(len(names) - 1), output_field=IntegerField()), names


def _read(campaign: Campaign, filters: AgreementFilters) -> _Data | None:
    reviews = _reviews(campaign, filters)
    if not reviews.exists():
        return None
    week_of, week_names = _weeks(reviews)
    keys = [c["key"] for c in campaign.rubric.criteria]
    # Only the columns the numbers need; the scores one by one (a JSON key each), so that no review's JSON is decoded
    # in Python. Risk flags are rare: read only where there are some.
    rows = (
        reviews.order_by("id")
        .annotate(week=week_of)
        .values_list(
            "id",
            "candidate_id",
            "revision_id",
            "reviewer_id",
            "decision",
            "week",
            *[KeyTransform(k, "scores") for k in keys],
        )
    )
    # Run as the ORM wrote it, without its per-value converters: every column is already a plain int or str (the
    # database extracts the JSON scores), and the converters took longer than the query at 300,000 reviews.
    sql, params = rows.query.sql_with_params()
    with connections[rows.db].cursor() as cursor:
        cursor.execute(sql, params)
        columns = list(zip(*cursor.fetchall(), strict=True))
    ids, candidate, revision, reviewer, decisions, weeks, *scores = columns
    flagged = dict(reviews.exclude(risk_flags=[]).values_list("id", "risk_flags"))
    _, unit = np.unique(np.column_stack([candidate, revision]), axis=0, return_inverse=True)
    rater_ids, rater = np.unique(np.asarray(reviewer, dtype=np.int64), return_inverse=True)
    unit, rater = unit.reshape(-1), rater.reshape(-1)
    # A rater's latest review of an item counts: the last of each (item, rater) in id order, the order of saving.
    item_rater = unit * len(rater_ids) + rater
    _, last_from_end = np.unique(item_rater[::-1], return_index=True)
    keep = np.sort(len(item_rater) - 1 - last_from_end)
    n_units = int(unit.max()) + 1
    kept_flags = [flagged.get(ids[i]) or () for i in keep]
    every = np.arange(len(keep))
    criteria = []
    # SQLite's JSON extraction gives a number, PostgreSQL's the JSON text (Django reads jsonb as text).
    score_code: dict[object, int] = {**{s: s - 1 for s in SCORES}, **{str(s): s - 1 for s in SCORES}}
    for criterion, values in zip(campaign.rubric.criteria, scores, strict=True):
        key = criterion["key"]
        # review_submit keeps only whole scores of the scale (validate_scores); anything else is no score here.
        codes = np.array([score_code.get(values[i], -1) for i in keep], dtype=np.int64)
        rated = codes >= 0
        label = criterion.get("label", key)
        criteria.append(_Dimension(key, label, "ordinal", SCORES, every[rated], codes[rated]))
    decision_code = {value: i for i, value in enumerate(DECISIONS)}
    codes = np.array([decision_code.get(decisions[i], -1) for i in keep], dtype=np.int64)
    decided = codes >= 0
    decision = _Dimension(
        "decision", "Decision", "nominal", list(range(len(DECISIONS))), every[decided], codes[decided]
    )
    flag_labels = dict(RiskCode.choices)
    order = list(flag_labels)
    used = sorted(
        set(itertools.chain.from_iterable(kept_flags)),
        key=lambda code: (order.index(code) if code in order else len(order), code),
    )
    any_flag = np.array([int(bool(f)) for f in kept_flags])
    flags = [_Dimension(ANY_FLAG, "Any risk flag", "nominal", [0, 1], every, any_flag)]
    flags += [
        _Dimension(
            code, flag_labels.get(code, code), "nominal", [0, 1], every, np.array([int(code in f) for f in kept_flags])
        )
        for code in used
    ]
    return _Data(
        unit=unit[keep],
        rater=rater[keep],
        week=np.asarray(weeks, dtype=np.int64)[keep],
        rater_ids=[int(pk) for pk in rater_ids],
        weeks=week_names,
        n_units=n_units,
        criteria=criteria,
        decision=decision,
        flags=flags,
    )


# --- The numbers ----------------------------------------------------------------------------------------------------


def _metric(data: _Data, dim: _Dimension) -> MetricRow:
    counts = stats.value_counts(data.unit[dim.review], dim.codes, n_units=data.n_units, n_values=len(dim.domain))
    alpha_ci, agreement_ci = stats.bootstrap(counts, domain=dim.domain, level=dim.level)
    return MetricRow(
        key=dim.key,
        label=dim.label,
        level=dim.level,
        items=int((counts.sum(axis=1) >= 2).sum()),
        ratings=len(dim.codes),
        alpha=stats.alpha(counts, domain=dim.domain, level=dim.level),
        alpha_ci=alpha_ci,
        percent_agreement=stats.percent_agreement(counts),
        agreement_ci=agreement_ci,
    )


def _pairs_of(unit: np.ndarray, rater: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every two ratings of the same unit, as index arrays ``(i, j)`` with ``rater[i] < rater[j]``."""
    order = np.lexsort((rater, unit))
    sorted_units = unit[order]
    firsts, seconds = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    # A unit's ratings are adjacent once sorted: pair each with the one d places on, for d = 1, 2, ... while any
    # unit still has ratings that far apart (k - 1 steps at overlap k).
    for distance in itertools.count(1):
        if distance >= len(order):
            break
        same = np.flatnonzero(sorted_units[:-distance] == sorted_units[distance:])
        if not same.size:
            break
        firsts.append(order[same])
        seconds.append(order[same + distance])
    return np.concatenate(firsts), np.concatenate(seconds)


def _weighting(dim: _Dimension):
    return stats.kappa_weights(len(dim.domain), weighting="quadratic" if dim.level == "ordinal" else "none")


def _pair_rows(data: _Data, labels: list[str]) -> list[PairRow]:
    n_raters = len(data.rater_ids)
    first, second = _pairs_of(data.unit, data.rater)
    shared = np.bincount(data.rater[first] * n_raters + data.rater[second], minlength=n_raters * n_raters)
    chosen = np.flatnonzero(shared >= MIN_SHARED_ITEMS)
    if not chosen.size:
        return []
    group_of = np.full(n_raters * n_raters, -1)
    group_of[chosen] = np.arange(len(chosen))
    dims = [*data.criteria, data.decision]
    kappas = {}
    for dim in dims:
        raters = data.rater[dim.review]
        i, j = _pairs_of(data.unit[dim.review], raters)
        groups = group_of[raters[i] * n_raters + raters[j]]
        keep = groups >= 0
        tables = stats.contingency_tables(
            groups[keep], dim.codes[i][keep], dim.codes[j][keep], n_groups=len(chosen), n_values=len(dim.domain)
        )
        kappas[dim.key] = stats.kappa_tables(tables, _weighting(dim))
    return [
        PairRow(
            rater_a=labels[code // n_raters],
            rater_b=labels[code % n_raters],
            shared_items=int(shared[code]),
            kappas=[PairKappa(dim.key, dim.label, kappas[dim.key][g]) for dim in dims],
        )
        for g, code in enumerate(chosen)
    ]


def _against_consensus(
    data: _Data, groups: np.ndarray, n_groups: int
) -> list[tuple[int, int, Estimate, Estimate, Estimate]]:
    """Per group of reviews (a rater, or a rater in a week): reviews, reviews of shared items, the mean absolute
    difference and the quadratic kappa of their scores against the mean of the other raters of the same item (all
    criteria together; the mean rounded to a score for kappa), and the share of decisions that match the other
    raters' majority."""
    reviews = np.bincount(groups, minlength=n_groups)
    shared = np.bincount(groups[np.bincount(data.unit)[data.unit] >= 2], minlength=n_groups)
    g_parts, own_parts, consensus_parts = [], [], []
    for dim in data.criteria:
        values = dim.codes.astype(np.float64) + 1
        consensus = stats.mean_of_others(data.unit[dim.review], values, n_units=data.n_units)
        ok = ~np.isnan(consensus)
        g_parts.append(groups[dim.review][ok])
        own_parts.append(values[ok])
        consensus_parts.append(consensus[ok])
    g = np.concatenate(g_parts) if g_parts else np.zeros(0, dtype=np.int64)
    own = np.concatenate(own_parts) if own_parts else np.zeros(0)
    consensus = np.concatenate(consensus_parts) if consensus_parts else np.zeros(0)
    n = np.bincount(g, minlength=n_groups)
    difference = np.bincount(g, weights=np.abs(own - consensus), minlength=n_groups)
    nearest = np.clip(np.floor(consensus + 0.5), 1, 5) - 1
    tables = stats.contingency_tables(g, own - 1, nearest, n_groups=n_groups, n_values=len(SCORES))
    kappas = stats.kappa_tables(tables, stats.kappa_weights(len(SCORES), weighting="quadratic"))
    dim = data.decision
    majority = stats.majority_of_others(data.unit[dim.review], dim.codes, n_units=data.n_units, n_values=len(DECISIONS))
    decided = majority >= 0
    dg = groups[dim.review][decided]
    decision_n = np.bincount(dg, minlength=n_groups)
    matches = np.bincount(dg, weights=(dim.codes[decided] == majority[decided]), minlength=n_groups)
    out = []
    for k in range(n_groups):
        if n[k]:
            mad = stats.defined(difference[k] / n[k])
        else:
            mad = stats.undefined("no scored item shared with another rater")
        if decision_n[k]:
            agreement = stats.defined(matches[k] / decision_n[k])
        else:
            agreement = stats.undefined("no shared item where the other raters' decisions have a majority")
        out.append((int(reviews[k]), int(shared[k]), mad, kappas[k], agreement))
    return out


def _labels(*, user, campaign: Campaign, rater_ids: list[int]) -> list[str]:
    """What each rater is called for ``user``: their name, or "Rater n" where ``user`` works blind."""
    blind = visibility.campaign_works_blind(user=user, campaign=campaign)
    people = get_user_model().objects.only("username", "first_name", "last_name").in_bulk(rater_ids)
    labels = []
    for n, pk in enumerate(rater_ids, start=1):
        if blind and pk != user.pk:
            labels.append(f"Rater {n}")
        else:
            person = people[pk]
            labels.append(person.get_full_name() or person.get_username())
    return labels


def agreement_for(*, user, campaign: Campaign, filters: AgreementFilters) -> Agreement:
    """The agreement of ``campaign``'s reviews as ``user`` may see it (``campaign`` comes from ``campaign_get``).

    Senior clinicians, curators and admins get everything: alpha per criterion, on the decision and on each risk
    flag, with bootstrap intervals and percent agreement; Cohen's kappa of every pair of raters with at least
    ``MIN_SHARED_ITEMS`` shared items; every rater against the others' consensus, overall and per ISO week. Anyone
    else gets their own rows against the consensus only.
    """
    everything = sees_all(user)
    result = Agreement(campaign=campaign, filters=filters, scope="all" if everything else "own")
    data = _read(campaign, filters)
    if data is None:
        return result
    labels = _labels(user=user, campaign=campaign, rater_ids=data.rater_ids)
    own = data.rater_ids.index(user.pk) if user.pk in data.rater_ids else None
    if everything:
        result.reviews, result.items, result.raters = len(data.unit), data.n_units, len(data.rater_ids)
        result.criteria = [_metric(data, dim) for dim in data.criteria]
        result.decision = _metric(data, data.decision)
        result.risk_flags = [_metric(data, dim) for dim in data.flags]
        result.pairs = _pair_rows(data, labels)
    elif own is not None:
        mine = data.rater == own
        result.reviews, result.items, result.raters = int(mine.sum()), len(np.unique(data.unit[mine])), 1
    shown = range(len(data.rater_ids)) if everything else ([own] if own is not None else [])
    overall = _against_consensus(data, data.rater, len(data.rater_ids))
    result.rater_rows = [RaterRow(labels[r], r == own, *overall[r]) for r in shown]
    n_weeks = len(data.weeks)
    weekly = _against_consensus(data, data.rater * n_weeks + data.week, len(data.rater_ids) * n_weeks)
    for r in shown:
        for w, week in enumerate(data.weeks):
            row = weekly[r * n_weeks + w]
            if row[0]:
                result.weekly.append(RaterRow(labels[r], r == own, *row, week=week))
    return result


def campaign_summaries(*, user) -> list[CampaignSummary]:
    """The campaigns whose dashboards ``user`` may open, with their review counts and alpha on the decision (a
    counselor: their own counts, no alpha). Counted in SQL: reviews grouped by item and decision."""
    campaigns = list(campaigns_for(user=user))
    everything = sees_all(user)
    reviews = Review.objects.filter(campaign__in=campaigns).order_by()
    if not everything:
        reviews = reviews.filter(reviewer=user)
    counts = {
        row["campaign"]: (row["n"], row["items"])
        for row in reviews.values("campaign").annotate(n=Count("id"), items=Count("candidate", distinct=True))
    }
    alphas = _decision_alphas(reviews) if everything else {}
    return [
        CampaignSummary(
            campaign=campaign,
            reviews=counts.get(campaign.pk, (0, 0))[0],
            items=counts.get(campaign.pk, (0, 0))[1],
            decision_alpha=alphas.get(campaign.pk, stats.undefined("no reviews")) if everything else None,
        )
        for campaign in campaigns
    ]


def _decision_alphas(reviews: QuerySet[Review]) -> dict[int, Estimate]:
    grouped = reviews.values("campaign", "candidate", "revision", "decision").annotate(n=Count("id"))
    cells: dict[int, dict[tuple[int, int], np.ndarray]] = {}
    code = {value: i for i, value in enumerate(DECISIONS)}
    for row in grouped.iterator(chunk_size=5000):
        units = cells.setdefault(row["campaign"], {})
        counts = units.setdefault((row["candidate"], row["revision"]), np.zeros(len(DECISIONS)))
        if row["decision"] in code:
            counts[code[row["decision"]]] += row["n"]
    domain = list(range(len(DECISIONS)))
    return {
        campaign: stats.alpha(np.array(list(units.values())), domain=domain, level="nominal")
        for campaign, units in cells.items()
    }
