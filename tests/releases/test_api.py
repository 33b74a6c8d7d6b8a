"""The releases API: create from a spec, list, detail, download; curators and admins only, a release anyone else
asks for by id is a 404."""

import json

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.services import token_create
from annotations.models import AuditEvent
from psyroom_admin import roles
from releases import services
from releases.models import Release
from tests import factories
from tests.api_world import base_bodies, body_cases

pytestmark = pytest.mark.django_db

SPEC = {"formats": ["sft"], "splits": {"train": 1, "validation": 0, "test": 0, "seed": 0}}
ROLES = ["anonymous", "no_role", roles.COUNSELOR, roles.SENIOR_CLINICIAN, roles.CURATOR, roles.ADMIN]
MANAGERS = {roles.CURATOR, roles.ADMIN}


def client_for(role: str) -> APIClient:
    api = APIClient()
    if role != "anonymous":
        user = factories.make_user(None if role == "no_role" else role)
        api.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=user)[1]}")
    return api


@pytest.fixture
def ready(taxonomy, curator):
    factories.make_candidate(status="approved")
    release = services.release_create(name="spring", version="1", spec=SPEC, user=curator, queue=False)
    return services.release_build(release=release)


def _denied(role: str) -> int:
    return 401 if role == "anonymous" else 403


@pytest.mark.parametrize("role", ROLES)
def test_create_per_role(taxonomy, role, monkeypatch):
    factories.make_candidate(status="approved")
    monkeypatch.setattr(services, "_enqueue", lambda pk: None)
    response = client_for(role).post(
        reverse("releases:release-list"), {"name": "spring", "version": "1.0", "spec": SPEC}, format="json"
    )
    if role in MANAGERS:
        assert response.status_code == 201, response.content
        body = response.json()
        assert (body["name"], body["version"], body["status"]) == ("spring", "1.0", "queued")
        assert body["spec"]["formats"] == ["sft"]
        assert AuditEvent.objects.filter(action="release.create").count() == 1
    else:
        assert response.status_code == _denied(role)
        assert not Release.objects.exists()


@pytest.mark.parametrize("role", ROLES)
def test_list_detail_and_download_per_role(ready, role):
    api = client_for(role)
    listing = api.get(reverse("releases:release-list"))
    detail = api.get(reverse("releases:release-detail", args=[ready.pk]))
    download = api.get(reverse("releases:release-file", args=[ready.pk, "sft/train.jsonl"]))
    if role in MANAGERS:
        assert listing.status_code == 200 and [r["id"] for r in listing.json()["results"]] == [ready.pk]
        assert detail.status_code == 200
        assert detail.json()["status"] == "ready"
        assert detail.json()["manifest"]["counts"]["train"] == {"dialogue": {"anxiety.1": 1}}
        assert download.status_code == 200
        content = b"".join(download.streaming_content)
        assert content == (services.release_dir(ready) / "sft" / "train.jsonl").read_bytes()
        event = AuditEvent.objects.get(action="release.download")
        assert event.data == {"release": ready.pk, "file": "sft/train.jsonl"}
    else:
        assert listing.status_code == _denied(role)
        # A release they may not see is one that does not exist.
        expected = 401 if role == "anonymous" else 403 if role == "no_role" else 404
        assert detail.status_code == expected
        assert download.status_code == expected
        assert not AuditEvent.objects.filter(action="release.download").exists()


def test_only_the_release_files_are_served(ready):
    api = client_for(roles.CURATOR)
    for name in ("../../settings.py", "sft/../manifest.json", "sft/validation.jsonl", "nothing"):
        assert api.get(reverse("releases:release-file", args=[ready.pk, name])).status_code == 404, name
    manifest = api.get(reverse("releases:release-file", args=[ready.pk, "manifest.json"]))
    assert manifest.status_code == 200
    assert api.get(reverse("releases:release-detail", args=[ready.pk + 1])).status_code == 404


