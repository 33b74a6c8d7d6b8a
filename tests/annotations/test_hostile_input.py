"""Hostile input at the API's edge, for every operation of the schema and every role.

Each operation is sent NUL bytes in each query parameter and, where it takes a body, a valid body with one value at a
time replaced by a NUL byte, a lone surrogate or a huge integer, plus bodies that are not objects, nested too deep or
not JSON at all. No answer may be a 500, every answer must be a status the schema documents for that operation, and a
refusal writes nothing (reviews, revisions, audit events, runs, campaigns). Runs on SQLite and on PostgreSQL, where a
NUL byte that reached the database would fail the query.
"""

import json
from urllib.parse import urlencode

import pytest
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse
from rest_framework.test import APIClient

from annotations.models import AuditEvent, Campaign, Review
from generation.models import (
    ClientProfile,
    GenerationRun,
    Revision,
)
from generation.services import runs as run_services
from psyroom_admin import roles
from releases.models import Release
from tests.api_world import HUGE, ROLES, base_bodies, body_cases, deep, path_ids

pytestmark = pytest.mark.django_db

WRITTEN = (Review, Revision, AuditEvent, GenerationRun, Campaign, Release)


def _url(template: str, world) -> str:
    url = template.replace("{index}", "0").replace("{path}", "manifest.json")
    url = url.replace("{candidate}", str(world["approved"].pk))
    if "/turns/" in url:
        return url.replace("{id}", str(world["loose"].pk))
    for prefix, pk in path_ids(world).items():
        if url.startswith(prefix):
            return url.replace("{id}", str(pk))
    assert "{" not in url, f"no object for {template}"
    return url


_SCHEMA: dict = {}


@pytest.fixture
def schema(world):
    """The OpenAPI schema as a client reads it (once per test module)."""
    if not _SCHEMA:
        api = APIClient()
        api.force_login(world["users"][roles.ADMIN])
        response = api.get(reverse("api-schema"), {"format": "json"})
        assert response.status_code == 200
        _SCHEMA.update(json.loads(response.content))
    return _SCHEMA


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield path, method, operation


def _properties(schema, operation) -> list[str]:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    ref = content.get("schema", {}).get("$ref", "")
    component = schema["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {}) if ref else {}
    return list(component.get("properties", {}))


def _counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in WRITTEN}


class Checker:
    def __init__(self, api: APIClient):
        self.api = api
        self.problems: list[str] = []

    def send(self, operation, method: str, url: str, *, body: bytes | None = None, what: str = "") -> int:
        before = _counts()
        # A savepoint, so that on PostgreSQL a failed query (a 500) does not abort the test's transaction.
        savepoint = transaction.savepoint()
        if body is None:
            response = self.api.generic(method.upper(), url)
        else:
            response = self.api.generic(method.upper(), url, body, content_type="application/json")
        if response.status_code >= 500:
            transaction.savepoint_rollback(savepoint)
        else:
            transaction.savepoint_commit(savepoint)
        documented = operation["responses"]
        where = f"{method.upper()} {url} {what}"
        if response.status_code >= 500:
            self.problems.append(f"{where}: {response.status_code}")
        elif str(response.status_code) not in documented:
            self.problems.append(f"{where}: {response.status_code} is not documented ({', '.join(documented)})")
        if response.status_code >= 400 and _counts() != before:
            self.problems.append(f"{where}: refused with {response.status_code} but wrote {_counts()} (was {before})")
        return response.status_code


# A draft is what a form holds so far: its values are kept as they are, a huge number included (it is JSON, and only
# the form reads it back).
LENIENT = {"drafts_save"}


@pytest.mark.fuzz
@pytest.mark.parametrize("role", ROLES)
def test_no_operation_answers_500_to_hostile_input(role, world, schema):
    # A 500 is recorded with the rest rather than raised, so that one run lists them all.
    api = APIClient(raise_request_exception=False)
    api.force_login(world["users"][role])
    checker = Checker(api)
    bases = base_bodies(world)
    for path, method, operation in _operations(schema):
        url = _url(path, world)
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query":
                continue
            for bad in ("\x00", "x\x00y", "¹", str(HUGE), "935411043430640910336", "-1", "0"):
                query = urlencode({parameter["name"]: bad})
                checker.send(operation, method, f"{url}?{query}", what=f"query {parameter['name']}={bad!r}")
        if "requestBody" not in operation:
            continue
        base = bases[operation["operationId"]]
        for what, body in body_cases(base, _properties(schema, operation)):
            status = checker.send(operation, method, url, body=body, what=what)
            lenient = operation["operationId"] in LENIENT and what.rsplit("=", 1)[-1].lstrip("-").isdigit()
            if status < 400 and not lenient:
                checker.problems.append(f"{method.upper()} {url} {what}: accepted ({status})")
    assert not checker.problems, "\n".join(checker.problems)


