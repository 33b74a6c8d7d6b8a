"""A counselor works a campaign in Chromium: keyboard-only rating, a turn edit, drafts across reloads, risk sign-off."""

import re
import time

import pytest
from playwright.sync_api import expect

from annotations.models import Draft, Review
from annotations.rubrics import DIALOGUE_RUBRIC
from annotations.services import campaigns
from generation.models import Candidate
from generation.services.taxonomy import taxonomy_load
from psyroom_admin import roles
from tests import factories

from .conftest import login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

KEYS = [c["key"] for c in DIALOGUE_RUBRIC["criteria"]]
EDITED = "Counselor turn 0: That sounds really hard. What has helped you before?"
SCREENSHOTS = "/tmp/psyroom-campaign"


def _campaign(members, candidates, overlap=1):
    curator = factories.make_user(roles.CURATOR)
    return campaigns.campaign_create(
        creator=curator,
        name="Exam anxiety",
        kind="dialogue",
        overlap=overlap,
        members=members,
        guidelines="Rate **each** criterion.",
        candidate_ids=[c.pk for c in candidates],
    )


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _open_next(page, live_server, campaign):
    # "Review next" is a form's button (a POST with the CSRF token): only a POST claims.
    page.goto(f"{live_server.url}/campaigns/")
    page.click(f"tr[data-campaign='{campaign.pk}'] button.start-reviewing")
    page.wait_for_url(f"**/campaigns/{campaign.pk}/items/**")


def test_a_counselor_rates_with_the_keyboard_edits_a_turn_and_submits(live_server, page):
    taxonomy_load()
    counselor = factories.counselor()
    first, second = factories.make_candidate(), factories.make_candidate()
    campaign = _campaign([counselor], [first, second])

    login(page, live_server.url, counselor.username, factories.PASSWORD)
    _open_next(page, live_server, campaign)
    assert page.url.endswith(f"/items/{first.pk}/")
    # The next item is prefetched while this one is reviewed.
    expect(page.locator("link#prefetch-next")).to_have_attribute(
        "href", f"/campaigns/{campaign.pk}/items/{second.pk}/preview/"
    )

    page.keyboard.press("?")
    expect(page.locator("#shortcut-help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#shortcut-help")).to_be_hidden()

    # Rate with the keyboard only: the first criterion has the focus, each number moves on to the next.
    page.locator("fieldset.criterion").first.focus()
    for score in "45345":
        page.keyboard.press(score)
    page.keyboard.press("ArrowUp")  # from the last criterion back to the fourth: 4 becomes 2
    page.keyboard.press("2")
    page.keyboard.press("a")
    expect(page.locator("#rated-count")).to_have_text("5 of 5 criteria rated")
    expect(page.locator("input[name=decision][value=approve]")).to_be_checked()

    # Edit turn 2 from the keyboard: focus it, e opens the HTMX edit form.
    page.locator(".turn[data-index='1']").focus()
    page.keyboard.press("e")
    turn = page.locator(".turn[data-index='1']")
    turn.locator("textarea[name=text]").fill(EDITED)
    turn.locator("select[name=category]").select_option("clinical")
    turn.locator("button.save-turn").click()
    expect(page.locator(".turn[data-index='1'] .turn-diff ins").first).to_have_text("really ")
    expect(page.locator(".turn[data-index='1'] .turn-diff del").first).to_be_visible()
    expect(page.locator("#review-form input[name=version]")).to_have_value("2")

    page.locator("fieldset.criterion").first.focus()
    page.keyboard.press("Control+Enter")
    page.wait_for_url(f"**/items/{second.pk}/")
    page.screenshot(path=f"{SCREENSHOTS}-next.png", full_page=True)

    review = Review.objects.get(reviewer=counselor)
    assert review.scores == {KEYS[0]: 4, KEYS[1]: 5, KEYS[2]: 3, KEYS[3]: 2, KEYS[4]: 5}
    assert (review.decision, review.campaign, review.candidate) == ("approve", campaign, first)
    assert review.revision.number == 1 and review.idempotency_key
    revision = first.revisions.get(number=1)
    assert (revision.content["turns"][1]["text"], revision.category, revision.author) == (EDITED, "clinical", counselor)
    assert not Draft.objects.filter(user=counselor, candidate=first).exists()


