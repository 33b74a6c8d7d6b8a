"""The review desk in Chromium: side by side at 1440 px with panes that scroll on their own, stacked at 800 px, the
page open at the top of the dialogue, the item panel and the help one key away, and the time a scripted counselor
takes from "next" to a submitted review (printed)."""

import statistics
import time

import pytest
from playwright.sync_api import expect

from annotations.models import Review
from annotations.services import campaigns
from generation.models import Scenario, SubEmotion
from generation.services.taxonomy import taxonomy_load
from psyroom_admin import roles
from tests import factories

from .conftest import login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = "/tmp/psyroom-desk"
ITEMS = 5


def _setup(items: int = ITEMS):
    taxonomy_load()
    counselor = factories.counselor()
    scenario = Scenario.objects.create(
        sub_emotion=SubEmotion.objects.get(key="anxiety.1"),
        title="Finals week",
        description="A student who cannot sleep before her finals.",
    )
    # 36 turns each: the length at which the old page opened scrolled to the rubric at the bottom.
    candidates = [
        factories.make_candidate(content=factories.dialogue_content(18, prefix=f"Item {i}. "), scenario=scenario)
        for i in range(items)
    ]
    campaign = campaigns.campaign_create(
        creator=factories.make_user(roles.CURATOR),
        name="Exam anxiety",
        kind="dialogue",
        overlap=1,
        members=[counselor],
        guidelines="Rate **each** criterion; flag any risk.",
        candidate_ids=[c.pk for c in candidates],
    )
    return counselor, campaign


def _box(page, selector):
    return page.locator(selector).bounding_box()


def _scroll_top(page, selector):
    return page.evaluate(f"document.querySelector('{selector}').scrollTop")


def _open_next(page, live_server, campaign):
    page.goto(f"{live_server.url}/campaigns/")
    page.click(f"tr[data-campaign='{campaign.pk}'] button.start-reviewing")
    page.wait_for_url(f"**/campaigns/{campaign.pk}/items/**")


def test_side_by_side_at_1440_stacked_at_800_and_open_at_the_top(live_server, page):
    counselor, campaign = _setup(items=1)
    page.set_viewport_size({"width": 1440, "height": 900})
    login(page, live_server.url, counselor.username, factories.PASSWORD)
    _open_next(page, live_server, campaign)

    # Open at the top of the dialogue, the first criterion focused for the keys.
    expect(page.locator("fieldset.criterion").first).to_be_focused()
    assert page.evaluate("window.scrollY") == 0
    assert _scroll_top(page, "#desk-item") == 0 and _scroll_top(page, "#desk-review") == 0
    assert page.locator(".turn").first.is_visible()
    first_turn = _box(page, ".turn[data-index='0']")
    assert 0 < first_turn["y"] < 900

    item, review = _box(page, "#desk-item"), _box(page, "#desk-review")
    assert review["x"] >= item["x"] + item["width"], (item, review)  # side by side
    assert abs(review["y"] - item["y"]) < 2
    assert item["height"] <= 900 and review["height"] <= 900

    page.screenshot(path=f"{SCREENSHOTS}-1440.png")  # as it opens

    # Each pane scrolls on its own: the dialogue goes to its end, the rubric stays where it was.
    page.hover("#desk-item")
    page.mouse.wheel(0, 5000)
    # Polled from here: wait_for_function evaluates a string, which the page's CSP (no eval) refuses.
    deadline = time.monotonic() + 5
    while _scroll_top(page, "#desk-item") < 1000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _scroll_top(page, "#desk-item") >= 1000
    assert _scroll_top(page, "#desk-review") == 0
    assert page.locator("fieldset.criterion").first.is_visible()
    # The page head scrolled away (at most its height), the review pane stuck at the top of the screen.
    assert page.evaluate("window.scrollY") < 200
    assert 0 <= _box(page, "#desk-review")["y"] < 40
    page.screenshot(path=f"{SCREENSHOTS}-1440-scrolled.png")

    # The item panel (i) and the help (?) are one key away; Esc closes either.
    page.keyboard.press("i")
    panel = page.locator("#item-panel")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("Finals week")
    expect(panel).to_contain_text("anxiety.1")
    expect(panel.locator("strong", has_text="each")).to_be_visible()
    page.screenshot(path=f"{SCREENSHOTS}-panel.png")
    page.keyboard.press("1")  # ignored while the panel is open
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(page.locator("fieldset.criterion").first).to_be_focused()
    expect(page.locator("fieldset.criterion input:checked")).to_have_count(0)
    page.keyboard.press("?")
    expect(page.locator("#shortcut-help")).to_be_visible()
    expect(page.locator("#shortcut-help")).to_contain_text("sub-emotion, scenario and guidelines")
    page.screenshot(path=f"{SCREENSHOTS}-help.png")
    page.keyboard.press("Escape")
    expect(page.locator("#shortcut-help")).to_be_hidden()

    # j / k walk the turns.
    page.keyboard.press("j")
    expect(page.locator(".turn[data-index='0']")).to_be_focused()
    page.keyboard.press("j")
    expect(page.locator(".turn[data-index='1']")).to_be_focused()
    page.keyboard.press("k")
    expect(page.locator(".turn[data-index='0']")).to_be_focused()

    # Narrow: one column, the dialogue first, the page still at the top.
    page.set_viewport_size({"width": 800, "height": 900})
    page.reload()
    assert page.evaluate("window.scrollY") == 0
    item, review = _box(page, "#desk-item"), _box(page, "#desk-review")
    assert review["y"] >= item["y"] + item["height"] - 1, (item, review)  # stacked
    assert abs(review["x"] - item["x"]) < 2
    assert page.evaluate("getComputedStyle(document.querySelector('#desk-item')).overflowY") == "visible"
    page.screenshot(path=f"{SCREENSHOTS}-800.png")


