"""A whole blind campaign in Chromium: three counselors, each in a browser of their own, share 30 dialogues (k = 2)
with the keyboard; one of them disagrees now and then; a senior clinician adjudicates. No item is over-served,
nobody is served an item twice, and every review typed is recorded once."""

import pytest
from django.db.models import Count
from playwright.sync_api import expect

from annotations.models import Adjudication, Assignment, CampaignItem, Review
from annotations.services import campaigns
from generation.models import Candidate
from generation.services.taxonomy import taxonomy_load
from psyroom_admin import roles
from tests import factories

from .conftest import login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ITEMS = 30
K = 2


def _review_one(page, live_server, campaign, *, reject: bool) -> bool:
    """Review the item on screen with the keyboard; False when the campaign has nothing left for this person."""
    if page.locator("text=Nothing left for you in this campaign").count():
        return False
    url = page.url
    assert "/items/" in url, url
    page.locator("fieldset.criterion").first.focus()
    for score in "44444":
        page.keyboard.press(score)
    if reject:
        page.fill("#review-form textarea[name=comment]", "The counselor gives advice before listening.")
        page.locator("fieldset.criterion").first.focus()
    page.keyboard.press("r" if reject else "a")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(lambda now: now != url)
    return True


def test_three_counselors_and_a_senior_clinician_run_a_blind_campaign(live_server, browser):
    taxonomy_load()
    counselors = [factories.make_user(roles.COUNSELOR, username=f"counselor-{name}") for name in ("ada", "ben", "cy")]
    senior = factories.make_user(roles.SENIOR_CLINICIAN)
    dialogues = [factories.make_candidate() for _ in range(ITEMS)]
    campaign = campaigns.campaign_create(
        creator=factories.make_user(roles.CURATOR),
        name="Blind run",
        kind="dialogue",
        overlap=K,
        members=[*counselors, senior],
        candidate_ids=[d.pk for d in dialogues],
    )
    assert campaign.blind

    pages = []
    for counselor in counselors:
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        context.set_default_timeout(15_000)
        page = context.new_page()
        login(page, live_server.url, counselor.username, factories.PASSWORD)
        # Opening "next" claims nothing (a GET); its button POSTs the claim.
        page.goto(f"{live_server.url}/campaigns/{campaign.pk}/next/")
        page.click("#claim-next")
        page.wait_for_url(f"**/campaigns/{campaign.pk}/items/**")
        pages.append(page)

    # The counselors take turns, one item at a time, so that they work the front of the queue together. The third
    # rejects every third item they get: those items go to adjudication.
    working = set(range(3))
    submitted = [0, 0, 0]
    while working:
        for who in sorted(working):
            page = pages[who]
            # Blind: nobody sees another counselor's review (or name) on the review screen.
            others = [c.username for c in counselors if c != counselors[who]]
            assert not [name for name in others if name in page.content()]
            if _review_one(page, live_server, campaign, reject=who == 2 and submitted[who] % 3 == 0):
                submitted[who] += 1
            else:
                working.discard(who)
    assert sum(submitted) == ITEMS * K

    # Nothing over-served, nothing served twice, every review recorded once.
    assert Review.objects.filter(campaign=campaign).count() == ITEMS * K
    per_item = CampaignItem.objects.filter(campaign=campaign).annotate(n=Count("assignments"))
    assert sorted({item.n for item in per_item}) == [K]
    assert not (
        Assignment.objects.filter(item__campaign=campaign)
        .values("item", "counselor")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .exists()
    )
    disputed = set(
        Review.objects.filter(campaign=campaign, decision=Review.Decision.REJECT).values_list("candidate", flat=True)
    )
    assert disputed
    assert (
        set(
            CampaignItem.objects.filter(campaign=campaign, state=CampaignItem.State.ADJUDICATION).values_list(
                "candidate", flat=True
            )
        )
        == disputed
    )

    # The senior clinician settles each disagreement, with every review side by side, names visible.
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(15_000)
    senior_page = context.new_page()
    login(senior_page, live_server.url, senior.username, factories.PASSWORD)
    for _ in disputed:
        senior_page.goto(f"{live_server.url}/adjudication/")
        senior_page.locator("a.adjudication-link").first.click()
        expect(senior_page.locator("#reviews-side-by-side")).to_contain_text(counselors[2].username)
        senior_page.check("#adjudication-form input[name=decision][value=approve]")
        senior_page.fill("#adjudication-form textarea[name=reason]", "Two of three reasons hold; the advice is mild.")
        senior_page.click("#adjudicate-submit")
        senior_page.wait_for_url("**/adjudication/")
    expect(senior_page.locator("table.adjudication-queue")).to_contain_text("Nothing waits for adjudication.")

    assert Adjudication.objects.filter(campaign=campaign).count() == len(disputed)
    assert not CampaignItem.objects.filter(campaign=campaign).exclude(state=CampaignItem.State.DECIDED).exists()
    assert Candidate.objects.filter(pk__in=[d.pk for d in dialogues], status=Candidate.Status.APPROVED).count() == ITEMS
