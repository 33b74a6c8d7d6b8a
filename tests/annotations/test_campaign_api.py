"""The campaign API end to end: claim, idempotent review, stale 409, release, drafts, adjudication, creation."""

import pytest
from rest_framework.test import APIClient

from annotations.models import Adjudication, Assignment, AuditEvent, Campaign, CampaignItem, Review
from annotations.services import campaigns
from annotations.services.rubrics import rubric_get_default
from generation.models import Candidate
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(taxonomy, curator, counselor, other_counselor, senior):
    dialogues = [factories.make_candidate() for _ in range(2)]
    campaign = campaigns.campaign_create(
        creator=curator,
        name="api",
        kind="dialogue",
        overlap=2,
        members=[counselor, other_counselor],
        candidate_ids=[d.pk for d in dialogues],
    )
    return campaign, dialogues


def _api(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def _review(version, decision="approve", **extra):
    scores = {c["key"]: 4 for c in rubric_get_default(kind="dialogue").criteria}
    return {"scores": scores, "decision": decision, "version": version, **extra}


def test_claim_review_idempotent_and_next(setup, counselor):
    campaign, dialogues = setup
    api = _api(counselor)
    claim = api.post(f"/api/campaigns/{campaign.pk}/next/")
    assert claim.status_code == 200 and claim.data["candidate"] == dialogues[0].pk
    url = f"/api/assignments/{claim.data['id']}/review/"
    first = api.post(url, _review(claim.data["version"]), format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    again = api.post(url, _review(claim.data["version"]), format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    assert first.status_code == again.status_code == 201
    assert first.data["id"] == again.data["id"]
    assert Review.objects.filter(reviewer=counselor).count() == 1
    second = api.post(f"/api/campaigns/{campaign.pk}/next/")
    assert second.data["candidate"] == dialogues[1].pk
    api.post(f"/api/assignments/{second.data['id']}/release/")
    assert api.post(f"/api/campaigns/{campaign.pk}/next/").status_code == 204


def test_stale_review_is_409_and_writes_nothing(setup, counselor):
    campaign, _ = setup
    api = _api(counselor)
    claim = api.post(f"/api/campaigns/{campaign.pk}/next/")
    response = api.post(
        f"/api/assignments/{claim.data['id']}/review/", _review(claim.data["version"] + 5), format="json"
    )
    assert response.status_code == 409 and response.data["code"] == "stale_version"
    assert not Review.objects.exists()
    assert Assignment.objects.get(pk=claim.data["id"]).status == Assignment.Status.CLAIMED


def test_invalid_review_names_the_field(setup, counselor):
    campaign, _ = setup
    api = _api(counselor)
    claim = api.post(f"/api/campaigns/{campaign.pk}/next/")
    body = _review(claim.data["version"], risk_flags=["self_harm"])
    response = api.post(f"/api/assignments/{claim.data['id']}/review/", body, format="json")
    assert response.status_code == 400 and "comment" in response.data
    assert not Review.objects.exists()


def test_drafts_round_trip(setup, counselor):
    _, dialogues = setup
    api = _api(counselor)
    url = f"/api/candidates/{dialogues[0].pk}/draft/"
    assert api.get(url).data == {}
    assert api.put(url, {"comment": "so far"}, format="json").status_code == 200
    assert api.get(url).data == {"comment": "so far"}
    bad = api.put(url, {"secret": 1}, format="json")
    assert bad.status_code == 400


def test_disagreement_then_adjudication(setup, counselor, other_counselor, senior):
    campaign, dialogues = setup
    for user, decision in ((counselor, "approve"), (other_counselor, "reject")):
        api = _api(user)
        claim = api.post(f"/api/campaigns/{campaign.pk}/next/")
        api.post(
            f"/api/assignments/{claim.data['id']}/review/", _review(claim.data["version"], decision), format="json"
        )
    item = CampaignItem.objects.get(campaign=campaign, candidate=dialogues[0])
    assert item.state == CampaignItem.State.ADJUDICATION
    api = _api(senior)
    queue = api.get("/api/adjudications/")
    assert [row["id"] for row in queue.data] == [item.pk]
    version = Candidate.objects.get(pk=dialogues[0].pk).version
    decided = api.post(f"/api/adjudications/{item.pk}/", {"decision": "approve", "reason": "", "version": version})
    assert decided.status_code == 400 and "reason" in decided.data
    decided = api.post(
        f"/api/adjudications/{item.pk}/", {"decision": "approve", "reason": "fine", "version": version}, format="json"
    )
    assert decided.status_code == 201
    assert Adjudication.objects.get().clinician == senior
    assert Candidate.objects.get(pk=dialogues[0].pk).status == Candidate.Status.APPROVED


def test_create_campaign_and_unknown_id(curator, counselor, taxonomy):
    dialogue = factories.make_candidate()
    api = _api(curator)
    body = {"name": "new", "overlap": 2, "members": [counselor.pk], "candidate_ids": [dialogue.pk, 424242]}
    bad = api.post("/api/campaigns/", body, format="json")
    assert bad.status_code == 400 and "424242" in str(bad.data["candidate_ids"])
    assert not Campaign.objects.exists()
    body["candidate_ids"] = [dialogue.pk]
    made = api.post("/api/campaigns/", body, format="json")
    assert made.status_code == 201 and made.data["items"]["open"] == 1
    assert AuditEvent.objects.filter(action="campaign.create", actor=curator).exists()
