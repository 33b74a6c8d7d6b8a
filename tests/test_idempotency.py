"""``Idempotency-Key`` on every write of the API (psyroom_admin/idempotency.py).

For each write operation: the same key twice writes once and answers the same status and body (marked replayed);
the same key with another body is a 422 and writes nothing. Then the rules (per user, per endpoint, bounded keys,
refusals not kept, 24 hours), the schema, and real concurrent requests: eight at once with one key, each in its own
thread and database connection (a live server: on PostgreSQL they race for the key's row, SQLite queues them).
"""

import json
import threading
from datetime import timedelta
from io import StringIO

import pytest
import requests
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework.views import APIView

from accounts.services import token_create
from annotations.models import (
    Adjudication,
    Assignment,
    AuditEvent,
    Campaign,
    Draft,
    GoldItem,
    Review,
    ReviewPolicy,
)
from annotations.rubrics import DIALOGUE_RUBRIC
from annotations.services import campaigns, queue, reviews
from annotations.services.gold import gold_mark
from generation.models import Candidate, ClientProfile, GenerationRun, Revision, RiskFlag
from generation.services import runs as run_services
from generation.services.runs import QueueUnavailable
from generation.services.taxonomy import taxonomy_load
from psyroom_admin import roles
from psyroom_admin.idempotency import HEADER, KEY_TTL, REPLAYED_HEADER, keys_purge
from psyroom_admin.models import IdempotencyKey
from releases.models import Release
from tests import factories
from tests.api_world import base_bodies

pytestmark = pytest.mark.django_db

KEYS = [c["key"] for c in DIALOGUE_RUBRIC["criteria"]]
MODELS = (
    Review, Revision, AuditEvent, GenerationRun, Campaign, Assignment, Adjudication, ClientProfile, Draft, Release
)  # fmt: skip


def _scores(value=4) -> dict:
    return dict.fromkeys(KEYS, value)


def _state() -> dict:
    """Everything a write of the API changes: rows, statuses, versions, sign-offs, save times."""
    return {
        "counts": {model.__name__: model.objects.count() for model in MODELS},
        "assignments": sorted(Assignment.objects.values_list("pk", "status")),
        "drafts": sorted(Draft.objects.values_list("pk", "updated_at")),
        "policy": list(ReviewPolicy.objects.values_list("pk", "updated_at")),
        "runs": sorted(GenerationRun.objects.values_list("pk", "status")),
        "releases": sorted(Release.objects.values_list("pk", "status")),
        "versions": sorted(Candidate.objects.values_list("pk", "version")),
        "flags": sorted(RiskFlag.objects.values_list("pk", "signed_off_at")),
        "reference_items": sorted(GoldItem.objects.values_list("pk", "active", "decision")),
    }


def _adjudication_item(curator, senior):
    """An item two counselors disagree on: it waits for a senior clinician."""
    one, two = factories.counselor(), factories.counselor()
    candidate = factories.make_candidate()
    campaign = campaigns.campaign_create(
        creator=curator, name="Split", kind="dialogue", overlap=2, members=[one, two], candidate_ids=[candidate.pk]
    )
    for person, decision in ((one, "approve"), (two, "reject")):
        reviews.review_submit(
            candidate=candidate,
            assignment=queue.queue_claim_next(campaign=campaign, counselor=person),
            reviewer=person,
            scores=_scores(),
            decision=decision,
            comment="Because.",
            base_version=1,
        )
    item = campaign.items.get()
    assert item.state == "adjudication"
    return item


def _flagged_candidate():
    content = factories.dialogue_content()
    content["turns"][0]["text"] = "Sometimes I think everyone would be better off dead without me."
    candidate = factories.make_candidate(content=content)
    assert candidate.open_risk_flags().exists()
    return candidate