def test_a_draft_survives_a_reload(live_server, page):
    taxonomy_load()
    counselor = factories.counselor()
    candidate = factories.make_candidate()
    campaign = _campaign([counselor], [candidate])

    login(page, live_server.url, counselor.username, factories.PASSWORD)
    _open_next(page, live_server, campaign)
    page.locator("fieldset.criterion").first.focus()
    page.keyboard.press("3")
    page.keyboard.press("2")
    page.keyboard.press("r")
    page.fill("textarea[name=comment]", "Turn 3 moves on too fast.")
    expect(page.locator("#draft-status")).to_have_text("Draft saved")
    assert _wait_for(lambda: Draft.objects.filter(user=counselor, candidate=candidate).exists())
    draft = Draft.objects.get(user=counselor, candidate=candidate).data
    assert draft["comment"] == "Turn 3 moves on too fast."
    assert draft["scores"] == {KEYS[0]: "3", KEYS[1]: "2"} and draft["decision"] == "reject"
    key = page.locator("input[name=idempotency_key]").input_value()
    assert key.startswith("assignment-")

    page.reload()
    expect(page.locator("textarea[name=comment]")).to_have_value("Turn 3 moves on too fast.")
    expect(page.locator(f"input[name=score_{KEYS[0]}][value='3']")).to_be_checked()
    expect(page.locator(f"input[name=score_{KEYS[1]}][value='2']")).to_be_checked()
    expect(page.locator("input[name=decision][value=reject]")).to_be_checked()

    # A closed tab loses this browser's copy: the server's draft brings it back, with the same idempotency key.
    page.evaluate("window.localStorage.clear()")
    page.reload()
    expect(page.locator("textarea[name=comment]")).to_have_value("Turn 3 moves on too fast.")
    expect(page.locator(f"input[name=score_{KEYS[1]}][value='2']")).to_be_checked()
    expect(page.locator("input[name=idempotency_key]")).to_have_value(key)


def test_a_flagged_item_cannot_be_approved_until_a_senior_clinician_signs_it_off(live_server, page, browser):
    taxonomy_load()
    counselor = factories.counselor()
    senior = factories.make_user(roles.SENIOR_CLINICIAN)
    content = factories.dialogue_content()
    content["turns"][0]["text"] = "Sometimes I think everyone would be better off dead without me."
    risky = factories.make_candidate(content=content)
    campaign = _campaign([counselor, senior], [risky])

    login(page, live_server.url, counselor.username, factories.PASSWORD)
    _open_next(page, live_server, campaign)
    expect(page.locator("#content-warning")).to_be_visible()
    expect(page.locator("#item-content")).to_be_hidden()
    page.click("#show-content")
    expect(page.locator(".turn[data-index='0'] .turn-text")).to_contain_text("better off dead")
    approve = page.locator("input[name=decision][value=approve]")
    expect(approve).to_be_disabled()
    expect(page.locator("#approve-blocked")).to_contain_text("senior clinician must sign it off")
    page.keyboard.press("a")
    expect(approve).not_to_be_checked()

    # A senior clinician signs it off on the adjudication page, in a browser of their own.
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(15_000)
    senior_page = context.new_page()
    login(senior_page, live_server.url, senior.username, factories.PASSWORD)
    senior_page.goto(f"{live_server.url}/adjudication/")
    senior_page.click("a.adjudication-link")
    senior_page.fill("#adjudication-sign-off textarea[name=note]", "The counselor asks about safety in turn 2.")
    senior_page.click("#sign-off")
    expect(senior_page.locator(".risk-cleared")).to_contain_text(senior.username)
    context.close()

    page.reload()
    page.click("#show-content")
    expect(approve).to_be_enabled()
    page.locator("fieldset.criterion").first.focus()
    for score in "44444":
        page.keyboard.press(score)
    page.keyboard.press("a")
    expect(approve).to_be_checked()
    page.keyboard.press("Control+Enter")
    page.wait_for_url(f"**/campaigns/{campaign.pk}/next/")
    review = Review.objects.get(reviewer=counselor)
    assert (review.decision, review.candidate) == ("approve", risky)
    risky.refresh_from_db()
    assert risky.flags.get().signed_off_by == senior
    assert (risky.status, risky.approved_revision.number) == (Candidate.Status.APPROVED, 0)  # k=1


def test_a_submit_whose_answer_is_lost_is_retried_and_recorded_once(live_server, page):
    taxonomy_load()
    counselor = factories.counselor()
    candidate = factories.make_candidate()
    campaign = _campaign([counselor], [candidate])
    login(page, live_server.url, counselor.username, factories.PASSWORD)
    _open_next(page, live_server, campaign)

    attempts = []

    def lose_the_first_answer(route):
        # The server records the review, then the connection drops before the browser hears back.
        attempts.append(route.request.post_data)
        if len(attempts) == 1:
            route.fetch()
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/submit/", lose_the_first_answer)
    page.locator("fieldset.criterion").first.focus()
    for score in "33333":
        page.keyboard.press(score)
    page.keyboard.press("n")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(f"**/campaigns/{campaign.pk}/next/")
    expect(page.locator("#queue-empty")).to_be_visible()
    keys = [re.search(r'name="idempotency_key"\r\n\r\n([^\r]+)', body).group(1) for body in attempts]
    assert len(keys) == 2 and keys[0] == keys[1]
    review = Review.objects.get(reviewer=counselor)
    assert (review.decision, review.candidate) == ("needs_revision", candidate)
    assert Review.objects.count() == 1
