"""Agreement statistics on plain numpy arrays: no Django, no database.

Every function returns an ``Estimate``: a number, or no number and the reason why there is none (one rater, no
shared items, no variation, ...). An undefined agreement is never reported as 0 or 1: both would be read as a
finding about the raters.

Ratings arrive as parallel arrays, one entry per rating: ``units`` (0..n_units-1), ``raters`` and ``codes``, where a
code is the index of the value in its domain (a 1-5 score is code 0-4; a decision is the index of its choice).

- Krippendorff's alpha: the point estimate by the ``krippendorff`` package; the bootstrap draws with the same
  formula (coincidences, expected coincidences, the level's distance) vectorised over draws. Items are resampled:
  items with the same pattern of value counts contribute the same coincidences, so a draw is a multinomial over
  the distinct patterns (a few dozen at k=3 on a 1-5 scale, whatever the number of items), and 1,000 draws over
  100,000 items take milliseconds.
- Cohen's kappa, weighted (quadratic, for scores) or not (nominal), on one or many contingency tables at once.
- Percent agreement: the share of agreeing pairs among all pairs of ratings of the same item.
- Leave-one-out consensus: for each rating, the mean (scores) or the majority (nominal) of the other raters of the
  same item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import krippendorff
import numpy as np
import numpy.typing as npt

Level = Literal["nominal", "ordinal", "interval"]
DRAWS = 1000
SEED = 20_240_601
# A bootstrap interval is given only when nearly every draw has an alpha: when many resamples have a single value
# (a tiny or nearly unanimous campaign) the interval of the rest would be too narrow to mean anything.
MIN_DEFINED_DRAWS = 0.95


@dataclass(frozen=True)
class Estimate:
    """A number, or ``value=None`` and the reason it is undefined."""

    value: float | None
    reason: str = ""

    @property
    def defined(self) -> bool:
        return self.value is not None

    def __str__(self) -> str:
        return f"{self.value:.3f}" if self.value is not None else f"undefined ({self.reason})"


def defined(value: float) -> Estimate:
    return Estimate(float(value))


def undefined(reason: str) -> Estimate:
    return Estimate(None, reason)


@dataclass(frozen=True)
class Interval:
    low: Estimate
    high: Estimate

    @classmethod
    def undefined(cls, reason: str) -> Interval:
        return cls(undefined(reason), undefined(reason))


# --- Value counts ------------------------------------------------------------------------------------------------


def value_counts(units: npt.ArrayLike, codes: npt.ArrayLike, *, n_units: int, n_values: int) -> np.ndarray:
    """How many raters gave each value to each unit: an ``(n_units, n_values)`` array of counts."""
    flat = np.asarray(units, dtype=np.int64) * n_values + np.asarray(codes, dtype=np.int64)
    return np.bincount(flat, minlength=n_units * n_values).reshape(n_units, n_values).astype(np.float64)


def reliability_data_to_counts(data: npt.ArrayLike, domain: Sequence[float]) -> np.ndarray:
    """Krippendorff's layout (raters x units, ``nan`` for missing) as value counts over ``domain``."""
    matrix = np.asarray(data, dtype=np.float64)
    counts = np.zeros((matrix.shape[1], len(domain)))
    for code, value in enumerate(domain):
        counts[:, code] = (matrix == value).sum(axis=0)
    return counts


def _pairable(counts: np.ndarray) -> np.ndarray:
    """The units rated by two or more raters (the only ones alpha and agreement can use)."""
    return counts[counts.sum(axis=1) >= 2]


def _why_undefined(counts: np.ndarray) -> str:
    """Why no agreement can be computed on these counts, or "" when it can."""
    if counts.size == 0 or counts.sum() == 0:
        return "no ratings"
    pairable = _pairable(counts)
    if len(pairable) == 0:
        return "no item was rated by two or more raters"
    used = np.flatnonzero(pairable.sum(axis=0))
    if len(used) < 2:
        return "no variation: every rating of a shared item is the same value"
    return ""


# --- Krippendorff's alpha ---------------------------------------------------------------------------------------


def alpha(counts: np.ndarray, *, domain: Sequence[float], level: Level) -> Estimate:
    """Krippendorff's alpha of ``counts`` (units x values over ``domain``) at ``level`` of measurement."""
    reason = _why_undefined(counts)
    if reason:
        return undefined(reason)
    value = krippendorff.alpha(value_counts=_pairable(counts), value_domain=domain, level_of_measurement=level)
    return defined(value)