def test_a_scripted_counselor_from_next_to_a_submitted_review(live_server, page):
    counselor, campaign = _setup()
    page.set_viewport_size({"width": 1440, "height": 900})
    login(page, live_server.url, counselor.username, factories.PASSWORD)
    page.goto(f"{live_server.url}/campaigns/")

    timings = []
    # "next": the first from the campaign list's button; after a submit the page claims the next item itself, so
    # each later item's clock starts when the previous submit was answered.
    next_at = time.perf_counter()
    page.click(f"tr[data-campaign='{campaign.pk}'] button.start-reviewing")
    for _ in range(ITEMS):
        page.wait_for_selector("fieldset.criterion:focus")
        before = page.url
        for score in "45345":
            page.keyboard.press(score)
        page.keyboard.press("a")
        with page.expect_response(lambda r: r.url.endswith("/submit/") and r.request.method == "POST") as answer:
            page.keyboard.press("Control+Enter")
        assert answer.value.status == 200
        submitted_at = time.perf_counter()
        timings.append((submitted_at - next_at) * 1000)
        next_at = submitted_at
        page.wait_for_url(lambda url, before=before: url != before)
    # The queue is empty: the page that says so.
    page.wait_for_url(f"**/campaigns/{campaign.pk}/next/")

    print(
        f"\nreview desk, next -> submitted review ({ITEMS} items, keyboard only, Chromium, live server): "
        f"median {statistics.median(timings):.0f} ms, max {max(timings):.0f} ms, each "
        + ", ".join(f"{t:.0f}" for t in timings)
    )
    reviews = Review.objects.filter(reviewer=counselor, campaign=campaign)
    assert reviews.count() == ITEMS
    assert {r.decision for r in reviews} == {"approve"}
    # In the rubric's order (PostgreSQL's jsonb keeps a dict's keys in its own order, not the order written).
    keys = [criterion["key"] for criterion in campaign.rubric.criteria]
    assert all([r.scores[key] for key in keys] == [4, 5, 3, 4, 5] for r in reviews)