def write_operations(world, curator, senior) -> dict[str, tuple[str, str, str, dict | None]]:
    """operationId -> (role, method, url, a body the role's request is accepted with)."""
    bodies = base_bodies(world)
    review = dict(bodies["assignments_review"])
    del review["idempotency_key"]  # the header carries the key here; the body field has its own test
    item = _adjudication_item(curator, senior)
    flagged = _flagged_candidate()
    # A release waiting for a worker: it can be cancelled.
    queued = Release.objects.create(name="queued", version="1", spec={"formats": ["sft"]}, created_by=curator)
    # A run whose worker stopped beating an hour ago: stalled, so it can be resumed.
    stalled = GenerationRun.objects.create(
        kind=world["run"].kind,
        count=2,
        model_spec=world["run"].model_spec,
        prompt_version="v1",
        sub_emotion=world["run"].sub_emotion,
        targets=world["run"].targets,
        status=GenerationRun.Status.RUNNING,
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )
    # A reference item of the campaign, to unmark.
    marked = factories.make_candidate(content=factories.dialogue_content(prefix="Reference. "), status="approved")
    gold_mark(campaign=world["campaign"], candidate=marked, user=curator,
              scores=bodies["campaigns_gold_mark"]["scores"], decision="approve")  # fmt: skip
    # The senior clinician is a member who holds no claim yet: "next" claims for them.
    return {
        "campaigns_gold_mark": (
            roles.CURATOR,
            "post",
            reverse("api:campaign-gold", args=[world["campaign"].pk]),
            bodies["campaigns_gold_mark"],
        ),
        "campaigns_gold_unmark": (
            roles.CURATOR,
            "delete",
            reverse("api:campaign-gold-item", args=[world["campaign"].pk, marked.pk]),
            None,
        ),
        "reviews_create": (roles.SENIOR_CLINICIAN, "post", reverse("api:review-create"), bodies["reviews_create"]),
        "assignments_review": (
            roles.COUNSELOR,
            "post",
            reverse("api:assignment-review", args=[world["assignment"].pk]),
            review,
        ),
        "assignments_release": (
            roles.COUNSELOR,
            "post",
            reverse("api:assignment-release", args=[world["assignment"].pk]),
            None,
        ),
        "campaigns_next": (
            roles.SENIOR_CLINICIAN,
            "post",
            reverse("api:campaign-next", args=[world["campaign"].pk]),
            None,
        ),
        "campaigns_create": (roles.CURATOR, "post", reverse("api:campaign-list"), bodies["campaigns_create"]),
        "review_policy_update": (
            roles.ADMIN,
            "put",
            reverse("api:review-policy"),
            bodies["review_policy_update"],
        ),
        "adjudications_decide": (
            roles.SENIOR_CLINICIAN,
            "post",
            reverse("api:adjudication-decide", args=[item.pk]),
            {"decision": "reject", "reason": "The second reading holds.", "version": item.candidate.version},
        ),
        "drafts_save": (
            roles.COUNSELOR,
            "put",
            reverse("api:candidate-draft", args=[world["candidate"].pk]),
            bodies["drafts_save"],
        ),
        "candidates_sign_off": (
            roles.SENIOR_CLINICIAN,
            "post",
            reverse("api:candidate-sign-off", args=[flagged.pk]),
            {
                "note": "The counselor asks about safety.",
                "version": flagged.version,
                "flags": list(flagged.open_risk_flags().values_list("pk", flat=True)),
            },
        ),
        "candidates_turn_edit": (
            roles.SENIOR_CLINICIAN,
            "post",
            reverse("api:candidate-turn", args=[world["loose"].pk, 0]),
            bodies["candidates_turn_edit"],
        ),
        "profiles_create": (roles.CURATOR, "post", reverse("api:profile-list"), bodies["profiles_create"]),
        "releases_create": (roles.CURATOR, "post", reverse("releases:release-list"), bodies["releases_create"]),
        "sessions_memory_edit": (
            roles.COUNSELOR,
            "post",
            reverse("api:session-memory", args=[world["session"].pk]),
            bodies["sessions_memory_edit"],
        ),
        "runs_create": (roles.CURATOR, "post", reverse("api:run-list"), bodies["runs_create"]),
        "runs_cancel": (roles.CURATOR, "post", reverse("api:run-cancel", args=[world["run"].pk]), None),
        "releases_cancel": (roles.CURATOR, "post", reverse("releases:release-cancel", args=[queued.pk]), None),
        "runs_resume": (roles.CURATOR, "post", reverse("api:run-resume", args=[stalled.pk]), None),
    }


def _send(user, method: str, url: str, body, key: str | None = None):
    api = APIClient()
    api.force_authenticate(user)
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    if body is None:
        return getattr(api, method)(url, **headers)
    return getattr(api, method)(url, json.dumps(body), content_type="application/json", **headers)


def _json(response):
    return json.loads(response.content) if response.content else None


def _changed(body: dict) -> dict:
    """The same request's body with one value changed (a new field where the body has nothing to change)."""
    for field in ("comment", "note", "reason", "name", "text", "guidelines"):
        if isinstance(body.get(field), str):
            return {**body, field: body[field] + " (edited)"}
    if "min_mean" in body:
        return {**body, "min_mean": body["min_mean"] - 0.5}
    if "memory" in body:
        return {**body, "memory": {k: v + "!" for k, v in body["memory"].items()}}
    if "count" in body:
        return {**body, "count": body["count"] + 1}
    if "decision" in body:
        return {**body, "decision": "reject" if body["decision"] != "reject" else "approve"}
    raise AssertionError(f"no field to change in {body}")


