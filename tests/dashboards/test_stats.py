"""dashboards.stats against published worked examples and the edge cases where agreement is undefined."""

import math

import numpy as np
import pytest

from dashboards import stats

NAN = math.nan
# Krippendorff, K. (2011). "Computing Krippendorff's Alpha-Reliability", section C ("Nominal data, any number of
# observers, missing data"), the reliability data of 4 observers on 12 units; the paper gives alpha = 0.743
# (nominal), 0.815 (ordinal) and 0.849 (interval) for these data.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]
DOMAIN = [1, 2, 3, 4, 5]


@pytest.fixture
def counts():
    return stats.reliability_data_to_counts(KRIPPENDORFF_2011, DOMAIN)


@pytest.mark.parametrize(("level", "expected"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_alpha_matches_krippendorff_2011(counts, level, expected):
    assert stats.alpha(counts, domain=DOMAIN, level=level).value == pytest.approx(expected, abs=5e-4)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_bootstrap_formula_computes_what_the_package_computes(counts, level):
    # The draws use the vectorised formula; on the data as they are it must give the package's alpha.
    ours = stats.alpha_from_patterns(counts, domain=DOMAIN, level=level)
    assert ours.value == pytest.approx(stats.alpha(counts, domain=DOMAIN, level=level).value, abs=1e-12)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 5, size=400)
    # Three raters per item, each off by one now and then.
    units = np.repeat(np.arange(400), 3)
    noise = rng.choice([-1, 0, 0, 0, 1], size=1200)
    codes = np.clip(np.repeat(truth, 3) + noise, 0, 4)
    counts = stats.value_counts(units, codes, n_units=400, n_values=5)
    point = stats.alpha(counts, domain=DOMAIN, level="ordinal").value
    ci, agreement_ci = stats.bootstrap(counts, domain=DOMAIN, level="ordinal")
    again, _ = stats.bootstrap(counts, domain=DOMAIN, level="ordinal")
    assert ci == again
    assert ci.low.value < point < ci.high.value
    assert 0 < ci.high.value - ci.low.value < 0.15
    agreement = stats.percent_agreement(counts).value
    assert agreement_ci.low.value < agreement < agreement_ci.high.value


def test_percent_agreement_counts_pairs_within_items():
    # One item rated 1, 1, 2: of its 3 pairs one agrees; one item rated 4, 4: its one pair agrees. 2 of 4 pairs.
    counts = stats.value_counts([0, 0, 0, 1, 1], [0, 0, 1, 3, 3], n_units=2, n_values=5)
    assert stats.percent_agreement(counts).value == pytest.approx(0.5)


def test_cohen_kappa_textbook_example():
    # Wikipedia, "Cohen's kappa", worked example: 50 grant proposals, both raters say yes to 20, both no to 15;
    # A yes / B no 5, A no / B yes 10. p_o = 0.7, p_e = 0.5, kappa = 0.4.
    a = [0] * 20 + [0] * 5 + [1] * 10 + [1] * 15
    b = [0] * 20 + [1] * 5 + [0] * 10 + [1] * 15
    assert stats.cohen_kappa(a, b, n_values=2, weighting="none").value == pytest.approx(0.4)


def test_quadratic_weighted_kappa_by_hand():
    # Three values, six items. A: 0 0 1 1 2 2; B: 0 1 1 2 2 2. Quadratic weights (i-j)^2/4: 0.25 for one step.
    # Observed weighted disagreement: (0.25 + 0.25) / 6 = 1/12. Marginals: A 1/3 each, B 1/6, 2/6, 3/6; the column
    # sums of the weights are 1.25, 0.5, 1.25, so expected = 1/3 * (1.25/6 + 2*0.5/6 + 3*1.25/6) = 1/3.
    # kappa_w = 1 - (1/12) / (1/3) = 0.75. Unweighted: p_o = 4/6, p_e = 1/3, kappa = 0.5.
    a, b = [0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 2, 2]
    assert stats.cohen_kappa(a, b, n_values=3).value == pytest.approx(0.75)
    assert stats.cohen_kappa(a, b, n_values=3, weighting="none").value == pytest.approx(0.5)


def test_identical_raters_with_variation_agree_perfectly():
    a = [0, 1, 2, 3, 4, 2]
    assert stats.cohen_kappa(a, a, n_values=5).value == pytest.approx(1.0)
    counts = stats.value_counts(np.repeat(np.arange(6), 2), np.repeat(a, 2), n_units=6, n_values=5)
    assert stats.alpha(counts, domain=DOMAIN, level="ordinal").value == pytest.approx(1.0)


# --- Undefined, with the reason ------------------------------------------------------------------------------------


def test_one_rater_is_undefined():
    counts = stats.value_counts([0, 1, 2], [0, 3, 4], n_units=3, n_values=5)
    result = stats.alpha(counts, domain=DOMAIN, level="ordinal")
    assert result.value is None and "two or more raters" in result.reason
    assert stats.percent_agreement(counts).value is None
    ci, agreement_ci = stats.bootstrap(counts, domain=DOMAIN, level="ordinal")
    assert ci.low.value is None and ci.low.reason == result.reason and agreement_ci.high.value is None


def test_no_overlap_is_undefined():
    # Two raters, each on their own items.
    counts = stats.value_counts([0, 1, 2, 3], [0, 1, 2, 3], n_units=4, n_values=5)
    assert "two or more raters" in stats.alpha(counts, domain=DOMAIN, level="nominal").reason
    kappa = stats.cohen_kappa([], [], n_values=5)
    assert kappa.value is None and kappa.reason == "no shared items"


def test_all_identical_values_is_undefined_never_one():
    counts = stats.value_counts([0, 0, 1, 1, 2, 2], [3] * 6, n_units=3, n_values=5)
    result = stats.alpha(counts, domain=DOMAIN, level="ordinal")
    assert result.value is None and "no variation" in result.reason
    kappa = stats.cohen_kappa([3, 3, 3], [3, 3, 3], n_values=5)
    assert kappa.value is None and "no variation" in kappa.reason
    # Percent agreement is defined: every pair agrees.
    assert stats.percent_agreement(counts).value == 1.0
    assert str(result).startswith("undefined (no variation")


def test_missing_values_leave_single_ratings_out():
    # Unit 0 rated twice, unit 1 once: the single rating is not pairable and changes nothing.
    with_single = stats.value_counts([0, 0, 1, 2, 2], [0, 1, 4, 2, 2], n_units=3, n_values=5)
    without = stats.value_counts([0, 0, 2, 2], [0, 1, 2, 2], n_units=3, n_values=5)
    for level in ("nominal", "ordinal", "interval"):
        assert (
            stats.alpha(with_single, domain=DOMAIN, level=level).value
            == stats.alpha(without, domain=DOMAIN, level=level).value
        )


def test_bootstrap_of_tiny_data_is_undefined_with_the_reason():
    # Two items: most resamples hold one pattern twice, whose alpha is undefined.
    counts = stats.value_counts([0, 0, 1, 1], [0, 0, 4, 4], n_units=2, n_values=5)
    ci, _ = stats.bootstrap(counts, domain=DOMAIN, level="nominal")
    assert ci.low.value is None and "too few items" in ci.low.reason


# --- Leave-one-out consensus ----------------------------------------------------------------------------------------


def test_mean_of_others():
    units = np.array([0, 0, 0, 1])
    values = np.array([1.0, 3.0, 5.0, 2.0])
    result = stats.mean_of_others(units, values, n_units=2)
    assert result[:3].tolist() == [4.0, 3.0, 2.0] and math.isnan(result[3])


def test_majority_of_others_ties_and_lone_ratings():
    units = np.array([0, 0, 0, 1, 1, 2])
    codes = np.array([0, 0, 1, 0, 1, 2])
    # Unit 0: the first rater's others are 0 and 1 (tie); the third's are 0 and 0. Unit 1: one other each. Unit 2:
    # no other.
    result = stats.majority_of_others(units, codes, n_units=3, n_values=3)
    assert result.tolist() == [-1, -1, 0, 1, 0, -1]


# --- AI against clinicians ----------------------------------------------------------------------------------------


def test_spearman_of_a_hand_computed_example():
    # Ranks differ by 1, 1, 1, 1, 0: rho = 1 - 6 * 4 / (5 * (25 - 1)) = 0.8.
    rho, ci = stats.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert rho.value == pytest.approx(0.8)
    assert ci.low.value is not None and ci.high.value is not None
    assert -1 <= ci.low.value <= 0.8 <= ci.high.value <= 1


def test_spearman_with_ties_uses_mid_ranks():
    # x ranks 1.5, 1.5, 3, 4; y ranks 1, 2, 3.5, 3.5: covariance sum 4, each variance sum 4.5, r = 4 / 4.5.
    rho, _ = stats.spearman([1, 1, 2, 3], [1, 2, 3, 3])
    assert rho.value == pytest.approx(4.0 / 4.5)


def test_spearman_interval_is_seeded():
    x, y = [1, 2, 3, 4, 5] * 4, [2, 1, 4, 3, 5] * 4
    assert stats.spearman(x, y)[1] == stats.spearman(x, y)[1]


@pytest.mark.parametrize(
    ("x", "y", "reason"),
    [([1, 2], [1, 2], "fewer than 3"), ([3, 3, 3], [1, 2, 3], "no variation"), ([], [], "fewer than 3")],
)
def test_spearman_undefined_with_reason(x, y, reason):
    rho, ci = stats.spearman(x, y)
    assert rho.value is None and reason in rho.reason
    assert ci.low.value is None


def test_mean_difference_and_wilson_interval():
    assert stats.mean_difference([1, 2, 3], [2, 2, 2]).value == pytest.approx(0.0)
    assert stats.mean_difference([], []).value is None
    # Wilson's interval for 8 of 10: 0.4902 to 0.9433 (Newcombe 1998, method 3).
    interval = stats.wilson_interval(8, 10)
    assert interval.low.value == pytest.approx(0.4902, abs=1e-4)
    assert interval.high.value == pytest.approx(0.9433, abs=1e-4)
    share, ci = stats.proportion(0, 0)
    assert share.value is None and ci.low.value is None
