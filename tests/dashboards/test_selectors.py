"""dashboards.selectors: the numbers of hand-built campaigns are the statistics of their reviews, as each role may
see them."""

import pytest
from django.utils import timezone

from annotations.models import Review
from dashboards import selectors, stats
from dashboards.selectors import AgreementFilters
from tests import factories

from .conftest import PAIR_A, PAIR_B, add_review, make_campaign
from .test_stats import DOMAIN, KRIPPENDORFF_2011

pytestmark = pytest.mark.django_db


def test_alpha_per_criterion_is_krippendorffs_example(krippendorff_campaign, senior):
    campaign, _ = krippendorff_campaign
    agreement = selectors.agreement_for(user=senior, campaign=campaign, filters=AgreementFilters())
    assert agreement.scope == "all" and agreement.reviews == 41 and agreement.items == 12 and agreement.raters == 4
    assert [row.key for row in agreement.criteria] == [c["key"] for c in campaign.rubric.criteria]
    for row in agreement.criteria:
        # Every criterion got the example's values: ordinal alpha 0.815, as the paper gives.
        assert row.level == "ordinal" and row.alpha.value == pytest.approx(0.815, abs=5e-4)
        assert row.items == 11  # unit 12 has a single value
        assert row.alpha_ci.low.value < row.alpha.value < row.alpha_ci.high.value
    counts = stats.reliability_data_to_counts(KRIPPENDORFF_2011, DOMAIN)
    expected_agreement = stats.percent_agreement(counts).value
    assert agreement.criteria[0].percent_agreement.value == pytest.approx(expected_agreement)


def test_alpha_on_the_decision_and_flags_is_nominal(krippendorff_campaign, curator):
    campaign, _ = krippendorff_campaign
    agreement = selectors.agreement_for(user=curator, campaign=campaign, filters=AgreementFilters())
    # The decision is the score mapped 1-2 reject, 3 needs revision, 4-5 approve.
    mapped = [[{1: 0, 2: 0, 3: 1, 4: 2, 5: 2}.get(v, v) for v in row] for row in KRIPPENDORFF_2011]
    counts = stats.reliability_data_to_counts(mapped, [0, 1, 2])
    expected = stats.alpha(counts, domain=[0, 1, 2], level="nominal")
    assert agreement.decision.level == "nominal"
    assert agreement.decision.alpha.value == pytest.approx(expected.value)
    flags = {row.key: row for row in agreement.risk_flags}
    assert list(flags) == ["any", "self_harm"]
    # One flag among 41 ratings: alpha is defined (there is variation), and negative-ish, never made 0 or 1.
    flagged = [[0 if v == v else v for v in row] for row in KRIPPENDORFF_2011]
    flagged[3][5] = 1
    expected_flag = stats.alpha(stats.reliability_data_to_counts(flagged, [0, 1]), domain=[0, 1], level="nominal")
    assert flags["self_harm"].alpha.value == pytest.approx(expected_flag.value)
    assert flags["any"].alpha.value == pytest.approx(expected_flag.value)


def test_pairs_need_twenty_shared_items(krippendorff_campaign, senior):
    campaign, _ = krippendorff_campaign
    assert selectors.agreement_for(user=senior, campaign=campaign, filters=AgreementFilters()).pairs == []


def test_pair_kappa_and_consensus(pair_campaign, senior, counselor, other_counselor):
    agreement = selectors.agreement_for(user=senior, campaign=pair_campaign, filters=AgreementFilters())
    [pair] = agreement.pairs
    assert pair.shared_items == 24
    names = {counselor.get_username(), other_counselor.get_username()}
    assert {pair.rater_a, pair.rater_b} == names
    kappas = {k.key: k.kappa.value for k in pair.kappas}
    criteria = [c["key"] for c in pair_campaign.rubric.criteria]
    for key in criteria:
        assert kappas[key] == pytest.approx(0.75)
    # The decisions are the scores 1-3 mapped to reject, reject, needs revision: unweighted kappa on those codes.
    decision_a = [0 if s <= 2 else 1 for s in PAIR_A]
    decision_b = [0 if s <= 2 else 1 for s in PAIR_B]
    assert kappas["decision"] == pytest.approx(
        stats.cohen_kappa(decision_a, decision_b, n_values=3, weighting="none").value
    )
    # With two raters the consensus of the others is the other rater: MAD = mean |a - b| = 1/3, kappa 0.75.
    rows = {row.rater: row for row in agreement.rater_rows}
    for name in names:
        assert rows[name].mad.value == pytest.approx(1 / 3)
        assert rows[name].kappa.value == pytest.approx(0.75)
        assert rows[name].reviews == rows[name].shared_items == 24
    agree = sum(a == b for a, b in zip(decision_a, decision_b, strict=True)) / 24
    assert rows[counselor.get_username()].decision_agreement.value == pytest.approx(agree)
    # Two ISO weeks, 12 items each: each week repeats the pattern twice, so the same numbers.
    assert len(agreement.weekly) == 4
    assert len({row.week for row in agreement.weekly}) == 2
    for row in agreement.weekly:
        assert row.reviews == 12 and row.kappa.value == pytest.approx(0.75)


