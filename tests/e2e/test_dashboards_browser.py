"""The dashboards in Chromium: each role opens what it may, Plotly draws the charts under the strict CSP (the
``page`` fixture fails on any violation), and a counselor sees neither the pages for others nor their names."""

import pytest
from playwright.sync_api import expect

from generation.services.taxonomy import taxonomy_load
from tests import factories
from tests.dashboards.conftest import add_review, make_campaign

from .conftest import login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_curator_sees_charts_and_counselor_only_own_numbers(live_server, page):
    taxonomy_load()
    curator = factories.make_user("curator")
    counselor = factories.counselor(first_name="Ann", last_name="Own")
    other = factories.counselor(first_name="Ben", last_name="Other")
    campaign, dialogues = make_campaign(curator, [counselor, other], 3)
    for dialogue, score in zip(dialogues, [2, 4, 5], strict=True):
        add_review(campaign, dialogue, counselor, score)
        add_review(campaign, dialogue, other, score)

    login(page, live_server.url, curator.username, factories.PASSWORD)
    page.goto(f"{live_server.url}/dashboards/coverage/")
    expect(page.locator("#chart-coverage .main-svg").first).to_be_visible()
    expect(page.locator("#coverage-fill")).to_be_visible()
    page.screenshot(path="/tmp/psyroom-dashboards-coverage.png", full_page=True)
    page.goto(f"{live_server.url}/dashboards/campaigns/{campaign.pk}/agreement/")
    expect(page.locator("#chart-drift .main-svg").first).to_be_visible()
    page.goto(f"{live_server.url}/dashboards/calibration/")
    expect(page.locator("#calibration-empty")).to_be_visible()
    page.goto(f"{live_server.url}/dashboards/funnel/")
    expect(page.locator("#table-throughput")).to_contain_text("Ben Other")

    page.context.clear_cookies()
    login(page, live_server.url, counselor.username, factories.PASSWORD)
    page.goto(f"{live_server.url}/dashboards/funnel/")
    expect(page.locator("#table-throughput")).to_contain_text("Ann Own")
    expect(page.locator("main")).not_to_contain_text("Ben Other")
    expect(page.locator("#table-stages")).to_have_count(0)
    response = page.goto(f"{live_server.url}/dashboards/calibration/")
    assert response is not None and response.status == 403