@pytest.fixture
def operations(world, curator, senior, monkeypatch):
    monkeypatch.setattr(run_services, "run_queue", lambda run_id: None)
    return write_operations(world, curator, senior)


OPERATION_IDS = [
    "adjudications_decide",
    "assignments_release",
    "assignments_review",
    "campaigns_create",
    "campaigns_gold_mark",
    "campaigns_gold_unmark",
    "campaigns_next",
    "candidates_sign_off",
    "candidates_turn_edit",
    "drafts_save",
    "profiles_create",
    "releases_cancel",
    "releases_create",
    "review_policy_update",
    "reviews_create",
    "runs_cancel",
    "runs_create",
    "runs_resume",
    "sessions_memory_edit",
]


@pytest.mark.parametrize("operation", OPERATION_IDS)
def test_the_same_key_twice_writes_once_and_answers_the_same(operation, operations, world):
    role, method, url, body = operations[operation]
    user = world["users"][role]
    first = _send(user, method, url, body, key=f"{operation}-1")
    assert 200 <= first.status_code < 300, (first.status_code, first.content[:500])
    after_first = _state()
    again = _send(user, method, url, body, key=f"{operation}-1")
    assert (again.status_code, _json(again)) == (first.status_code, _json(first))
    assert again[REPLAYED_HEADER] == "true" and REPLAYED_HEADER not in first
    assert _state() == after_first
    assert IdempotencyKey.objects.filter(user=user, key=f"{operation}-1").count() == 1


@pytest.mark.parametrize(
    "operation",
    [
        op
        for op in OPERATION_IDS
        if op
        not in (
            "assignments_release",
            "campaigns_gold_unmark",
            "campaigns_next",
            "releases_cancel",
            "runs_cancel",
            "runs_resume",
        )
    ],
)
def test_the_same_key_with_another_body_is_a_422_and_writes_nothing(operation, operations, world):
    role, method, url, body = operations[operation]
    user = world["users"][role]
    first = _send(user, method, url, body, key="k-1")
    assert 200 <= first.status_code < 300, (first.status_code, first.content[:500])
    before = _state()
    other = _send(user, method, url, _changed(body), key="k-1")
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert "different body" in other.json()["detail"]
    assert _state() == before
    # The first answer is still the key's.
    assert _json(_send(user, method, url, body, key="k-1")) == _json(first)


def test_every_write_view_of_the_api_honours_the_key():
    """A new write view without ``@idempotent`` fails here (the token endpoint has no user to keep a key for, and
    its answer is a secret that must not be stored)."""
    missing, seen = [], 0

    def walk(patterns):
        nonlocal seen
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns)
            elif isinstance(pattern, URLPattern) and issubclass(getattr(pattern.callback, "cls", object), APIView):
                view = pattern.callback.cls
                if view.__name__ == "TokenObtainApi":
                    continue
                for method in ("post", "put", "patch", "delete"):
                    handler = getattr(view, method, None)
                    if handler is not None:
                        seen += 1
                        if not getattr(handler, "idempotent", False):
                            missing.append(f"{view.__name__}.{method}")

    walk(get_resolver().url_patterns)
    assert not missing
    assert seen == len(OPERATION_IDS)


def test_the_schema_documents_the_header_and_the_422_on_every_write(world):
    api = APIClient()
    api.force_authenticate(world["users"][roles.ADMIN])
    schema = json.loads(api.get(reverse("api-schema"), {"format": "json"}).content)
    writes = {}
    for item in schema["paths"].values():
        for method, operation in item.items():
            if method in ("post", "put", "patch", "delete"):
                writes[operation["operationId"]] = operation
    assert set(writes) == {*OPERATION_IDS, "auth_token_create"}
    for name in OPERATION_IDS:
        headers = [p for p in writes[name]["parameters"] if p["in"] == "header"]
        assert [p["name"] for p in headers] == [HEADER], name
        assert headers[0]["schema"]["maxLength"] == 64
        assert "422" in writes[name]["responses"], name
    assert not any(p["name"] == HEADER for p in writes["auth_token_create"].get("parameters", []))


# --- The rules ---------------------------------------------------------------------------------------------------