def test_date_filters(pair_campaign, senior):
    earlier = timezone.localdate(Review.objects.earliest("created_at").created_at)
    only_recent = AgreementFilters(since=timezone.localdate(Review.objects.latest("created_at").created_at))
    agreement = selectors.agreement_for(user=senior, campaign=pair_campaign, filters=only_recent)
    assert agreement.reviews == 24 and agreement.items == 12
    nothing = selectors.agreement_for(
        user=senior, campaign=pair_campaign, filters=AgreementFilters(until=earlier.replace(year=earlier.year - 1))
    )
    assert nothing.reviews == 0 and nothing.criteria == [] and nothing.rater_rows == []


def test_counselor_sees_only_their_own_rows(pair_campaign, counselor, other_counselor):
    agreement = selectors.agreement_for(user=counselor, campaign=pair_campaign, filters=AgreementFilters())
    assert agreement.scope == "own"
    assert (
        agreement.criteria == [] and agreement.decision is None and agreement.pairs == [] and agreement.risk_flags == []
    )
    [row] = agreement.rater_rows
    assert row.own and row.rater == counselor.get_username() and row.kappa.value == pytest.approx(0.75)
    assert {r.rater for r in agreement.weekly} == {counselor.get_username()}
    assert agreement.reviews == 24 and agreement.raters == 1


def test_blind_campaign_names_others_rater_n_for_counselors_only(taxonomy, curator, senior):
    raters = [factories.counselor() for _ in range(3)]
    campaign, dialogues = make_campaign(curator, raters, 2, blind=True)
    for item in dialogues:
        for score, rater in zip((2, 3, 4), raters, strict=True):
            add_review(campaign, item, rater, score)
    labels = selectors.rater_labels(user=raters[1], campaign=campaign, rater_ids=[r.pk for r in raters])
    assert labels == ["Rater 1", raters[1].get_username(), "Rater 3"]
    # Senior clinicians, curators and admins see names (annotations.selectors.visibility: SEE_ALL).
    assert selectors.rater_labels(user=senior, campaign=campaign, rater_ids=[raters[0].pk]) == [
        raters[0].get_username()
    ]
    campaign.blind = False
    assert selectors.rater_labels(user=raters[1], campaign=campaign, rater_ids=[raters[0].pk]) == [
        raters[0].get_username()
    ]


def test_one_rater_is_undefined_with_the_reason(taxonomy, curator, counselor, senior):
    campaign, dialogues = make_campaign(curator, [counselor], 3)
    for item, score in zip(dialogues, (1, 3, 5), strict=True):
        add_review(campaign, item, counselor, score)
    agreement = selectors.agreement_for(user=senior, campaign=campaign, filters=AgreementFilters())
    row = agreement.criteria[0]
    assert row.alpha.value is None and "two or more raters" in row.alpha.reason
    assert row.alpha_ci.low.value is None and row.percent_agreement.value is None
    [rater] = agreement.rater_rows
    assert rater.mad.value is None and rater.kappa.value is None and rater.decision_agreement.value is None


def test_identical_raters_without_variation_are_undefined(taxonomy, curator, counselor, other_counselor, senior):
    campaign, dialogues = make_campaign(curator, [counselor, other_counselor], 3)
    for item in dialogues:
        add_review(campaign, item, counselor, 4)
        add_review(campaign, item, other_counselor, 4)
    agreement = selectors.agreement_for(user=senior, campaign=campaign, filters=AgreementFilters())
    assert "no variation" in agreement.criteria[0].alpha.reason
    assert agreement.criteria[0].percent_agreement.value == 1.0
    assert agreement.rater_rows[0].mad.value == 0.0 and agreement.rater_rows[0].kappa.value is None


def test_a_raters_latest_review_of_a_revision_counts(taxonomy, curator, counselor, other_counselor, senior):
    campaign, dialogues = make_campaign(curator, [counselor, other_counselor], 2)
    add_review(campaign, dialogues[0], counselor, 1)
    add_review(campaign, dialogues[0], counselor, 5)
    add_review(campaign, dialogues[0], other_counselor, 5)
    agreement = selectors.agreement_for(user=senior, campaign=campaign, filters=AgreementFilters())
    assert agreement.reviews == 2 and agreement.criteria[0].percent_agreement.value == 1.0


def test_summaries(krippendorff_campaign, senior, curator):
    campaign, raters = krippendorff_campaign
    empty, _ = make_campaign(curator, raters[:1], 1)
    summaries = {s.campaign.pk: s for s in selectors.campaign_summaries(user=senior)}
    full = selectors.agreement_for(user=senior, campaign=campaign, filters=AgreementFilters())
    assert summaries[campaign.pk].reviews == 41 and summaries[campaign.pk].items == 12
    assert summaries[campaign.pk].decision_alpha.value == pytest.approx(full.decision.alpha.value)
    assert summaries[empty.pk].reviews == 0 and summaries[empty.pk].decision_alpha.value is None
    mine = {s.campaign.pk: s for s in selectors.campaign_summaries(user=raters[3])}
    assert mine[campaign.pk].reviews == 11 and mine[campaign.pk].decision_alpha is None
