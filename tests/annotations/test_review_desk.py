"""The review desk (the campaign review page): what it costs in queries, what it shows (the item panel, the help,
the layout's panes), and that its one-query read of the claim opens no door the slow path keeps shut."""

import json
import re

import pytest
from django.urls import reverse

from annotations.models import Assignment
from annotations.services import campaigns, drafts, edits, queue
from generation.models import CandidateKind, Scenario, SubEmotion
from generation.services.candidates import candidate_create
from psyroom_admin import roles
from tests import factories

pytestmark = pytest.mark.django_db

PLAN = {
    "case_formulation": "The client pressures herself before exams.",
    "goals": ["Reduce exam anxiety"],
    "interventions": [{"technique": "Cognitive restructuring", "rationale": "Her beliefs drive it."}],
    "homework": ["Thought record"],
    "session_schedule": ["Session 1: assessment"],
    "risk_assessment": {"level": "low", "rationale": "No thoughts of harm."},
    "safety_plan": ["Call a friend"],
    "referral_criteria": ["Panic attacks"],
}


def _desk(client, curator, counselor, *, blind=True, guidelines="Read **every** turn.", scenario=None):
    roles.roles_ensure()
    candidates = [factories.make_candidate(scenario=scenario) for _ in range(3)]
    campaign = campaigns.campaign_create(
        creator=curator,
        name="Exam anxiety",
        kind="dialogue",
        overlap=2,
        members=[counselor],
        blind=blind,
        guidelines=guidelines,
        candidate_ids=[c.pk for c in candidates],
    )
    assignment = queue.queue_claim_next(campaign=campaign, counselor=counselor)
    client.force_login(counselor)
    url = reverse("annotations:campaign_item", args=[campaign.pk, assignment.item.candidate_id])
    return {"campaign": campaign, "url": url, "candidate": assignment.item.candidate, "assignment": assignment}


@pytest.fixture
def scenario(taxonomy):
    return Scenario.objects.create(
        sub_emotion=SubEmotion.objects.get(key="anxiety.1"),
        title="Finals week",
        description="A student who cannot sleep before her finals.",
    )


@pytest.fixture
def desk(taxonomy, client, curator, counselor, scenario):
    return _desk(client, curator, counselor, scenario=scenario)


def _busy(desk, counselor):
    """What a page in the middle of work holds: an edited turn (two revisions), a saved draft."""
    candidate = desk["candidate"]
    edits.turn_edit(
        candidate=candidate, editor=counselor, index=1, text="What helps you most?", base_version=1, category="clinical"
    )
    drafts.draft_save(user=counselor, candidate=candidate, data={"comment": "half-typed 注释", "decision": "reject"})


# Every request's own lookups (session, user, the profile's language, the two-factor device, the roles) come before
# the page's: the page itself reads 6 (its claim with everything it shows, the peek, reviews, revisions, risk flags
# and history). The profile's language lookup arrived with the user's language and takes the total from 10 to 11.
MIDDLEWARE_QUERIES = 5
PAGE_QUERIES = 6


def test_the_page_needs_at_most_eleven_queries(desk, client, counselor, django_assert_max_num_queries):
    _busy(desk, counselor)
    client.get(desk["url"])  # what any first request of a session warms
    with django_assert_max_num_queries(MIDDLEWARE_QUERIES + PAGE_QUERIES):
        response = client.get(desk["url"])
    assert response.status_code == 200
    body = response.content.decode()
    assert "What helps you most?" in body and "half-typed" in body


def test_one_more_query_in_a_campaign_that_is_not_blind(
    taxonomy, client, curator, counselor, django_assert_max_num_queries
):
    desk = _desk(client, curator, counselor, blind=False)
    _busy(desk, counselor)
    client.get(desk["url"])
    # Not blind here, the history still asks whether another campaign of the item is blind: one more query.
    with django_assert_max_num_queries(MIDDLEWARE_QUERIES + PAGE_QUERIES + 1):
        assert client.get(desk["url"]).status_code == 200