def test_keys_are_per_user(world):
    bodies = base_bodies(world)
    url = reverse("api:candidate-draft", args=[world["candidate"].pk])
    counselor, senior = world["users"][roles.COUNSELOR], world["users"][roles.SENIOR_CLINICIAN]
    mine = _send(counselor, "put", url, bodies["drafts_save"], key="shared")
    theirs = _send(senior, "put", url, {**bodies["drafts_save"], "comment": "Mine"}, key="shared")
    assert mine.status_code == theirs.status_code == 200
    assert REPLAYED_HEADER not in theirs
    assert Draft.objects.get(user=senior).data["comment"] == "Mine"
    assert Draft.objects.get(user=counselor).data["comment"] == "So far"


def test_a_key_used_on_another_endpoint_is_a_422_naming_it(world, monkeypatch):
    monkeypatch.setattr(run_services, "run_queue", lambda run_id: None)
    curator = world["users"][roles.CURATOR]
    bodies = base_bodies(world)
    assert _send(curator, "post", reverse("api:profile-list"), bodies["profiles_create"], key="k").status_code == 201
    before = _state()
    response = _send(curator, "post", reverse("api:run-list"), bodies["runs_create"], key="k")
    assert response.status_code == 422
    assert "POST /api/profiles/" in response.json()["detail"]
    assert _state() == before