def test_a_bad_spec_is_a_400_naming_the_field(taxonomy):
    factories.make_candidate(status="approved")
    api = client_for(roles.CURATOR)
    url = reverse("releases:release-list")
    cases = [
        ({"formats": ["sft"], "sub_emotions": ["joy.99"]}, "spec.sub_emotions", "joy.99"),
        ({"formats": ["sft"], "splits": {"train": 2, "seed": 0}}, "spec.splits.train", "from 0"),
        ({"formats": ["sft"], "colour": 1}, "spec.colour", "unknown field"),
        ({"formats": ["grpo"]}, "spec", "selects nothing"),
    ]
    for spec, field, words in cases:
        response = api.post(url, {"name": "spring", "version": "1", "spec": spec}, format="json")
        assert response.status_code == 400, response.content
        assert words in " ".join(response.json()[field]), response.json()
    response = api.post(url, {"name": "Spring!", "version": "1", "spec": SPEC}, format="json")
    assert response.status_code == 400 and "name" in response.json()
    assert not Release.objects.exists()


def test_a_version_is_built_once(ready):
    api = client_for(roles.CURATOR)
    response = api.post(
        reverse("releases:release-list"), {"name": "spring", "version": "1", "spec": SPEC}, format="json"
    )
    assert response.status_code == 400
    assert "a new build is a new version" in response.json()["version"][0]


def test_hostile_bodies_are_refused_without_a_500_or_a_write(world, monkeypatch):
    """The create operation's share of tests/annotations/test_hostile_input.py, in the fast lane: one value at a
    time made a NUL, a lone surrogate, a huge number or 40 levels deep, and bodies that are no object."""
    monkeypatch.setattr(services, "_enqueue", lambda pk: None)
    api = APIClient(raise_request_exception=False)
    api.force_login(world["users"][roles.CURATOR])
    schema = api.get(reverse("api-schema"), {"format": "json"}).json()
    documented = set(schema["paths"]["/api/releases/"]["post"]["responses"])
    base = base_bodies(world)["releases_create"]
    bodies = [body for _, body in body_cases(base, properties=())]
    bodies.append(json.dumps({**base, "spec": "sft"}).encode())
    before = Release.objects.count()
    problems = []
    for body in bodies:
        response = api.generic("POST", reverse("releases:release-list"), body, content_type="application/json")
        if response.status_code < 400 or str(response.status_code) not in documented:
            problems.append(f"{body[:200]!r}: {response.status_code}")
    assert not problems, "\n".join(problems)
    assert Release.objects.count() == before


def test_a_blocked_build_names_its_masked_hits_and_parquet_and_the_card_download(ready, curator):
    api = client_for(roles.CURATOR)
    for name in ("sft/train.parquet", "README.md"):
        assert api.get(reverse("releases:release-file", args=[ready.pk, name])).status_code == 200, name
    content = factories.dialogue_content(prefix="Mail. ")
    content["turns"][2]["text"] = "Write to li.wei@example.com"
    candidate = factories.make_candidate(content=content, status="approved")
    release = services.release_create(name="leaky", version="1", spec=SPEC, user=curator, queue=False)
    services.release_build(release=release)
    body = api.get(reverse("releases:release-detail", args=[release.pk])).json()
    assert body["status"] == "failed" and "PII scan" in body["error"]
    assert body["pii_hits"] == [
        {"candidate": candidate.pk, "where": "turns[2].text", "detector": "email", "match": "li**************om"}
    ]


@pytest.mark.parametrize("role", ROLES)
def test_cancel_per_role(taxonomy, curator, role):
    factories.make_candidate(status="approved")
    queued = services.release_create(name="autumn", version="1", spec=SPEC, user=curator, queue=False)
    response = client_for(role).post(reverse("releases:release-cancel", args=[queued.pk]))
    queued.refresh_from_db()
    if role in MANAGERS:
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "cancelled"
        assert queued.status == Release.Status.CANCELLED
        assert AuditEvent.objects.filter(action="release.cancel", data__release=queued.pk).count() == 1
    else:
        assert response.status_code == (401 if role == "anonymous" else 403 if role == "no_role" else 404)
        assert queued.status == Release.Status.QUEUED
        assert not AuditEvent.objects.filter(action="release.cancel").exists()


def test_a_finished_release_cannot_be_cancelled(ready):
    api = client_for(roles.CURATOR)
    response = api.post(reverse("releases:release-cancel", args=[ready.pk]))
    assert response.status_code == 409
    assert response.json()["status"] == "ready" and "only a queued or building" in response.json()["detail"]
    ready.refresh_from_db()
    assert ready.status == Release.Status.READY
    assert (services.release_dir(ready) / "sft" / "train.jsonl").is_file()
    assert api.post(reverse("releases:release-cancel", args=[ready.pk + 1])).status_code == 404
    assert api.get(reverse("releases:release-cancel", args=[ready.pk])).status_code == 405