def test_a_dialogue_with_a_plan_shows_its_newest_plan(desk, client):
    older = candidate_create(kind=CandidateKind.PLAN, content=PLAN, parent=desk["candidate"])
    newer = candidate_create(
        kind=CandidateKind.PLAN, content={**PLAN, "case_formulation": "Newest formulation."}, parent=desk["candidate"]
    )
    body = client.get(desk["url"]).content.decode()
    assert "Newest formulation." in body
    assert f"({newer})" in body and f"({older})" not in body


def test_the_item_panel_holds_the_sub_emotion_scenario_and_guidelines(desk, client):
    body = client.get(desk["url"]).content.decode()
    panel = body[body.index('id="item-panel"') :]
    assert re.search(r'id="panel-sub-emotion">anxiety\.1 · ', panel)
    assert "Finals week" in panel and "A student who cannot sleep before her finals." in panel
    assert "Read <strong>every</strong> turn." in panel
    # Opened by a key the help lists, next to the keys that were there before.
    help_box = body[body.index('id="shortcut-help"') :]
    for key in ("<kbd>i</kbd>", "<kbd>j</kbd>", "<kbd>?</kbd>", "<kbd>a</kbd>", "<kbd>s</kbd>", "<kbd>e</kbd>"):
        assert key in help_box, key


def test_hostile_guidelines_and_scenario_are_shown_as_text(taxonomy, client, curator, counselor):
    hostile = Scenario.objects.create(
        sub_emotion=SubEmotion.objects.get(key="anxiety.1"),
        title="<img src=x onerror=alert(1)>",
        description="<script>alert(2)</script>\x7f" + "长" * 20_000,
    )
    desk = _desk(
        client, curator, counselor, scenario=hostile, guidelines="<script>alert(3)</script> [x](javascript:alert(4))"
    )
    body = client.get(desk["url"]).content.decode()
    assert "<script>alert" not in body and "<img src=x" not in body and 'href="javascript:' not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    # No inline script: the strict CSP allows script files only (the draft is a JSON data block, not code).
    for tag in re.findall(r"<script\b[^>]*>", body):
        assert "src=" in tag or 'type="application/json"' in tag, tag


def test_the_panes_are_there_and_the_item_comes_first(desk, client):
    body = client.get(desk["url"]).content.decode()
    item, review = body.index('id="desk-item"'), body.index('id="desk-review"')
    assert item < review
    assert item < body.index('class="turns"') < review < body.index('id="review-form"')


def test_the_draft_on_the_fast_path_is_the_saved_one(desk, client, counselor):
    drafts.draft_save(user=counselor, candidate=desk["candidate"], data={"comment": "kept", "risk_flags": ["other"]})
    body = client.get(desk["url"]).content.decode()
    stored = json.loads(re.search(r'<script id="server-draft" type="application/json">(.*?)</script>', body, re.S)[1])
    assert stored["data"] == {"comment": "kept", "risk_flags": ["other"]}
    assert isinstance(stored["saved_at"], int)


def test_another_counselors_claim_is_not_opened(desk, client, other_counselor):
    desk["campaign"].members.add(other_counselor)
    client.force_login(other_counselor)
    response = client.get(desk["url"])
    assert response.status_code == 302 and response["Location"] == reverse("annotations:campaign_list")
    assert "Finals week" not in client.get(response["Location"]).content.decode()


def test_a_counselor_removed_from_the_campaign_loses_the_page(desk, client, counselor):
    desk["campaign"].members.remove(counselor)
    assert client.get(desk["url"]).status_code == 404


def test_a_curator_who_is_not_a_member_gets_403(desk, client, curator):
    client.force_login(curator)
    assert client.get(desk["url"]).status_code == 403


def test_a_released_claim_is_not_in_the_queue(desk, client, counselor):
    queue.assignment_release(assignment=desk["assignment"], counselor=counselor)
    assert Assignment.objects.get(pk=desk["assignment"].pk).status == Assignment.Status.RELEASED
    response = client.get(desk["url"])
    assert response.status_code == 302 and response["Location"] == reverse("annotations:campaign_list")


@pytest.mark.parametrize("candidate_id", ["0", "9999999", "99999999999999999999"])
def test_an_item_that_is_not_there_is_404(desk, client, candidate_id):
    url = desk["url"].replace(f"/items/{desk['candidate'].pk}/", f"/items/{candidate_id}/")
    assert client.get(url).status_code == 404
