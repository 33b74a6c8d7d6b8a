"""GET /api/dashboards/campaigns/<id>/agreement/: each role, the counselor's own row, blind names, bad filters."""

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from annotations.models import Review
from tests import factories

from .conftest import add_review, make_campaign

pytestmark = pytest.mark.django_db


def _get(user, campaign_id, **params):
    api = APIClient()
    if user is not None:
        api.force_authenticate(user)
    return api.get(f"/api/dashboards/campaigns/{campaign_id}/agreement/", params)


@pytest.mark.parametrize("role", ["senior", "curator", "admin"])
def test_roles_that_see_all(request, krippendorff_campaign, role):
    campaign, raters = krippendorff_campaign
    user = factories.make_user("admin") if role == "admin" else request.getfixturevalue(role)
    response = _get(user, campaign.pk)
    assert response.status_code == 200
    body = response.json()
    assert body["scope"] == "all" and body["reviews"] == 41 and body["raters"] == 4
    assert body["criteria"][0]["alpha"]["value"] == pytest.approx(0.815, abs=5e-4)
    assert body["criteria"][0]["alpha"]["reason"] == ""
    assert body["decision"]["level"] == "nominal"
    assert {row["rater"] for row in body["per_rater"]} == {r.get_full_name() for r in raters}


def test_counselor_sees_only_own_row_and_no_names_in_a_blind_campaign(krippendorff_campaign):
    campaign, raters = krippendorff_campaign
    response = _get(raters[0], campaign.pk)
    assert response.status_code == 200
    body = response.json()
    assert body["scope"] == "own" and body["criteria"] == [] and body["decision"] is None and body["pairs"] == []
    [row] = body["per_rater"]
    assert row["own"] and row["rater"] == raters[0].get_full_name() and row["reviews"] == 9
    text = response.content.decode()
    for other in raters[1:]:
        assert other.first_name not in text and other.get_username() not in text


def test_undefined_is_null_with_reason(taxonomy, curator, counselor, senior):
    campaign, dialogues = make_campaign(curator, [counselor], 1)
    add_review(campaign, dialogues[0], counselor, 3)
    body = _get(senior, campaign.pk).json()
    assert body["criteria"][0]["alpha"] == {"value": None, "reason": "no item was rated by two or more raters"}
    assert body["criteria"][0]["alpha_ci"]["low"]["value"] is None


def test_no_role_is_403_and_anonymous_401(krippendorff_campaign, outsider):
    campaign, _ = krippendorff_campaign
    assert _get(outsider, campaign.pk).status_code == 403
    assert _get(None, campaign.pk).status_code == 401


def test_a_campaign_not_yours_is_404(krippendorff_campaign, other_counselor, senior):
    campaign, _ = krippendorff_campaign
    assert _get(other_counselor, campaign.pk).status_code == 404
    assert _get(senior, 999_999).status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"since": "2026-05-02", "until": "2026-05-01"}, "until"),
        ({"model": "x"}, "model"),
        ({"since\x00": "x"}, None),
    ],
)
def test_bad_filters_are_400_naming_the_parameter(krippendorff_campaign, senior, params, field):
    campaign, _ = krippendorff_campaign
    response = _get(senior, campaign.pk, **params)
    assert response.status_code == 400
    if field:
        assert field in response.json()


def test_date_filters(pair_campaign, senior):
    latest = timezone.localdate(Review.objects.latest("created_at").created_at)
    body = _get(senior, pair_campaign.pk, since=latest.isoformat()).json()
    assert body["reviews"] == 24 and body["filters"] == {"since": latest.isoformat(), "until": None}
    # 12 shared items in that week: fewer than the 20 a pair's kappa needs.
    assert body["pairs"] == []


def test_post_is_not_allowed(krippendorff_campaign, senior):
    campaign, _ = krippendorff_campaign
    api = APIClient()
    api.force_authenticate(senior)
    assert api.post(f"/api/dashboards/campaigns/{campaign.pk}/agreement/").status_code == 405