def _distances(n_v: np.ndarray, domain: np.ndarray, level: Level) -> np.ndarray:
    """Squared distances between values, one ``(V, V)`` matrix per draw (``n_v`` is ``(B, V)``), as the package's."""
    draws, size = n_v.shape
    if level == "nominal":
        return np.broadcast_to(1.0 - np.eye(size), (draws, size, size))
    if level == "interval":
        return np.broadcast_to(np.subtract.outer(domain, domain) ** 2, (draws, size, size))
    # Ordinal: the values between two ranks (both included), less half of each end, squared.
    cumulative = np.concatenate([np.zeros((draws, 1)), np.cumsum(n_v, axis=1)], axis=1)
    low = np.minimum.outer(np.arange(size), np.arange(size))
    high = np.maximum.outer(np.arange(size), np.arange(size))
    between = cumulative[:, high + 1] - cumulative[:, low]
    ends = (n_v[:, :, None] + n_v[:, None, :]) / 2
    return (between - ends) ** 2


def _alpha_from_coincidences(o: np.ndarray, domain: np.ndarray, level: Level) -> np.ndarray:
    """Alpha for each of ``B`` coincidence matrices (``(B, V, V)``); ``nan`` where it is undefined."""
    n_v = o.sum(axis=1)
    n = n_v.sum(axis=1)
    e = (n_v[:, :, None] * n_v[:, None, :] - n_v[:, :, None] * np.eye(n_v.shape[1])) / (n - 1)[:, None, None]
    d = _distances(n_v, domain, level)
    observed = (o * d).sum(axis=(1, 2))
    expected = (e * d).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected > 0, 1 - observed / expected, np.nan)


