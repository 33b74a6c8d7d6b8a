"""The dashboard pages: each role, the counselor's own row, blind names, bad filters as a message, CSV downloads."""

import csv
import html
import io

import pytest
from django.test import Client

from generation.models import ModelSpec
from tests import factories

from .conftest import add_review, make_campaign

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _url(campaign_id: int) -> str:
    return f"/dashboards/campaigns/{campaign_id}/agreement/"


def _csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_index_for_a_senior_lists_campaigns_with_alpha(krippendorff_campaign, senior):
    campaign, _ = krippendorff_campaign
    response = _client(senior).get("/dashboards/")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'href="/dashboards/"' in text  # the header's link
    assert f'data-campaign="{campaign.pk}"' in text and "Alpha (decision)" in text and "41" in text


def test_index_for_a_counselor_shows_own_counts_only(krippendorff_campaign, other_counselor):
    campaign, raters = krippendorff_campaign
    text = _client(raters[0]).get("/dashboards/").content.decode()
    assert "Your reviews" in text and "Alpha (decision)" not in text
    # A counselor not in the campaign does not see it.
    assert f'data-campaign="{campaign.pk}"' not in _client(other_counselor).get("/dashboards/").content.decode()


def test_no_role_is_403_and_anonymous_goes_to_login(krippendorff_campaign, outsider):
    campaign, _ = krippendorff_campaign
    assert _client(outsider).get("/dashboards/").status_code == 403
    assert _client(outsider).get(_url(campaign.pk)).status_code == 403
    assert _client(None).get(_url(campaign.pk)).status_code == 302
    assert 'href="/dashboards/"' not in _client(outsider).get("/accounts/login/").content.decode()


def test_not_your_campaign_is_404(krippendorff_campaign, other_counselor, senior):
    campaign, _ = krippendorff_campaign
    assert _client(other_counselor).get(_url(campaign.pk)).status_code == 404
    assert _client(senior).get(_url(999_999)).status_code == 404


def test_post_is_405(krippendorff_campaign, senior):
    campaign, _ = krippendorff_campaign
    assert _client(senior).post(_url(campaign.pk)).status_code == 405


@pytest.mark.parametrize("role", ["senior", "curator"])
def test_agreement_page_for_roles_that_see_all(request, krippendorff_campaign, role):
    campaign, raters = krippendorff_campaign
    response = _client(request.getfixturevalue(role)).get(_url(campaign.pk))
    assert response.status_code == 200
    text = response.content.decode()
    for table in ("criteria", "risk_flags", "pairs", "raters", "weekly"):
        assert f'id="table-{table}"' in text
    assert "0.815" in text and raters[1].get_full_name() in text
    assert "No pair of raters shares enough items yet." in text
    assert "<script>" not in text.split("</head>")[1]


def test_counselor_page_has_own_rows_and_no_other_names(krippendorff_campaign):
    campaign, raters = krippendorff_campaign
    response = _client(raters[0]).get(_url(campaign.pk))
    assert response.status_code == 200
    text = response.content.decode()
    assert 'id="table-raters"' in text and 'id="table-criteria"' not in text and 'id="table-pairs"' not in text
    assert raters[0].get_full_name() in text
    for other in raters[1:]:
        assert other.first_name not in text and other.get_username() not in text


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("since=yesterday", '"since": Enter a valid date.'),
        ("since=2026-05-02&until=2026-05-01", '"until": must be on or after since'),
        ("colour=x", '"colour" is not a filter of this page'),
        ("model=x", "\"model\": no model spec named 'x'"),
        ("sub_emotion=nope.9", "\"sub_emotion\": no sub-emotion with the key 'nope.9'"),
        ("format=xml", '"format": must be one of html, csv.'),
        ("format=csv&table=nope", '"table": must be one of'),
    ],
)
def test_bad_filters_are_a_message_on_the_page(krippendorff_campaign, senior, query, message):
    campaign, _ = krippendorff_campaign
    response = _client(senior).get(f"{_url(campaign.pk)}?{query}")
    assert response.status_code == 400
    text = html.unescape(response.content.decode())
    assert message in text and 'id="filter-errors"' in text