# Who may send each base body and be answered 2xx: proof that the hostile cases above start from a body that the
# operation takes, so that they reach its serializer's and its service's checks, not only the first missing field.
ACCEPTED_BY = {
    "adjudications_decide": None,  # the item waits for reviews, not for adjudication: a 400 from the service
    "assignments_review": roles.COUNSELOR,
    "auth_token_create": None,  # no such user: a 400
    "campaigns_create": roles.CURATOR,
    "campaigns_gold_mark": roles.CURATOR,
    "drafts_save": roles.COUNSELOR,
    "candidates_sign_off": None,  # no open flag 1: a 400 from the service
    "candidates_turn_edit": roles.SENIOR_CLINICIAN,
    "profiles_create": roles.CURATOR,
    "releases_create": roles.CURATOR,
    "review_policy_update": roles.ADMIN,
    "reviews_create": roles.SENIOR_CLINICIAN,
    "runs_create": roles.CURATOR,
    "sessions_memory_edit": roles.COUNSELOR,
}


def test_the_base_bodies_are_accepted(world, schema, monkeypatch):
    monkeypatch.setattr(run_services, "run_queue", lambda run_id: None)
    for path, method, operation in _operations(schema):
        if "requestBody" not in operation:
            continue
        bases = base_bodies(world)  # read again: an accepted edit moved a version on
        name = operation["operationId"]
        assert name in ACCEPTED_BY, f"no base body for {name}"
        if ACCEPTED_BY[name] is None:
            continue
        api = APIClient()
        api.force_login(world["users"][ACCEPTED_BY[name]])
        response = api.generic(
            method.upper(), _url(path, world), json.dumps(bases[name]), content_type="application/json"
        )
        assert response.status_code < 300, (name, response.status_code, response.content[:500])


def test_an_oversized_json_body_is_refused(people, settings):
    api = APIClient()
    api.force_login(people["users"][roles.CURATOR])
    before = _counts()
    body = json.dumps({"name": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)})
    response = api.post(reverse("api:profile-list"), body, content_type="application/json")
    assert response.status_code == 413
    assert "detail" in response.json()
    assert _counts() == before


def test_the_schema_generates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))


# --- The edge rules, one by one -----------------------------------------------------------------------------------


def _api(user) -> APIClient:
    api = APIClient()
    api.force_login(user)
    return api


def test_a_nul_in_a_query_filter_is_a_400_naming_the_parameter(people):
    before = _counts()
    response = _api(people["users"][roles.SENIOR_CLINICIAN]).get(reverse("api:candidate-list"), {"sub_emotion": "\x00"})
    assert response.status_code == 400
    assert response.json()["detail"].endswith("at query sub_emotion")
    assert _counts() == before


def test_a_nul_in_a_page_filter_is_a_400(client, people):
    client.force_login(people["users"][roles.SENIOR_CLINICIAN])
    response = client.get("/", {"sub_emotion": "anx\x00iety"})
    assert response.status_code == 400
    assert b"query sub_emotion" in response.content


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"scores": {"empathy": "4\x00"}}, "at scores.empathy"),
        ({"risk_flags": ["self_harm", "\ud800"]}, "at risk_flags[1]"),
        ({"comment": {"\x00": 1}}, "in a key at comment"),
        ({"scores": deep(40)}, "nested more than 32 deep at scores[0]"),
    ],
)
def test_a_body_with_a_nul_a_surrogate_or_too_deep_is_a_400_naming_where(people, value, where):
    api = _api(people["users"][roles.COUNSELOR])
    before = _counts()
    url = reverse("api:candidate-draft", args=[people["candidate"].pk])
    response = api.put(url, json.dumps(value), content_type="application/json")
    assert response.status_code == 400
    assert where in response.json()["detail"], response.json()
    assert _counts() == before


def test_nesting_up_to_the_limit_is_read():
    from psyroom_admin.edge import MAX_DEPTH, value_problem

    # The body's object is level 1: {"a": 31 lists} is 32 deep.
    assert value_problem({"a": deep(MAX_DEPTH - 1)}) is None
    deeper = f"nested more than {MAX_DEPTH} deep at a" + "[0]" * (MAX_DEPTH - 1)
    assert value_problem({"a": deep(MAX_DEPTH)}) == deeper


