"""A warm dashboard is cached under its data's version: a new review is seen at once, an unchanged page is not
recomputed."""

import pytest

from dashboards import selectors
from dashboards.selectors import AgreementFilters
from dashboards.selectors.calibration import CalibrationFilters, calibration_for

from .conftest import add_review

pytestmark = pytest.mark.django_db


def test_agreement_is_cached_until_a_review_arrives(pair_campaign, senior, counselor, monkeypatch):
    first = selectors.agreement_for(user=senior, campaign=pair_campaign, filters=AgreementFilters())
    calls = []
    real = selectors.agreement_compute
    monkeypatch.setattr(selectors, "agreement_compute", lambda **kw: calls.append(1) or real(**kw))
    again = selectors.agreement_for(user=senior, campaign=pair_campaign, filters=AgreementFilters())
    assert calls == [] and again.reviews == first.reviews
    dialogue = pair_campaign.items.order_by("id").first().candidate
    add_review(pair_campaign, dialogue, counselor, 5)
    fresh = selectors.agreement_for(user=senior, campaign=pair_campaign, filters=AgreementFilters())
    assert calls == [1] and fresh.reviews == first.reviews  # the counselor's latest review replaces the earlier one
    # A counselor's own view is cached apart from the full one.
    own = selectors.agreement_for(user=counselor, campaign=pair_campaign, filters=AgreementFilters())
    assert own.scope == "own" and calls == [1, 1]


def test_calibration_is_cached_until_the_data_changes(calibration_world, counselor):
    before = calibration_for(filters=CalibrationFilters()).groups[0]
    add_review(calibration_world["campaign"], calibration_world["dialogues"][0], counselor, 5)
    after = calibration_for(filters=CalibrationFilters()).groups[0]
    empathy = [next(c for c in g.criteria if c.key == "empathy") for g in (before, after)]
    assert empathy[0].table != empathy[1].table