def test_counselor_may_not_download_others_tables(krippendorff_campaign):
    campaign, raters = krippendorff_campaign
    response = _client(raters[0]).get(f"{_url(campaign.pk)}?format=csv&table=pairs")
    assert response.status_code == 400


def test_csv_of_criteria_and_raters(krippendorff_campaign, senior):
    campaign, raters = krippendorff_campaign
    response = _client(senior).get(f"{_url(campaign.pk)}?format=csv&table=criteria")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert f'filename="campaign-{campaign.pk}-criteria.csv"' in response["Content-Disposition"]
    rows = _csv(response)
    assert rows[0][:4] == ["Rated", "Level", "Items rated twice or more", "Alpha"]
    first = rows[1]
    assert first[1] == "ordinal" and first[2] == "11" and float(first[3]) == pytest.approx(0.815, abs=5e-4)
    assert rows[-1][0] == "Decision" and rows[-1][1] == "nominal"
    raters_csv = _csv(_client(senior).get(f"{_url(campaign.pk)}?format=csv&table=raters"))
    assert {row[0] for row in raters_csv[1:]} == {r.get_full_name() for r in raters}


def test_csv_undefined_is_spelled_out_and_names_cannot_be_formulas(taxonomy, curator, senior):
    person = factories.counselor(first_name="=HYPERLINK(1)", last_name="")
    campaign, dialogues = make_campaign(curator, [person], 1)
    add_review(campaign, dialogues[0], person, 3)
    rows = _csv(_client(senior).get(f"{_url(campaign.pk)}?format=csv&table=raters"))
    assert rows[1][0] == "'=HYPERLINK(1)"
    assert rows[1][3] == "undefined: no scored item shared with another rater"
    criteria = _csv(_client(senior).get(f"{_url(campaign.pk)}?format=csv&table=criteria"))
    assert criteria[1][3] == "undefined: no item was rated by two or more raters"


def test_csv_keeps_the_filters(pair_campaign, senior):
    response = _client(senior).get(f"{_url(pair_campaign.pk)}?since=2000-01-01")
    assert "?since=2000-01-01&amp;format=csv&amp;table=criteria" in response.content.decode()


def test_empty_campaign_says_what_to_do_next(taxonomy, curator, counselor):
    campaign, _ = make_campaign(curator, [counselor], 2)
    text = _client(curator).get(_url(campaign.pk)).content.decode()
    assert 'id="agreement-empty"' in text and "No reviews" in text and "review next" in text
    text = _client(counselor).get(_url(campaign.pk)).content.decode()
    assert "You have no reviews in this campaign" in text


def test_tables_are_sortable_by_value_with_undefined_empty(krippendorff_campaign, senior):
    campaign, _ = krippendorff_campaign
    text = _client(senior).get(_url(campaign.pk)).content.decode()
    assert 'src="/static/js/dashboards.js"' in text and 'class="queue sortable"' in text
    assert 'data-sort="0.81' in text  # alpha, by its full value
    assert 'data-sort=""' in text  # an undefined value has an empty sort key: last, whatever the direction


def test_filters_are_offered_and_kept(pair_campaign, senior, counselor):
    ModelSpec.objects.create(name="other", path="bundled:x")
    text = _client(senior).get(f"{_url(pair_campaign.pk)}?sub_emotion=anxiety.1").content.decode()
    assert '<option value="anxiety.1" selected>' in text and 'name="model"' in text
    assert "sub_emotion=anxiety.1&amp;format=csv&amp;table=criteria" in text
    # Counselors are offered no model filter, and one in the URL is refused.
    assert 'name="model"' not in _client(counselor).get(_url(pair_campaign.pk)).content.decode()
    response = _client(counselor).get(f"{_url(pair_campaign.pk)}?model=x")
    assert response.status_code == 400 and "is not a filter of this page" in response.content.decode()


@pytest.mark.parametrize("query", ["since=%C2%B9", "until=0000-01-01", "since=9999-12-31", "sub_emotion=" + "x" * 500])
def test_hostile_filter_values_are_a_page_never_500(pair_campaign, senior, query):
    client = Client(raise_request_exception=False)
    client.force_login(senior)
    assert client.get(f"{_url(pair_campaign.pk)}?{query}").status_code in (200, 400)
