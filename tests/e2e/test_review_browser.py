"""A counselor reviews in Chromium: the HTMX turn edit, the rubric, the decision, and an edit conflict."""

import pytest
from playwright.sync_api import expect

from annotations.models import AuditEvent, Review
from annotations.rubrics import DIALOGUE_RUBRIC
from annotations.services import edits
from generation.models import Candidate
from generation.services.taxonomy import taxonomy_load
from tests import factories
from tests.annotations.scoping import put_in_campaign

from .conftest import login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

EDITED = "It sounds like the pressure is wearing you down. What would you say to a friend who felt this way?"
SCREENSHOTS = "/tmp/psyroom-review"


def test_counselor_edits_a_turn_rates_and_approves(live_server, page):
    taxonomy_load()
    counselor = factories.counselor()
    candidate = factories.make_candidate()
    put_in_campaign([counselor], [candidate])  # a counselor sees only their campaigns' candidates
    original = candidate.content["turns"][1]["text"]

    login(page, live_server.url, counselor.username, factories.PASSWORD)
    page.goto(f"{live_server.url}/")
    page.click(f"a.candidate-link[href='/candidates/{candidate.pk}/']")

    turn = page.locator(".turn[data-index='1']")
    turn.locator("button.edit-turn").click()
    turn.locator("textarea[name=text]").fill(EDITED)
    turn.locator("select[name=category]").select_option("clinical")
    turn.locator("input[name=reason]").fill("More reflective")
    turn.locator("button.save-turn").click()
    expect(page.locator(".turn[data-index='1'] .turn-text")).to_have_text(EDITED)
    expect(page.locator(".turn[data-index='1'] .turn-original-text")).to_have_text(original)
    # The out-of-band swap moved every version field on the page, the review form's included.
    expect(page.locator("#review-form input[name=version]")).to_have_value("2")
    expect(page.locator("#revisions")).to_contain_text("More reflective")

    for criterion in DIALOGUE_RUBRIC["criteria"]:
        page.check(f"input[name=score_{criterion['key']}][value='4']")
    page.check("input[name=decision][value=approve]")
    page.fill("textarea[name=comment]", "Good after the edit of turn 2.")
    expect(page.locator("#rated-count")).to_have_text("5 of 5 criteria rated")
    page.click("#submit-review")

    # One counselor's approval outside a campaign waits for the review policy (one senior or two counselors).
    expect(page.locator(".message-success")).to_contain_text(
        f"Review of Dialogue #{candidate.pk} saved: in review, until the review policy is met (1 senior clinician(s)"
    )
    # Taken last: a full-page screenshot resizes the viewport for a moment, which can swallow the next click.
    page.screenshot(path=f"{SCREENSHOTS}-queue.png", full_page=True)
    candidate.refresh_from_db()
    assert (candidate.status, candidate.approved_revision) == (Candidate.Status.IN_REVIEW, None)
    revision = candidate.revisions.get(number=1)
    assert (revision.content["turns"][1]["text"], revision.category, revision.author) == (EDITED, "clinical", counselor)
    assert candidate.revisions.get(number=0).content["turns"][1]["text"] == original
    review = Review.objects.get(candidate=candidate)
    assert (review.reviewer, review.decision, review.revision.number) == (counselor, "approve", 1)
    assert review.scores == {c["key"]: 4 for c in DIALOGUE_RUBRIC["criteria"]}
    assert AuditEvent.objects.filter(candidate=candidate, action="review.submit").exists()


def test_saving_a_draft_on_a_stale_version_shows_the_conflict(live_server, page):
    taxonomy_load()
    counselor = factories.counselor()
    other = factories.counselor()
    candidate = factories.make_candidate()
    put_in_campaign([counselor, other], [candidate])

    login(page, live_server.url, counselor.username, factories.PASSWORD)
    page.goto(f"{live_server.url}/candidates/{candidate.pk}/")
    turn = page.locator(".turn[data-index='1']")
    turn.locator("button.edit-turn").click()
    turn.locator("textarea[name=text]").fill("My draft, which must not overwrite theirs.")

    # Someone else saves the same dialogue while this page is open.
    edits.turn_edit(
        candidate=candidate, editor=other, index=1, text="Their wording.", base_version=1, category="wording"
    )
    turn.locator("button.save-turn").click()

    conflict = page.locator(".turn[data-index='1'] .conflict")
    expect(conflict).to_contain_text("Someone else changed this dialogue")
    expect(page.locator(".turn[data-index='1'] .turn-text")).to_have_text("Their wording.")
    expect(page.locator(".turn[data-index='1'] .draft-text")).to_have_text("My draft, which must not overwrite theirs.")
    page.screenshot(path=f"{SCREENSHOTS}-conflict.png", full_page=True)
    candidate.refresh_from_db()
    assert candidate.content["turns"][1]["text"] == "Their wording."
    assert list(candidate.revisions.values_list("number", flat=True)) == [0, 1]