def _patterns(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of the pairable units' counts, and how many units have each."""
    pairable = _pairable(counts)
    base = int(pairable.max()) + 1 if pairable.size else 1
    if base ** pairable.shape[1] >= 2**62:
        patterns, freq = np.unique(pairable, axis=0, return_counts=True)
        return patterns, freq
    # Each row as one integer (its counts are digits in base max+1): unique on integers is ten times as fast as on
    # rows.
    keys = pairable.astype(np.int64) @ (base ** np.arange(pairable.shape[1], dtype=np.int64))
    _, first, freq = np.unique(keys, return_index=True, return_counts=True)
    return pairable[first], freq


def _pattern_coincidences(patterns: np.ndarray) -> np.ndarray:
    """Each pattern's contribution to the coincidence matrix, flattened: ``(P, V*V)``."""
    m = patterns.sum(axis=1)
    outer = patterns[:, :, None] * patterns[:, None, :] - patterns[:, :, None] * np.eye(patterns.shape[1])
    return (outer / (m - 1)[:, None, None]).reshape(len(patterns), -1)


def _percentile_interval(samples: np.ndarray, draws: int) -> Interval:
    ok = samples[~np.isnan(samples)]
    if len(ok) < MIN_DEFINED_DRAWS * draws:
        return Interval.undefined(f"too few items: only {len(ok)} of {draws} resamples have a value")
    low, high = np.percentile(ok, [2.5, 97.5])
    return Interval(defined(low), defined(high))


def bootstrap(
    counts: np.ndarray, *, domain: Sequence[float], level: Level, draws: int = DRAWS, seed: int = SEED
) -> tuple[Interval, Interval]:
    """95% percentile intervals of alpha and of percent agreement, resampling the items ``draws`` times (seeded)."""
    reason = _why_undefined(counts)
    if reason:
        return Interval.undefined(reason), Interval.undefined(reason)
    patterns, freq = _patterns(counts)
    total = int(freq.sum())
    weights = np.random.default_rng(seed).multinomial(total, freq / total, size=draws).astype(np.float64)
    size = patterns.shape[1]
    o = (weights @ _pattern_coincidences(patterns)).reshape(draws, size, size)
    alphas = _alpha_from_coincidences(o, np.asarray(domain, dtype=np.float64), level)
    agree, pairs = _pair_counts(patterns)
    agreement = (weights @ agree) / (weights @ pairs)
    return _percentile_interval(alphas, draws), _percentile_interval(agreement, draws)


def alpha_from_patterns(counts: np.ndarray, *, domain: Sequence[float], level: Level) -> Estimate:
    """Alpha by the bootstrap's own formula on the data as it is (checks that the draws compute what the package
    computes)."""
    reason = _why_undefined(counts)
    if reason:
        return undefined(reason)
    patterns, freq = _patterns(counts)
    size = patterns.shape[1]
    o = (freq.astype(np.float64) @ _pattern_coincidences(patterns)).reshape(1, size, size)
    return defined(_alpha_from_coincidences(o, np.asarray(domain, dtype=np.float64), level)[0])


# --- Percent agreement --------------------------------------------------------------------------------------------


def _pair_counts(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per unit: ordered pairs of ratings that agree, and all ordered pairs."""
    m = counts.sum(axis=1)
    return (counts * (counts - 1)).sum(axis=1), m * (m - 1)


def percent_agreement(counts: np.ndarray) -> Estimate:
    """The share of pairs of ratings of the same item that agree, over every item rated at least twice."""
    pairable = _pairable(counts)
    if len(pairable) == 0:
        return undefined("no item was rated by two or more raters")
    agree, pairs = _pair_counts(pairable)
    return defined(agree.sum() / pairs.sum())


# --- Cohen's kappa ------------------------------------------------------------------------------------------------


def kappa_weights(n_values: int, *, weighting: Literal["quadratic", "none"]) -> np.ndarray:
    """Disagreement weights: ``(i-j)^2 / (V-1)^2`` (quadratic) or 1 off the diagonal (none)."""
    if weighting == "none" or n_values < 2:
        return 1.0 - np.eye(n_values)
    ranks = np.arange(n_values, dtype=np.float64)
    return np.subtract.outer(ranks, ranks) ** 2 / (n_values - 1) ** 2


def contingency_tables(groups: np.ndarray, a: np.ndarray, b: np.ndarray, *, n_groups: int, n_values: int):
    """One ``(V, V)`` table of paired codes per group: ``(n_groups, V, V)``."""
    flat = (groups.astype(np.int64) * n_values + a.astype(np.int64)) * n_values + b.astype(np.int64)
    size = n_groups * n_values * n_values
    return np.bincount(flat, minlength=size).reshape(n_groups, n_values, n_values).astype(np.float64)


def kappa_tables(tables: np.ndarray, weights: np.ndarray) -> list[Estimate]:
    """Cohen's (weighted) kappa of each contingency table in ``tables`` (``(G, V, V)``)."""
    n = tables.sum(axis=(1, 2))
    safe = np.where(n > 0, n, 1)
    rows = tables.sum(axis=2) / safe[:, None]
    cols = tables.sum(axis=1) / safe[:, None]
    observed = (tables * weights).sum(axis=(1, 2)) / safe
    expected = np.einsum("gi,ij,gj->g", rows, weights, cols)
    out = []
    for count, obs, exp in zip(n, observed, expected, strict=True):
        if count == 0:
            out.append(undefined("no shared items"))
        elif exp <= 1e-12:
            out.append(undefined("no variation: both gave one and the same value to every item"))
        else:
            out.append(defined(1 - obs / exp))
    return out


def cohen_kappa(a: npt.ArrayLike, b: npt.ArrayLike, *, n_values: int, weighting="quadratic") -> Estimate:
    """Cohen's kappa of two raters' codes on the same items (``a[i]`` and ``b[i]`` rate item i)."""
    first, second = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    table = contingency_tables(np.zeros(len(first)), first, second, n_groups=1, n_values=n_values)
    return kappa_tables(table, kappa_weights(n_values, weighting=weighting))[0]


# --- Leave-one-out consensus ----------------------------------------------------------------------------------------


def mean_of_others(units: np.ndarray, values: np.ndarray, *, n_units: int) -> np.ndarray:
    """For each rating, the mean of the other ratings of its unit (``nan`` where it is the only one)."""
    totals = np.bincount(units, weights=values, minlength=n_units)
    counts = np.bincount(units, minlength=n_units)
    others = counts[units] - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(others > 0, (totals[units] - values) / np.maximum(others, 1), np.nan)


def majority_of_others(units: np.ndarray, codes: np.ndarray, *, n_units: int, n_values: int) -> np.ndarray:
    """For each rating, the value most of the other raters of its unit gave; -1 where none or tied."""
    counts = value_counts(units, codes, n_units=n_units, n_values=n_values)
    others = counts[units]
    others[np.arange(len(codes)), codes] -= 1
    top = others.max(axis=1)
    tied = (others == top[:, None]).sum(axis=1) > 1
    return np.where((top > 0) & ~tied, others.argmax(axis=1), -1)


# --- AI against clinicians ----------------------------------------------------------------------------------------

# At least this many pairs for a rank correlation: on fewer it is mostly noise and the bootstrap has nothing to draw.
MIN_PAIRS = 3
Z_95 = 1.959963984540054


def _weighted_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mid-ranks of ``values`` (``(P,)`` distinct observations) weighted by how often each occurs, one row of ranks per
    row of ``weights`` (``(B, P)``): tied observations share the mean of the ranks they span."""
    levels, index = np.unique(values, return_inverse=True)
    per_level = np.zeros((weights.shape[0], len(levels)))
    np.add.at(per_level.T, index, weights.T)
    before = np.cumsum(per_level, axis=1) - per_level
    return (before + (per_level + 1) / 2)[:, index]


def _weighted_pearson(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pearson's r of ``x`` and ``y`` (``(B, P)``) weighted by ``weights`` (``(B, P)``); ``nan`` with no variation."""
    total = weights.sum(axis=1, keepdims=True)
    mx = (weights * x).sum(axis=1, keepdims=True) / total
    my = (weights * y).sum(axis=1, keepdims=True) / total
    cov = (weights * (x - mx) * (y - my)).sum(axis=1)
    vx = (weights * (x - mx) ** 2).sum(axis=1)
    vy = (weights * (y - my) ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((vx > 1e-12) & (vy > 1e-12), cov / np.sqrt(vx * vy), np.nan)


def spearman(x: npt.ArrayLike, y: npt.ArrayLike, *, draws: int = DRAWS, seed: int = SEED) -> tuple[Estimate, Interval]:
    """Spearman's rank correlation of paired observations (Pearson's r of their mid-ranks) and its 95% percentile
    bootstrap interval (pairs resampled, ``draws`` times, seeded).

    As for alpha, a draw is a multinomial over the distinct pairs (an AI score of 1-5 against a mean of k clinicians'
    scores has a few dozen), so the interval costs the same at a hundred pairs or a million."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(a) < MIN_PAIRS:
        reason = f"fewer than {MIN_PAIRS} items scored by both"
        return undefined(reason), Interval.undefined(reason)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        reason = "no variation: one side gave the same score to every item"
        return undefined(reason), Interval.undefined(reason)
    pairs, freq = np.unique(np.column_stack([a, b]), axis=0, return_counts=True)
    px, py = pairs[:, 0], pairs[:, 1]
    w = freq[None, :].astype(np.float64)
    rho = _weighted_pearson(_weighted_ranks(px, w), _weighted_ranks(py, w), w)[0]
    total = int(freq.sum())
    weights = np.random.default_rng(seed).multinomial(total, freq / total, size=draws).astype(np.float64)
    samples = _weighted_pearson(_weighted_ranks(px, weights), _weighted_ranks(py, weights), weights)
    return defined(rho), _percentile_interval(samples, draws)


def mean_difference(x: npt.ArrayLike, y: npt.ArrayLike) -> Estimate:
    """The mean of ``x - y`` (the AI's bias against the clinicians: positive when the AI scores higher)."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(a) == 0:
        return undefined("no item scored by both")
    return defined(float((a - b).mean()))


def wilson_interval(successes: int, n: int) -> Interval:
    """The 95% Wilson score interval of a proportion (exact enough at small n, never outside [0, 1])."""
    if n == 0:
        return Interval.undefined("no items")
    p = successes / n
    z2 = Z_95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_95 * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Interval(defined(max(0.0, centre - half)), defined(min(1.0, centre + half)))


def proportion(successes: int, n: int, *, none: str = "no items") -> tuple[Estimate, Interval]:
    """A share and its Wilson interval; undefined (with ``none`` as the reason) on no items."""
    if n == 0:
        return undefined(none), Interval.undefined(none)
    return defined(successes / n), wilson_interval(successes, n)
