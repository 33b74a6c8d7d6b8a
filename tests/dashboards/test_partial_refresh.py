"""A filter change refreshes the results only (htmx), the URL keeps the filters, and the pages work without
JavaScript: the same URL answers the plain GET form with the whole page."""

import html

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/dashboards/"}


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _agreement(campaign_id: int) -> str:
    return f"/dashboards/campaigns/{campaign_id}/agreement/"


def test_the_filter_form_asks_htmx_for_the_results_and_pushes_the_url(krippendorff_campaign, senior):
    campaign, _ = krippendorff_campaign
    text = _client(senior).get(_agreement(campaign.pk)).content.decode()
    form = text[text.index('<form method="get" class="filters card" id="agreement-filters"') :]
    form = form[: form.index(">")]
    assert f'hx-get="{_agreement(campaign.pk)}"' in form
    assert 'hx-target="#dashboard-results"' in form and 'hx-push-url="true"' in form
    assert 'hx-trigger="change, submit"' in form
    # Without JavaScript the form is a plain GET of the same page.
    assert text.count('id="dashboard-results"') == 1 and "<html" in text
    assert "{#" not in text and "{%" not in text


@pytest.mark.parametrize("path", ["agreement", "/dashboards/calibration/", "/dashboards/funnel/"])
def test_htmx_gets_the_results_only_and_a_plain_get_the_page(krippendorff_campaign, senior, path):
    campaign, raters = krippendorff_campaign
    url = _agreement(campaign.pk) if path == "agreement" else path
    client = _client(senior)
    page = client.get(url)
    part = client.get(url, **HTMX)
    assert page.status_code == part.status_code == 200
    text = part.content.decode()
    assert text.lstrip().startswith('<div id="dashboard-results"')
    assert "<html" not in text and '<form method="get"' not in text and 'class="topbar"' not in text
    assert "HX-Request" in page["Vary"] and "HX-Request" in part["Vary"]
    # The part is the page's own results section, as the page shows it.
    assert 'id="table-' in text or '-empty"' in text
    assert text.strip() in page.content.decode()


def test_htmx_applies_the_filters_and_the_csv_links_keep_them(pair_campaign, senior):
    campaign = pair_campaign[0] if isinstance(pair_campaign, tuple) else pair_campaign
    since = "2000-01-01"
    text = html.unescape(_client(senior).get(f"{_agreement(campaign.pk)}?since={since}", **HTMX).content.decode())
    assert f"since={since}&format=csv&table=raters" in text
    future = _client(senior).get(f"{_agreement(campaign.pk)}?since=2999-01-01", **HTMX)
    assert future.status_code == 200
    assert 'id="agreement-empty"' in future.content.decode()
    assert "<html" not in future.content.decode()


def test_bad_filters_through_htmx_are_the_message_in_the_results(krippendorff_campaign, senior):
    campaign, _ = krippendorff_campaign
    for query, message in [
        ("since=yesterday", '"since": Enter a valid date.'),
        ("colour=x", '"colour" is not a filter of this page'),
        ("sub_emotion=" + "x" * 500, '"sub_emotion"'),
    ]:
        response = _client(senior).get(f"{_agreement(campaign.pk)}?{query}", **HTMX)
        text = html.unescape(response.content.decode())
        # 400 is swapped in (base.html's htmx responseHandling), so the message replaces the stale results.
        assert response.status_code == 400, query
        assert text.lstrip().startswith('<div id="dashboard-results"') and message in text
        assert 'id="table-' not in text


def test_a_history_restore_gets_the_whole_page(krippendorff_campaign, senior):
    campaign, _ = krippendorff_campaign
    response = _client(senior).get(_agreement(campaign.pk), HTTP_HX_HISTORY_RESTORE_REQUEST="true", **HTMX)
    assert response.status_code == 200 and "<html" in response.content.decode()


def test_the_counselors_part_has_their_rows_only_and_no_other_names(krippendorff_campaign):
    campaign, raters = krippendorff_campaign
    text = _client(raters[0]).get(_agreement(campaign.pk), **HTMX).content.decode()
    assert 'id="table-raters"' in text and 'id="table-pairs"' not in text and 'id="table-criteria"' not in text
    assert raters[0].get_full_name() in text
    for other in raters[1:]:
        assert other.first_name not in text


def test_a_counselor_cannot_get_the_calibration_part(krippendorff_campaign):
    _, raters = krippendorff_campaign
    response = _client(raters[0]).get("/dashboards/calibration/", **HTMX)
    assert response.status_code == 403
    assert 'id="dashboard-results"' not in response.content.decode()
