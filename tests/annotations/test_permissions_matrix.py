"""Who gets which status code from every campaign endpoint (and the candidate reads they scope), per role.

Each case runs on fresh data: a blind campaign (k=2) whose members are ``counselor`` and ``senior``, a claim of
``counselor``'s, and an item in adjudication. ``stranger`` is a counselor outside the campaign.
"""

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from annotations.models import CampaignItem
from annotations.services import campaigns, queue
from annotations.services.rubrics import rubric_get_default
from psyroom_admin import roles
from tests import factories

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "outsider", "counselor", "stranger", "senior", "curator", "admin"]


@pytest.fixture
def world(taxonomy, role_groups):
    users = {
        "outsider": factories.make_user(None),
        "counselor": factories.make_user(roles.COUNSELOR),
        "stranger": factories.make_user(roles.COUNSELOR),
        "senior": factories.make_user(roles.SENIOR_CLINICIAN),
        "curator": factories.make_user(roles.CURATOR, is_staff=True),
        "admin": factories.make_user(roles.ADMIN),
    }
    dialogues = [factories.make_candidate() for _ in range(3)]
    campaign = campaigns.campaign_create(
        creator=users["curator"],
        name="matrix",
        kind="dialogue",
        overlap=2,
        members=[users["counselor"], users["senior"]],
        candidate_ids=[d.pk for d in dialogues],
    )
    assignment = queue.queue_claim_next(campaign=campaign, counselor=users["counselor"])
    item = CampaignItem.objects.get(campaign=campaign, candidate=dialogues[2])
    CampaignItem.objects.filter(pk=item.pk).update(state=CampaignItem.State.ADJUDICATION)
    scores = {c["key"]: 4 for c in rubric_get_default(kind="dialogue").criteria}
    first = dialogues[0]
    return {
        "users": users,
        "campaign": campaign,
        "assignment": assignment,
        "item": item,
        "first": first,
        "scores": scores,
        "dialogues": dialogues,
    }


def _endpoints(w):
    c, a, i, first = w["campaign"], w["assignment"], w["item"], w["first"]
    new_campaign = {"name": "new", "overlap": 2, "members": [w["users"]["counselor"].pk], "candidate_ids": [first.pk]}
    review = {"scores": w["scores"], "decision": "approve", "version": first.version, "idempotency_key": "k1"}
    decide = {"decision": "approve", "reason": "fine", "version": w["dialogues"][2].version}
    return {
        "campaign-list": ("get", "/api/campaigns/", None),
        "campaign-create": ("post", "/api/campaigns/", new_campaign),
        "campaign-detail": ("get", f"/api/campaigns/{c.pk}/", None),
        "campaign-next": ("post", f"/api/campaigns/{c.pk}/next/", None),
        "assignment-release": ("post", f"/api/assignments/{a.pk}/release/", None),
        "assignment-review": ("post", f"/api/assignments/{a.pk}/review/", review),
        "adjudication-list": ("get", "/api/adjudications/", None),
        "adjudication-decide": ("post", f"/api/adjudications/{i.pk}/", decide),
        "draft-get": ("get", f"/api/candidates/{first.pk}/draft/", None),
        "draft-put": ("put", f"/api/candidates/{first.pk}/draft/", {"comment": "half way"}),
        "candidate-list": ("get", "/api/candidates/", None),
        "candidate-detail": ("get", f"/api/candidates/{first.pk}/", None),
    }


# endpoint: status per role, in the order of ROLES.
MATRIX = {
    #                       anon outsider counselor stranger senior curator admin
    "campaign-list": (401, 403, 200, 200, 200, 200, 200),
    "campaign-create": (401, 403, 403, 403, 403, 201, 201),
    "campaign-detail": (401, 403, 200, 404, 200, 200, 200),
    "campaign-next": (401, 403, 200, 404, 200, 403, 403),
    "assignment-release": (401, 403, 204, 404, 404, 403, 403),
    "assignment-review": (401, 403, 201, 404, 404, 403, 403),
    "adjudication-list": (401, 403, 403, 403, 200, 403, 403),
    "adjudication-decide": (401, 403, 403, 403, 201, 403, 403),
    "draft-get": (401, 403, 200, 404, 200, 403, 403),
    "draft-put": (401, 403, 200, 404, 200, 403, 403),
    "candidate-list": (401, 403, 200, 200, 200, 200, 200),
    "candidate-detail": (401, 403, 200, 404, 200, 200, 200),
}


@pytest.mark.parametrize("endpoint", sorted(MATRIX))
def test_status_per_role(world, endpoint):
    """Every role against one endpoint; each request runs in a savepoint that is rolled back, so all see the same
    data (a release or a review by one role does not change what the next one meets)."""
    method, url, body = _endpoints(world)[endpoint]
    got = {}
    for role in ROLES:
        api = APIClient()
        if role != "anonymous":
            api.force_authenticate(world["users"][role])
        with transaction.atomic():
            call = getattr(api, method)
            response = call(url, body, format="json") if body is not None else call(url)
            got[role] = response.status_code
            transaction.set_rollback(True)
    assert got == dict(zip(ROLES, MATRIX[endpoint], strict=True))


def test_stranger_lists_no_candidates_and_no_campaigns(world):
    api = APIClient()
    api.force_authenticate(world["users"]["stranger"])
    assert api.get("/api/candidates/").data["count"] == 0
    assert api.get("/api/campaigns/").data == []
    api.force_authenticate(world["users"]["counselor"])
    assert api.get("/api/candidates/").data["count"] == 3
