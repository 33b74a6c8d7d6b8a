"""A curator creates a campaign in Chromium with the pickers, the count of what they select following each change."""

import pytest
from playwright.sync_api import expect

from annotations.models import Campaign
from generation.models import Scenario, SubEmotion
from generation.services.taxonomy import taxonomy_load
from psyroom_admin import roles
from tests import factories

from .conftest import login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = "/tmp/psyroom-campaign-form"


def test_a_curator_picks_filters_and_sees_the_count_follow(live_server, page):
    taxonomy_load()
    curator = factories.make_user(roles.CURATOR)
    counselor = factories.counselor()
    scenario = Scenario.objects.create(
        sub_emotion=SubEmotion.objects.get(key="anxiety.1"), title="Finals week", description="Cannot sleep."
    )
    picked = [factories.make_candidate(scenario=scenario) for _ in range(2)]
    for _ in range(3):
        factories.make_candidate(sub_emotion_key="anxiety.2")

    page.set_viewport_size({"width": 1280, "height": 1000})
    login(page, live_server.url, curator.username, factories.PASSWORD)
    page.goto(f"{live_server.url}/campaigns/new/")
    count = page.locator("#selection-count-value")
    expect(count).to_have_text("5")  # nothing picked: everything waiting for review

    page.select_option("select[name=sub_emotions]", ["anxiety.1"])
    expect(count).to_have_text("2")
    page.select_option("select[name=sub_emotions]", ["anxiety.1", "anxiety.2"])
    expect(count).to_have_text("5")
    page.select_option("select[name=scenarios]", [str(scenario.pk)])
    expect(count).to_have_text("2")
    page.select_option("select[name=status]", "approved")
    expect(count).to_have_text("0")
    page.select_option("select[name=status]", "")
    expect(count).to_have_text("2")
    page.screenshot(path=f"{SCREENSHOTS}.png", full_page=True)

    page.fill("input[name=name]", "Finals")
    page.check(f"input[name=members][value='{counselor.pk}']")
    page.click("#create-campaign")
    page.wait_for_url(f"{live_server.url}/campaigns/")
    campaign = Campaign.objects.get(name="Finals")
    assert set(campaign.items.values_list("candidate_id", flat=True)) == {c.pk for c in picked}
    assert campaign.selection["filters"] == {"sub_emotions": ["anxiety.1", "anxiety.2"], "scenarios": [scenario.pk]}
