"""Reference items (gold): marking through the service, the page and the API, every role, hostile input; the queue
mixing them in at the campaign's rate, each once per counselor; a review of one deciding nothing and showing nothing
that tells it apart."""

import re

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from annotations.models import Assignment, AuditEvent, CampaignItem, GoldItem, Review
from annotations.selectors import queues as queue_selectors
from annotations.services import campaigns, gold, queue, reviews
from annotations.services.rubrics import rubric_get_default
from generation.models import Candidate
from generation.services.candidates import candidate_flag_risk
from psyroom_admin import roles
from tests import factories

pytestmark = pytest.mark.django_db


def _keys():
    return [c["key"] for c in rubric_get_default(kind="dialogue").criteria]


def _scores(value=4, **over):
    return {**dict.fromkeys(_keys(), value), **over}


def _api(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def _campaign(curator, members, n_items=3, *, rate=0.0, blind=True, overlap=2):
    items = [factories.make_candidate(content=factories.dialogue_content(prefix=f"w{i} ")) for i in range(n_items)]
    return campaigns.campaign_create(
        creator=curator,
        name="calibrated",
        kind="dialogue",
        overlap=overlap,
        members=members,
        candidate_ids=[c.pk for c in items],
        blind=blind,
        policy={"gold_rate": rate},
    )


def _approved(prefix="ref"):
    return factories.make_candidate(content=factories.dialogue_content(prefix=f"{prefix} "), status="approved")


@pytest.fixture
def world(taxonomy, curator, counselor, other_counselor, senior):
    roles.roles_ensure()
    campaign = _campaign(curator, [counselor, other_counselor, senior], rate=0.5)
    return campaign, _approved()


@pytest.fixture
def admin_user(db):
    return factories.make_user(roles.ADMIN)


def _nothing_marked(campaign):
    assert not GoldItem.objects.exists()
    assert not campaign.items.filter(state=CampaignItem.State.GOLD).exists()
    assert not AuditEvent.objects.filter(action__startswith="gold.").exists()


# --- Marking -------------------------------------------------------------------------------------------------------


def test_a_curator_and_an_admin_mark_and_unmark(world, curator, admin_user):
    campaign, reference = world
    marked = gold.gold_mark(campaign=campaign, candidate=reference, user=curator, scores=_scores(5), decision="approve")
    assert marked.active and marked.scores == _scores(5) and marked.decision == "approve"
    assert marked.item.state == CampaignItem.State.GOLD and marked.item.campaign == campaign
    assert AuditEvent.objects.filter(action="gold.mark", actor=curator, candidate=reference).count() == 1
    # Marked again by an admin: the reference changes, one item still.
    again = gold.gold_mark(
        campaign=campaign, candidate=reference, user=admin_user, scores=_scores(3), decision="reject"
    )
    assert again.pk == marked.pk and again.scores == _scores(3) and again.marked_by == admin_user
    unmarked = gold.gold_unmark(campaign=campaign, candidate=reference, user=curator)
    assert not unmarked.active and GoldItem.objects.get().scores == _scores(3)
    with pytest.raises(ValidationError) as refused:
        gold.gold_unmark(campaign=campaign, candidate=reference, user=curator)
    assert "candidate" in refused.value.message_dict
    reference.refresh_from_db()
    assert reference.status == Candidate.Status.APPROVED


@pytest.mark.parametrize("role", ["counselor", "senior", "outsider"])
def test_other_roles_cannot_mark(world, request, role):
    campaign, reference = world
    user = request.getfixturevalue(role)
    with pytest.raises(PermissionDenied):
        gold.gold_mark(campaign=campaign, candidate=reference, user=user, scores=_scores(), decision="approve")
    _nothing_marked(campaign)


def test_refusals_name_the_field_and_write_nothing(world, curator, senior):
    campaign, reference = world
    keys = _keys()
    cases = [
        (factories.make_candidate(), _scores(), "approve", "candidate", "not approved"),
        (reference, _scores(**{keys[0]: 6}), "approve", "scores", keys[0]),
        (reference, _scores(**{keys[1]: 0}), "approve", "scores", keys[1]),
        (reference, {**_scores(), "charm": 3}, "approve", "scores", "charm"),
        (reference, {keys[0]: 3}, "approve", "scores", keys[1]),
        (reference, _scores(**{keys[0]: "4\x00"}), "approve", "scores", keys[0]),
        (reference, _scores(**{keys[0]: "9" * 5000}), "approve", "scores", keys[0]),
        (reference, _scores(**{keys[0]: {"deep": [1]}}), "approve", "scores", keys[0]),
        (reference, _scores(**{keys[0]: True}), "approve", "scores", keys[0]),
        (reference, ["not", "an", "object"], "approve", "scores", "object"),
        (reference, _scores(), "maybe", "decision", "maybe"),
        # An item the campaign decides itself is not a reference for it.
        (campaign.items.first().candidate, _scores(), "approve", "candidate", None),
    ]
    for candidate, scores, decision, field, words in cases:
        with pytest.raises(ValidationError) as refused:
            gold.gold_mark(campaign=campaign, candidate=candidate, user=curator, scores=scores, decision=decision)
        assert field in refused.value.message_dict, (scores, refused.value)
        if words:
            assert words in " ".join(refused.value.message_dict[field])
    # Approved, then flagged for risk: refused until a senior clinician signs it off.
    candidate_flag_risk(candidate=reference, flags=[{"code": "self_harm", "detail": "turn 3"}], raised_by=senior)
    with pytest.raises(ValidationError) as refused:
        gold.gold_mark(campaign=campaign, candidate=reference, user=curator, scores=_scores(), decision="approve")
    assert "open risk flag" in refused.value.message_dict["candidate"][0]
    # Edited after approval: the approved revision is no longer the latest.
    edited = _approved("edited")
    edited.revisions.create(number=1, content=edited.content, author=senior)
    with pytest.raises(ValidationError) as refused:
        gold.gold_mark(campaign=campaign, candidate=edited, user=curator, scores=_scores(), decision="approve")
    assert "edited" in refused.value.message_dict["candidate"][0]
    _nothing_marked(campaign)
    assert campaign.items.count() == 3


# --- The API -------------------------------------------------------------------------------------------------------


def test_api_mark_list_unmark(world, curator):
    campaign, reference = world
    api = _api(curator)
    url = f"/api/campaigns/{campaign.pk}/gold/"
    made = api.post(url, {"candidate": reference.pk, "scores": _scores(4), "decision": "approve"}, format="json")
    assert made.status_code == 201, made.content
    assert made.data["candidate"] == reference.pk and made.data["scores"] == _scores(4) and made.data["active"]
    listed = api.get(url)
    assert listed.status_code == 200 and [row["candidate"] for row in listed.data] == [reference.pk]
    assert listed.data[0]["reviews"] == 0
    gone = api.delete(f"{url}{reference.pk}/")
    assert gone.status_code == 204
    assert api.get(url).data[0]["active"] is False
    again = api.delete(f"{url}{reference.pk}/")
    assert again.status_code == 400 and "candidate" in again.data


def test_api_hostile_bodies_are_400_naming_the_field(world, curator):
    campaign, reference = world
    api = _api(curator)
    url = f"/api/campaigns/{campaign.pk}/gold/"
    key = _keys()[0]
    bodies = [
        ({"candidate": reference.pk, "scores": _scores(**{key: 7}), "decision": "approve"}, "scores"),
        ({"candidate": reference.pk, "scores": _scores(**{key: "\x00"}), "decision": "approve"}, "scores"),
        ({"candidate": reference.pk, "scores": "all fives", "decision": "approve"}, "scores"),
        ({"candidate": reference.pk, "scores": _scores(), "decision": "\x00"}, "decision"),
        ({"candidate": "one", "scores": _scores(), "decision": "approve"}, "candidate"),
        ({"candidate": 2**70, "scores": _scores(), "decision": "approve"}, "candidate"),
        ({"candidate": campaign.items.first().candidate_id, "scores": _scores(), "decision": "approve"}, "candidate"),
        ({"scores": _scores(), "decision": "approve"}, "candidate"),
    ]
    for body, field in bodies:
        response = api.post(url, body, format="json")
        assert response.status_code == 400, (body, response.content)
        # Under the field, or (a NUL, refused by the parser) in a message naming its path.
        assert field in response.data or f"at {field}" in str(response.data), (body, response.data)
    assert (
        api.post(url, {"candidate": 10**12, "scores": _scores(), "decision": "approve"}, format="json").status_code
        == 404
    )
    _nothing_marked(campaign)


@pytest.mark.parametrize("role", ["counselor", "senior", "outsider"])
def test_api_other_roles_are_refused(world, request, role):
    campaign, reference = world
    api = _api(request.getfixturevalue(role))
    url = f"/api/campaigns/{campaign.pk}/gold/"
    body = {"candidate": reference.pk, "scores": _scores(), "decision": "approve"}
    assert api.post(url, body, format="json").status_code == 403
    assert api.get(url).status_code == 403
    assert api.delete(f"{url}{reference.pk}/").status_code == 403
    _nothing_marked(campaign)


def test_api_schema_lists_the_gold_endpoints(world, curator):
    schema = _api(curator).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    text = schema.content.decode()
    for operation in ("campaigns_gold_list", "campaigns_gold_mark", "campaigns_gold_unmark"):
        assert operation in text
    assert "GoldMarkInput" in text and "GoldItemOutput" in text


# --- The page ------------------------------------------------------------------------------------------------------


def test_page_marks_and_unmarks(client, world, curator):
    campaign, reference = world
    client.force_login(curator)
    url = reverse("annotations:campaign_gold", args=[campaign.pk])
    page = client.get(url, {"candidate": reference.pk})
    assert page.status_code == 200 and f'value="{reference.pk}"' in page.content.decode()
    data = {"candidate": reference.pk, "decision": "reject", **{f"score_{k}": 2 for k in _keys()}}
    bad = client.post(url, {**data, f"score_{_keys()[0]}": 9})
    assert bad.status_code == 400 and not GoldItem.objects.exists()
    not_approved = client.post(url, {**data, "candidate": campaign.items.first().candidate_id})
    assert not_approved.status_code == 400 and "not approved" in not_approved.content.decode()
    done = client.post(url, data)
    assert done.status_code == 302
    marked = GoldItem.objects.get()
    assert marked.decision == "reject" and marked.scores == _scores(2)
    listed = client.get(url).content.decode()
    assert f'data-candidate="{reference.pk}"' in listed
    unmark = client.post(reverse("annotations:campaign_gold_unmark", args=[campaign.pk, reference.pk]))
    assert unmark.status_code == 302 and not GoldItem.objects.get().active
    # The candidate page offers the campaigns it can be a reference item of.
    detail = client.get(reverse("annotations:candidate", args=[reference.pk])).content.decode()
    assert f"{url}?candidate={reference.pk}" in detail


@pytest.mark.parametrize("role", ["counselor", "senior", "outsider"])
def test_page_other_roles_are_403(client, world, request, role):
    campaign, reference = world
    client.force_login(request.getfixturevalue(role))
    url = reverse("annotations:campaign_gold", args=[campaign.pk])
    assert client.get(url).status_code == 403
    data = {"candidate": reference.pk, "decision": "approve", **{f"score_{k}": 4 for k in _keys()}}
    assert client.post(url, data).status_code == 403
    assert client.post(reverse("annotations:campaign_gold_unmark", args=[campaign.pk, reference.pk])).status_code == 403
    _nothing_marked(campaign)


# --- The rate, at creation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.51, -0.1, 1, "0.2", True, None, float("nan"), float("inf"), [0.1]])
def test_gold_rate_is_checked_at_creation(taxonomy, curator, counselor, rate):
    if rate is None:
        campaign = _campaign(curator, [counselor], rate=rate)
        assert campaign.policy["gold_rate"] == 0.0
        return
    with pytest.raises(ValidationError) as refused:
        _campaign(curator, [counselor], rate=rate)
    assert "gold_rate" in " ".join(refused.value.message_dict["policy"])


def test_gold_rate_through_the_api_and_the_form(client, taxonomy, curator, counselor):
    api = _api(curator)
    candidate = factories.make_candidate()
    body = {"name": "c", "kind": "dialogue", "overlap": 1, "members": [counselor.pk], "candidate_ids": [candidate.pk]}
    bad = api.post("/api/campaigns/", {**body, "policy": {"gold_rate": 0.9}}, format="json")
    assert bad.status_code == 400 and "gold_rate" in str(bad.data)
    good = api.post("/api/campaigns/", {**body, "policy": {"gold_rate": 0.25}}, format="json")
    assert good.status_code == 201 and good.data["policy"]["gold_rate"] == 0.25
    # A counselor reads the campaign without the rate and without reference items counted.
    mine = _api(counselor).get(f"/api/campaigns/{good.data['id']}/")
    assert "gold" not in mine.content.decode().lower()
    client.force_login(curator)
    form = {"name": "f", "kind": "dialogue", "overlap": 1, "members": [counselor.pk], "lease_minutes": 30}
    refused = client.post(reverse("annotations:campaign_create"), {**form, "gold_rate": "0.7"})
    assert refused.status_code == 400 and "gold_rate" in refused.content.decode()


# --- Serving and reviewing ----------------------------------------------------------------------------------------


def _always_gold(monkeypatch):
    monkeypatch.setattr(queue_selectors, "gold_draw", lambda **kwargs: 0.0)


def test_a_gold_review_decides_nothing_and_is_scored(world, curator, counselor, monkeypatch):
    campaign, reference = world
    gold.gold_mark(campaign=campaign, candidate=reference, user=curator, scores=_scores(5), decision="approve")
    before = Candidate.objects.get(pk=reference.pk)
    _always_gold(monkeypatch)
    api = _api(counselor)
    claim = api.post(f"/api/campaigns/{campaign.pk}/next/")
    assert claim.status_code == 200 and claim.data["candidate"] == reference.pk
    review = api.post(
        f"/api/assignments/{claim.data['id']}/review/",
        {"scores": _scores(2), "decision": "reject", "version": claim.data["version"]},
        format="json",
    )
    assert review.status_code == 201, review.content
    after = Candidate.objects.get(pk=reference.pk)
    assert (after.status, after.approved_revision_id, after.version) == (
        before.status,
        before.approved_revision_id,
        before.version,
    )
    item = CampaignItem.objects.get(campaign=campaign, candidate=reference)
    assert item.state == CampaignItem.State.GOLD and item.reviews_done == 0
    saved = Review.objects.get(pk=review.data["id"])
    assert saved.gold and saved.campaign == campaign
    assert Assignment.objects.get(pk=claim.data["id"]).status == Assignment.Status.SUBMITTED
    # Outside campaigns the policy counts no gold review either.
    from annotations.services.policy import policy_decide

    assert policy_decide(candidate=after) == "pending"
    # Served once: the next claim is one of the campaign's own items.
    nxt = api.post(f"/api/campaigns/{campaign.pk}/next/")
    assert nxt.status_code == 200 and nxt.data["candidate"] != reference.pk


def test_a_risk_flag_on_a_gold_item_is_raised_and_gated(world, curator, counselor, senior, monkeypatch):
    campaign, reference = world
    gold.gold_mark(campaign=campaign, candidate=reference, user=curator, scores=_scores(5), decision="approve")
    _always_gold(monkeypatch)
    assignment = queue.queue_claim_next(campaign=campaign, counselor=counselor)
    assert assignment.item.candidate_id == reference.pk
    reviews.review_submit(
        candidate=reference,
        assignment=assignment,
        reviewer=counselor,
        scores=_scores(1),
        decision="reject",
        comment="the counselor dismisses talk of self-harm",
        risk_flags=["self_harm"],
        base_version=reference.version,
    )
    reference.refresh_from_db()
    assert reference.open_risk_flags().count() == 1
    assert reference.status == Candidate.Status.APPROVED  # the flag gates it; the review does not decide it
    # A senior clinician sees it to sign off; nobody is served it any more.
    assert queue_selectors.adjudication_queue(clinician=senior).filter(candidate=reference).exists()
    other = queue.queue_claim_next(campaign=campaign, counselor=senior)
    assert other.item.candidate_id != reference.pk


def test_an_unmarked_item_is_not_served(world, curator, counselor, monkeypatch):
    campaign, reference = world
    gold.gold_mark(campaign=campaign, candidate=reference, user=curator, scores=_scores(), decision="approve")
    gold.gold_unmark(campaign=campaign, candidate=reference, user=curator)
    _always_gold(monkeypatch)
    served = []
    while (a := queue.queue_claim_next(campaign=campaign, counselor=counselor)) is not None:
        served.append(a.item.candidate_id)
        queue.assignment_release(assignment=a, counselor=counselor)
    assert reference.pk not in served and len(served) == 3


def test_the_queue_never_ends_on_reference_items(world, curator, counselor, monkeypatch):
    campaign, _ = world
    refs = [_approved(f"r{i}") for i in range(5)]
    for ref in refs:
        gold.gold_mark(campaign=campaign, candidate=ref, user=curator, scores=_scores(), decision="approve")
    _always_gold(monkeypatch)
    served = []
    while (a := queue.queue_claim_next(campaign=campaign, counselor=counselor)) is not None:
        served.append(a.item.candidate_id)
        queue.assignment_release(assignment=a, counselor=counselor)
    own = set(campaign.items.exclude(state=CampaignItem.State.GOLD).values_list("candidate_id", flat=True))
    assert set(served) >= own and served[-1] in own
    assert len(served) == len(set(served))


def test_mixing_rate_over_a_seeded_queue(taxonomy, curator, counselor):
    """With the real draws (keyed by SECRET_KEY, so repeatable): about the rate, each reference item at most once."""
    campaign = _campaign(curator, [counselor], n_items=100, rate=0.2, overlap=1)
    refs = [_approved(f"g{i}") for i in range(40)]
    for ref in refs:
        gold.gold_mark(campaign=campaign, candidate=ref, user=curator, scores=_scores(), decision="approve")
    ref_ids = {r.pk for r in refs}
    served = []
    for _ in range(100):
        a = queue.queue_claim_next(campaign=campaign, counselor=counselor)
        if a is None:
            break
        served.append(a.item.candidate_id)
        queue.assignment_release(assignment=a, counselor=counselor)
    golds = [pk for pk in served if pk in ref_ids]
    assert len(served) == 100
    assert len(golds) == len(set(golds))
    assert 0.1 <= len(golds) / len(served) <= 0.3, len(golds)
    # The same queue at rate 0 gets none.
    plain = _campaign(curator, [counselor], n_items=5, rate=0.0, overlap=1)
    for ref in refs[:5]:
        gold.gold_mark(campaign=plain, candidate=ref, user=curator, scores=_scores(), decision="approve")
    got = []
    while (a := queue.queue_claim_next(campaign=plain, counselor=counselor)) is not None:
        got.append(a.item.candidate_id)
        queue.assignment_release(assignment=a, counselor=counselor)
    assert not ref_ids & set(got) and len(got) == 5


# --- Indistinguishable ----------------------------------------------------------------------------------------------


def _claim_page(client, campaign) -> str:
    response = client.post(reverse("annotations:campaign_next", args=[campaign.pk]))
    assert response.status_code == 302
    return response["Location"]


@pytest.mark.parametrize("blind", [True, False])
def test_a_counselor_cannot_tell_a_gold_item_apart(
    client, taxonomy, curator, counselor, other_counselor, monkeypatch, blind
):
    campaign = _campaign(curator, [counselor, other_counselor], rate=0.5, blind=blind)
    reference = _approved()
    # An earlier approving review from elsewhere, and the curator's marking, both in the record.
    gold.gold_mark(campaign=campaign, candidate=reference, user=curator, scores=_scores(5), decision="approve")
    api = _api(counselor)
    monkeypatch.setattr(queue_selectors, "gold_draw", lambda **kwargs: 0.99)
    plain_claim = api.post(f"/api/campaigns/{campaign.pk}/next/").data
    queue.assignment_release(assignment=Assignment.objects.get(pk=plain_claim["id"]), counselor=counselor)
    _always_gold(monkeypatch)
    gold_claim = api.post(f"/api/campaigns/{campaign.pk}/next/").data
    assert gold_claim["candidate"] == reference.pk and plain_claim["candidate"] != reference.pk
    assert set(gold_claim) == set(plain_claim)
    client.force_login(counselor)
    pages = {}
    for name, pk in (("plain", plain_claim["candidate"]), ("gold", reference.pk)):
        url = reverse("annotations:campaign_item", args=[campaign.pk, pk])
        pages[name] = client.get(url).content.decode()
        detail = api.get(f"/api/candidates/{pk}/")
        assert detail.status_code == 200 and detail.data["status"] in ("generated", "in_review")
        assert "gold" not in detail.content.decode().lower()
    gold_page = pages["gold"]
    assert re.search(r"\bgold\b", gold_page, re.I) is None
    assert "reference item" not in gold_page.lower()
    assert "status-approved" not in gold_page and "status-in_review" in gold_page
    assert "status-approved" not in pages["plain"]
    assert curator.get_username() not in gold_page  # the marking is not in the history
    for listing in (api.get("/api/campaigns/"), api.get(f"/api/campaigns/{campaign.pk}/")):
        assert "gold" not in listing.content.decode().lower()
    campaigns_page = client.get(reverse("annotations:campaign_list")).content.decode()
    assert "reference-items" not in campaigns_page and "gold" not in campaigns_page.lower()


def test_an_approved_item_of_the_campaign_itself_is_refused(world, curator):
    campaign, _ = world
    own = factories.set_status(campaign.items.first().candidate, "approved")
    with pytest.raises(ValidationError) as refused:
        gold.gold_mark(campaign=campaign, candidate=own, user=curator, scores=_scores(), decision="approve")
    assert "own items" in refused.value.message_dict["candidate"][0]
    _nothing_marked(campaign)
    # Another campaign of the same kind may take it as its reference.
    other = _campaign(curator, [], n_items=1)
    assert gold.gold_mark(campaign=other, candidate=own, user=curator, scores=_scores(), decision="approve").active


def test_through_the_pages_a_gold_review_is_saved_like_any_other(client, world, curator, counselor, monkeypatch):
    campaign, reference = world
    gold.gold_mark(campaign=campaign, candidate=reference, user=curator, scores=_scores(5), decision="approve")
    _always_gold(monkeypatch)
    client.force_login(counselor)
    location = _claim_page(client, campaign)
    assert location == reverse("annotations:campaign_item", args=[campaign.pk, reference.pk])
    page = client.get(location).content.decode()
    assert 'name="score_' in page
    url = reverse("annotations:campaign_submit", args=[campaign.pk, reference.pk])
    data = {f"score_{k}": "3" for k in _keys()}
    # A stale version is a 409 and writes nothing, as for any item.
    stale = client.post(url, {**data, "decision": "reject", "comment": "", "version": reference.version + 5})
    assert stale.status_code == 409 and not Review.objects.exists()
    done = client.post(url, {**data, "decision": "reject", "comment": "", "version": reference.version})
    assert done.status_code == 302 and done["Location"] == reverse("annotations:campaign_next", args=[campaign.pk])
    saved = Review.objects.get()
    assert saved.gold and saved.decision == "reject" and saved.scores == _scores(3)
    reference.refresh_from_db()
    assert reference.status == Candidate.Status.APPROVED
    item = CampaignItem.objects.get(campaign=campaign, candidate=reference)
    assert item.state == CampaignItem.State.GOLD and item.reviews_done == 0
    # The prefetch of the next item agrees with the claim that follows it.
    monkeypatch.undo()
    for i in range(3):
        more = _approved(f"more{i}")
        gold.gold_mark(campaign=campaign, candidate=more, user=curator, scores=_scores(), decision="approve")
    kinds = []
    while (peek := queue_selectors.queue_peek_next(campaign=campaign, counselor=counselor)) is not None:
        claimed = queue.queue_claim_next(campaign=campaign, counselor=counselor)
        assert peek == claimed.item.candidate
        kinds.append(claimed.item.state)
        queue.assignment_release(assignment=claimed, counselor=counselor)
    assert kinds.count(CampaignItem.State.OPEN) == 3
