"""Every dashboard in Chromium as each role (admin, curator, senior clinician, counselor): what each may and may not
see, a filter change refreshing the results in place (htmx) with the filters in the URL, and the same filter without
JavaScript. Screenshots of every page go to ``PSYROOM_SCREENSHOTS`` (default ``/tmp/psyroom-dashboard-screens``)."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from generation.models import Candidate, GenerationRun, SubEmotion
from generation.services.modelspecs import modelspec_get_default
from generation.services.taxonomy import taxonomy_load
from psyroom_admin import roles
from tests import factories
from tests.dashboards.conftest import _attempt, add_review, make_campaign

from .conftest import login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCREENS = Path(os.environ.get("PSYROOM_SCREENSHOTS", "/tmp/psyroom-dashboard-screens"))
# 24 items (pairs of raters need 20 shared ones for a kappa), each rated by the three counselors.
ANN = [1, 2, 3, 4, 5, 3] * 4
BEN = [1, 2, 3, 5, 5, 2] * 4
CAI = [2, 2, 3, 4, 4, 3] * 4


def _world() -> dict:
    taxonomy_load()
    people = {
        "admin": factories.make_user(roles.ADMIN, first_name="Ada", last_name="Admin"),
        "curator": factories.make_user(roles.CURATOR, first_name="Cora", last_name="Curator"),
        "senior": factories.make_user(roles.SENIOR_CLINICIAN, first_name="Sena", last_name="Senior"),
    }
    ann = factories.counselor(first_name="Annika", last_name="Ownrow")
    ben = factories.counselor(first_name="Benedikt", last_name="Otherrater")
    cai = factories.counselor(first_name="Cairo", last_name="Thirdrater")
    blind, dialogues = make_campaign(people["curator"], [ann, ben, cai], len(ANN), blind=True)
    run = GenerationRun.objects.create(
        kind="dialogue",
        count=len(dialogues),
        model_spec=modelspec_get_default(),
        prompt_version="v1",
        sub_emotion=SubEmotion.objects.get(key="anxiety.1"),
        targets=[{"sub_emotion": "anxiety.1", "scenario": None}],
    )
    for i, dialogue in enumerate(dialogues):
        ai = 1 + i % 5
        ai_review = {
            "supervisor": {"threshold": 3, "attempts": [_attempt(ai)], "score": float(ai)},
            "emotion": {"label": "anxiety.1" if i % 3 else "fear.0", "target": "anxiety.1"},
        }
        Candidate.objects.filter(pk=dialogue.pk).update(run=run, run_index=i, ai_review=ai_review)
        for rater, scores in ((ann, ANN), (ben, BEN), (cai, CAI)):
            add_review(blind, dialogue, rater, scores[i], flags=["self_harm"] if rater == cai and i == 3 else ())
    # A campaign without Ann: she may not open it, nor see it listed.
    named, others = make_campaign(people["curator"], [ben, cai], 3, blind=False)
    for dialogue in others:
        add_review(named, dialogue, ben, 4)
        add_review(named, dialogue, cai, 3)
    return {**people, "ann": ann, "ben": ben, "cai": cai, "blind": blind, "named": named}


def _shot(page: Page, name: str) -> None:
    # No template syntax may leak onto the page (a comment or tag Django did not read).
    text = page.locator("body").inner_text()
    assert "{#" not in text and "{%" not in text and "{{" not in text, f"template syntax on {page.url}"
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"{name}.png"), full_page=True)


def _full(user) -> str:
    return user.get_full_name()


@pytest.mark.parametrize("role", ["admin", "curator", "senior"])
def test_roles_that_see_everything(live_server, page, role):
    world = _world()
    base = live_server.url
    login(page, base, world[role].username, factories.PASSWORD)
    counselors = [_full(world[name]) for name in ("ann", "ben", "cai")]

    page.goto(f"{base}/dashboards/")
    rows = page.locator("tr.dashboard-campaign")
    expect(rows).to_have_count(2)
    expect(page.locator("table.dashboard-campaigns thead")).to_contain_text("Alpha (decision)")
    expect(page.locator("#dashboard-links")).to_contain_text("AI against clinicians")
    _shot(page, f"{role}-index")

    page.goto(f"{base}/dashboards/campaigns/{world['blind'].pk}/agreement/")
    expect(page.locator("#agreement-summary")).to_contain_text("72 reviews of 24 items by 3 raters")
    expect(page.locator("#table-criteria")).to_be_visible()
    expect(page.locator("#table-risk_flags")).to_contain_text("Self-harm")
    # Senior clinicians, curators and admins see every rater by name, blind campaign or not.
    for name in counselors:
        expect(page.locator("#table-raters")).to_contain_text(name)
    expect(page.locator("#table-pairs tbody tr")).to_have_count(3)
    expect(page.locator("#chart-drift .main-svg").first).to_be_visible()
    _shot(page, f"{role}-agreement")

    page.goto(f"{base}/dashboards/calibration/")
    expect(page.locator("#calibration-summary")).to_contain_text("24 generated dialogues")
    expect(page.locator("#table-criteria")).to_be_visible()
    expect(page.locator("#charts .main-svg").first).to_be_visible()
    _shot(page, f"{role}-calibration")

    page.goto(f"{base}/dashboards/coverage/")
    expect(page.locator("#chart-coverage .main-svg").first).to_be_visible()
    # Only curators and admins start generation runs.
    expect(page.locator("#coverage-fill")).to_have_count(0 if role == "senior" else 1)
    _shot(page, f"{role}-coverage")

    page.goto(f"{base}/dashboards/funnel/")
    expect(page.locator("#table-stages")).to_be_visible()
    for name in counselors:
        expect(page.locator("#table-throughput")).to_contain_text(name)
    _shot(page, f"{role}-funnel")


def test_counselor_sees_only_own_numbers_and_no_other_names(live_server, page):
    world = _world()
    base = live_server.url
    ann = world["ann"]
    login(page, base, ann.username, factories.PASSWORD)
    hidden = ["Benedikt", "Otherrater", "Cairo", "Thirdrater", world["ben"].username, world["cai"].username]

    def no_other_names() -> None:
        html = page.content()
        for text in hidden:
            assert text not in html, f"{text!r} shown to a counselor on {page.url}"

    page.goto(f"{base}/dashboards/")
    expect(page.locator("tr.dashboard-campaign")).to_have_count(1)
    expect(page.locator("tr.dashboard-campaign")).to_contain_text(world["blind"].name)
    expect(page.locator("table.dashboard-campaigns")).not_to_contain_text("Alpha")
    expect(page.locator("#dashboard-links")).not_to_contain_text("AI against clinicians")
    expect(page.locator("#dashboard-links")).not_to_contain_text("Coverage")
    no_other_names()
    _shot(page, "counselor-index")

    page.goto(f"{base}/dashboards/campaigns/{world['blind'].pk}/agreement/")
    expect(page.locator("#agreement-summary")).to_contain_text("Your 24 reviews of 24 items")
    expect(page.locator("#table-raters tbody tr")).to_have_count(1)
    expect(page.locator("#table-raters")).to_contain_text(_full(ann))
    for table in ("criteria", "risk_flags", "pairs"):
        expect(page.locator(f"#table-{table}")).to_have_count(0)
    expect(page.locator("#model-filter, select[name=model]")).to_have_count(0)
    no_other_names()
    _shot(page, "counselor-agreement")

    # A filter change (htmx) keeps her to her own rows too.
    page.select_option("select[name=sub_emotion]", "anxiety.1")
    page.wait_for_url(lambda url: "sub_emotion=anxiety.1" in url)
    expect(page.locator("#table-raters tbody tr")).to_have_count(1)
    no_other_names()

    for path in ("calibration/", "coverage/"):
        response = page.goto(f"{base}/dashboards/{path}")
        assert response is not None and response.status == 403, path
    response = page.goto(f"{base}/dashboards/campaigns/{world['named'].pk}/agreement/")
    assert response is not None and response.status == 404

    page.goto(f"{base}/dashboards/funnel/")
    expect(page.locator("#table-throughput tbody tr")).to_have_count(1)
    expect(page.locator("#table-throughput")).to_contain_text(_full(ann))
    expect(page.locator("#table-stages")).to_have_count(0)
    no_other_names()
    _shot(page, "counselor-funnel")


def test_a_filter_change_refreshes_the_results_in_place(live_server, page):
    world = _world()
    base = live_server.url
    login(page, base, world["senior"].username, factories.PASSWORD)
    url = f"{base}/dashboards/campaigns/{world['blind'].pk}/agreement/"
    page.goto(url)
    expect(page.locator("#table-criteria")).to_be_visible()
    # A mark on the window survives a partial refresh and not a page load.
    page.evaluate("window.notReloaded = true")
    page.select_option("select[name=sub_emotion]", "anxiety.2")
    page.wait_for_url(lambda url: "sub_emotion=anxiety.2" in url)
    expect(page.locator("#agreement-empty")).to_be_visible()
    assert page.evaluate("window.notReloaded === true")
    _shot(page, "senior-agreement-filtered")

    page.select_option("select[name=sub_emotion]", "anxiety.1")
    page.wait_for_url(lambda url: "sub_emotion=anxiety.1" in url)
    expect(page.locator("#table-criteria")).to_be_visible()
    expect(page.locator("#chart-drift .main-svg").first).to_be_visible()
    # The new tables sort too.
    expect(page.locator("#table-raters th button.sort-button").first).to_be_visible()
    assert page.evaluate("window.notReloaded === true")

    # The URL with the filters opens the same view.
    page.goto(page.url)
    expect(page.locator("select[name=sub_emotion]")).to_have_value("anxiety.1")
    expect(page.locator("#table-criteria")).to_be_visible()

    # A bad value in a filter is the message, in place of the results.
    page.goto(f"{base}/dashboards/calibration/")
    page.evaluate("window.notReloaded = true")
    page.fill("input[name=since]", "2030-01-02")
    page.fill("input[name=until]", "2030-01-01")
    page.locator("input[name=until]").dispatch_event("change")
    expect(page.locator("#filter-errors")).to_contain_text("until")
    assert page.evaluate("window.notReloaded === true")
    expect(page.locator("#table-criteria")).to_have_count(0)


def test_filters_work_without_javascript(live_server, browser):
    world = _world()
    base = live_server.url
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1366, "height": 900})
    try:
        page = context.new_page()
        login(page, base, world["curator"].username, factories.PASSWORD)
        page.goto(f"{base}/dashboards/funnel/")
        page.select_option("select[name=by]", "sub_emotion")
        page.click("#funnel-filters button[type=submit]")
        page.wait_for_url(lambda url: "by=sub_emotion" in url)
        expect(page.locator("#table-stages")).to_contain_text("Sub emotion")
        _shot(page, "curator-funnel-no-js")
    finally:
        context.close()