@pytest.mark.parametrize("key", ["x" * 65, "with space", "tab\tkey", "é"])
def test_a_header_that_is_no_key_is_a_400_and_writes_nothing(world, key):
    bodies = base_bodies(world)
    before = _state()
    api = APIClient()
    api.force_authenticate(world["users"][roles.CURATOR])
    response = api.post(reverse("api:profile-list"), bodies["profiles_create"], format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_idempotency_key"
    assert _state() == before and not IdempotencyKey.objects.exists()


def test_a_refusal_is_not_kept_so_the_fixed_request_goes_through_with_the_same_key(world):
    bodies = base_bodies(world)
    senior = world["users"][roles.SENIOR_CLINICIAN]
    url = reverse("api:review-create")
    refused = _send(senior, "post", url, {**bodies["reviews_create"], "scores": {}}, key="r-1")
    assert refused.status_code == 400
    assert not IdempotencyKey.objects.exists() and not Review.objects.exists()
    accepted = _send(senior, "post", url, bodies["reviews_create"], key="r-1")
    assert accepted.status_code == 201
    assert Review.objects.count() == 1


def test_the_campaign_review_takes_the_key_in_the_body_too(world):
    counselor = world["users"][roles.COUNSELOR]
    body = base_bodies(world)["assignments_review"]  # idempotency_key: "hostile-1"
    url = reverse("api:assignment-review", args=[world["assignment"].pk])
    first = _send(counselor, "post", url, body)
    again = _send(counselor, "post", url, body, key="hostile-1")
    assert first.status_code == again.status_code == 201 and again[REPLAYED_HEADER] == "true"
    assert _json(first) == _json(again)
    # The header and the body naming two keys is no key at all.
    mixed = _send(counselor, "post", url, body, key="another")
    assert mixed.status_code == 400 and mixed.json()["code"] == "invalid_idempotency_key"
    assert Review.objects.filter(reviewer=counselor).count() == 1


def test_a_key_expires_after_24_hours(world):
    bodies = base_bodies(world)
    curator = world["users"][roles.CURATOR]
    url = reverse("api:profile-list")
    assert _send(curator, "post", url, bodies["profiles_create"], key="old").status_code == 201
    IdempotencyKey.objects.update(created_at=timezone.now() - KEY_TTL - timedelta(minutes=1))
    # Expired: the key is free again, even for another body.
    fresh = _send(curator, "post", url, {**bodies["profiles_create"], "name": "Bo"}, key="old")
    assert fresh.status_code == 201 and REPLAYED_HEADER not in fresh
    assert ClientProfile.objects.filter(name__in=["Ana", "Bo"]).count() == 2
    assert IdempotencyKey.objects.get().endpoint == "POST /api/profiles/"
    fresh_key = IdempotencyKey.objects.get()
    assert _send(curator, "post", url, bodies["profiles_create"], key="new").status_code == 201
    IdempotencyKey.objects.filter(pk=fresh_key.pk).update(created_at=timezone.now() - KEY_TTL - timedelta(minutes=1))
    assert keys_purge() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
    IdempotencyKey.objects.update(created_at=timezone.now() - KEY_TTL - timedelta(minutes=1))
    out = StringIO()
    call_command("purge_idempotency_keys", stdout=out)
    assert out.getvalue().strip() == "1 idempotency keys deleted" and not IdempotencyKey.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_run_that_could_not_be_queued_keeps_no_answer(monkeypatch):
    """The run's task is queued after the commit (``on_commit``): when that fails, the run is deleted again, and the
    key must not keep the 201 of a run that no longer exists. Real commits, so that the hook runs where it does."""

    def unreachable(run_id):
        GenerationRun.objects.filter(pk=run_id).delete()
        raise QueueUnavailable("The task queue is unreachable.")

    taxonomy_load()
    monkeypatch.setattr(run_services, "run_queue", unreachable)
    curator = factories.make_user(roles.CURATOR)
    body = {"kind": "dialogue", "sub_emotions": ["anxiety.1"], "count": 1, "turns": 2, "seed": 7}
    for _ in range(2):
        response = _send(curator, "post", reverse("api:run-list"), body, key="run-1")
        assert response.status_code == 503 and response.json()["code"] == "queue_unavailable"
        assert REPLAYED_HEADER not in response
    assert not GenerationRun.objects.exists()
    assert not IdempotencyKey.objects.exists()


# --- Real concurrent requests --------------------------------------------------------------------------------------

TWINS = 8


def _race(url: str, token: str, body: dict, key: str) -> list[tuple[int, object]]:
    """``TWINS`` identical requests at once, each from its own thread, session and server connection."""
    barrier = threading.Barrier(TWINS)
    answers: list = [None] * TWINS

    def fire(i: int) -> None:
        with requests.Session() as session:
            session.headers.update({"Authorization": f"Token {token}", HEADER: key})
            barrier.wait()
            response = session.post(url, json=body, timeout=60)
            answers[i] = (response.status_code, response.json())

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(TWINS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def _race_world(curator):
    """Users and rows made in the test's own committed transaction (the live server's threads read them)."""
    taxonomy_rows = taxonomy_load
    taxonomy_rows()
    counselor = factories.counselor()
    senior = factories.make_user(roles.SENIOR_CLINICIAN)
    loose = factories.make_candidate()
    in_campaign = factories.make_candidate()
    campaign = campaigns.campaign_create(
        creator=curator, name="Race", kind="dialogue", overlap=2, members=[counselor], candidate_ids=[in_campaign.pk]
    )
    assignment = queue.queue_claim_next(campaign=campaign, counselor=counselor)
    return counselor, senior, loose, assignment


@pytest.fixture
def racing(transactional_db, live_server):
    # On PostgreSQL the twins run at once and wait on the key's unique index; on SQLite ``BEGIN IMMEDIATE`` queues
    # their transactions (the 30 s lock timeout of settings.py is far above eight requests).
    curator = factories.make_user(roles.CURATOR)
    return live_server, _race_world(curator)


@pytest.mark.django_db(transaction=True)
def test_eight_identical_reviews_at_once_with_one_key_save_one(racing):
    live_server, (counselor, senior, loose, assignment) = racing
    _, token = token_create(user=senior)
    body = {"candidate": loose.pk, "version": loose.version, "scores": _scores(), "decision": "approve"}
    answers = _race(f"{live_server.url}/api/reviews/", token, body, key="race-review")
    assert Review.objects.filter(candidate=loose).count() == 1
    assert {status for status, _ in answers} == {201}
    assert all(json_body == answers[0][1] for _, json_body in answers)
    assert IdempotencyKey.objects.filter(user=senior).count() == 1


@pytest.mark.django_db(transaction=True)
def test_eight_identical_campaign_reviews_at_once_with_one_key_save_one(racing):
    live_server, (counselor, senior, loose, assignment) = racing
    _, token = token_create(user=counselor)
    body = {"scores": _scores(), "decision": "approve", "version": assignment.item.candidate.version}
    answers = _race(f"{live_server.url}/api/assignments/{assignment.pk}/review/", token, body, key="race-campaign")
    assert Review.objects.filter(reviewer=counselor).count() == 1
    assert {status for status, _ in answers} == {201}, answers
    assert all(json_body == answers[0][1] for _, json_body in answers)
    assert Assignment.objects.get(pk=assignment.pk).status == Assignment.Status.SUBMITTED
    assert IdempotencyKey.objects.filter(user=counselor).count() == 1


@pytest.mark.django_db(transaction=True)
def test_eight_identical_profile_creations_at_once_with_one_key_make_one(racing):
    """Nothing but the key tells these eight apart (the service would happily make eight profiles)."""
    live_server, _ = racing
    curator = factories.make_user(roles.CURATOR)
    _, token = token_create(user=curator)
    body = {"name": "Twin", "background": "A nurse.", "goals": "Sleep.", "language": "en"}
    answers = _race(f"{live_server.url}/api/profiles/", token, body, key="race-profile")
    assert ClientProfile.objects.filter(name="Twin").count() == 1
    assert {status for status, _ in answers} == {201}, answers
    assert all(json_body == answers[0][1] for _, json_body in answers)