@pytest.mark.parametrize("body", [b"1", b"[]", b'["scores"]', b"null", b'"text"'])
def test_a_draft_that_is_not_an_object_is_a_400(people, body):
    api = _api(people["users"][roles.COUNSELOR])
    response = api.put(
        reverse("api:candidate-draft", args=[people["candidate"].pk]), body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json() == {"data": ["a draft is an object"]}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"limit": "935411043430640910336"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "¹"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": str(2**31)}, "offset"),
    ],
)
@pytest.mark.parametrize("name", ["api:candidate-list", "api:question-list", "api:run-list", "api:profile-list"])
def test_paging_out_of_bounds_is_a_400_naming_the_parameter(people, name, query, parameter):
    response = _api(people["users"][roles.ADMIN]).get(reverse(name), query)
    assert response.status_code == 400
    assert list(response.json()) == [parameter]


def test_paging_within_bounds(people):
    api = _api(people["users"][roles.ADMIN])
    page = api.get(reverse("api:candidate-list"), {"limit": 200, "offset": 2**31 - 1}).json()
    assert page["results"] == [] and page["count"] >= 3
    page = api.get(reverse("api:candidate-list"), {"limit": 1}).json()
    assert len(page["results"]) == 1 and "limit=1" in page["next"]


def test_profiles_are_paginated(people):
    ClientProfile.objects.bulk_create([ClientProfile(name=f"Client {i:02}") for i in range(3)])
    api = _api(people["users"][roles.CURATOR])
    page = api.get(reverse("api:profile-list"), {"limit": 2}).json()
    assert page["count"] == ClientProfile.objects.count() == 4
    assert [p["name"] for p in page["results"]] == ["Client 00", "Client 01"]
    assert page["next"] and page["previous"] is None


@pytest.mark.parametrize("value", [10**30, 2**63, -1, 0])
def test_a_primary_key_out_of_range_is_a_400(people, value):
    body = {**base_bodies(people)["reviews_create"], "candidate": value}
    before = _counts()
    response = _api(people["users"][roles.SENIOR_CLINICIAN]).post(reverse("api:review-create"), body, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["candidate"]
    assert _counts() == before


@pytest.mark.parametrize("value", ["¹", "٣", "99999999999999999999999", "0", "-1"])
def test_a_model_spec_that_is_no_spec_id_is_a_400(people, value):
    body = {**base_bodies(people)["runs_create"], "model_spec": value}
    before = _counts()
    response = _api(people["users"][roles.CURATOR]).post(reverse("api:run-list"), body, format="json")
    assert response.status_code == 400
    assert response.json() == {"model_spec": [f"no model spec named or numbered {value!r}"]}
    assert _counts() == before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("members", [2**31]),
        ("candidate_ids", [2**63]),
        ("overlap", 2**31),
        ("lease_seconds", -(2**31)),
    ],
)
def test_campaign_integers_out_of_range_are_a_400(people, field, value):
    body = {**base_bodies(people)["campaigns_create"], field: value}
    before = _counts()
    response = _api(people["users"][roles.CURATOR]).post(reverse("api:campaign-list"), body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert _counts() == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"policy": {"min_approvals": 10**30}}, "policy"),
        ({"policy": {"min_mean": "\x00"}}, "detail"),
        ({"policy": ["min_mean"]}, "policy"),
        ({"filters": {"sub_emotions": ["\x00"]}}, "detail"),
        ({"filters": {"scenarios": [10**30]}}, "filters"),
        ({"filters": {"run": "1"}}, "filters"),
        ({"filters": {"status": "bogus"}}, "filters"),
        ({"filters": "anxiety.1"}, "filters"),
    ],
)
def test_campaign_policy_and_filters_are_checked(people, change, field):
    body = {**base_bodies(people)["campaigns_create"], **change}
    before = _counts()
    response = _api(people["users"][roles.CURATOR]).post(reverse("api:campaign-list"), body, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert _counts() == before


# --- Pages -----------------------------------------------------------------------------------------------------------


def test_a_page_form_with_a_nul_is_a_400(client, people):
    client.force_login(people["users"][roles.CURATOR])
    before = _counts()
    response = client.post(reverse("annotations:campaign_create"), {"name": "Spring\x00", "kind": "dialogue"})
    assert response.status_code == 400
    assert _counts() == before


def test_page_inputs_that_look_like_digits_are_not_a_500(client, people):
    client.force_login(people["users"][roles.SENIOR_CLINICIAN])
    candidate = people["loose"]
    edit = reverse("annotations:turn_edit_form", args=[candidate.pk, 0])
    assert client.get(edit, {"version": "¹"}).status_code == 200
    client.force_login(people["users"][roles.CURATOR])
    before = _counts()
    form = {"name": "Spring", "kind": "dialogue", "overlap": 2, "scenarios": ["¹", "99999999999999999999999"]}
    response = client.post(reverse("annotations:campaign_create"), form)
    assert response.status_code in (200, 400)
    # The scenarios are a picker now: a value that is none of its choices is named as such.
    assert "¹ is not one of the available choices" in response.content.decode()
    assert _counts() == before
