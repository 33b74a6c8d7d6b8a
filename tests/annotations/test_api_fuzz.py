"""Schemathesis against the live OpenAPI schema, for every role's API token (the ``fuzz`` lane: `make test-fuzz`).

Each operation gets a bounded number of generated requests (``PSYROOM_FUZZ_EXAMPLES``, 12 by default) from a fixed
seed, valid ones and ones that break the schema, with the ids in its path pointing at objects that exist, so that
requests reach the serializers and the services rather than a 404. Every answer must pass schemathesis' checks: no
500, a status the schema documents, a body that matches the documented schema, and a refused request accepted by no
one. Complements ``test_hostile_input.py``, which sends hand-written hostile values (NUL, surrogates, depth).
"""

import os

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.urls import reverse
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from knox.models import AuthToken
from rest_framework.test import APIClient
from schemathesis import GenerationMode, checks
from schemathesis.core.failures import FailureGroup

from generation.services import runs as run_services
from psyroom_admin import roles
from tests.api_world import ROLES, path_ids

pytestmark = [pytest.mark.django_db, pytest.mark.fuzz]


EXAMPLES = int(os.environ.get("PSYROOM_FUZZ_EXAMPLES", "12"))
# What every answer must pass. Not schemathesis' positive_data_acceptance: a request can fit the schema and still be
# refused by a rule that depends on the data (an item that is not claimed, a version that is stale), with a 400 or a
# 409 that the schema documents; nor its stateful checks (this runs one operation at a time).
CHECKED = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
    checks.ignored_auth,
]
# The token endpoint is fuzzed too, but its answers lock accounts out (django-axes): it gets its own test below.
TOKEN_OPERATION = "auth_token_create"


@pytest.fixture
def api_schema(world):
    api = APIClient()
    api.force_login(world["users"][roles.ADMIN])
    response = api.get(reverse("api-schema"), {"format": "json"})
    assert response.status_code == 200
    schema = schemathesis.openapi.from_dict(response.json())
    schema.app = WSGIHandler()
    # The requests run in the test's thread, on its connection and inside its transaction: the end of a request
    # must neither start nor end by closing that connection (as in Django's test client).
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    yield schema
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)


def _path_parameters(operation, world) -> dict:
    """Existing objects for the ``{id}`` (and ``{index}``) in the operation's path."""
    path = operation.path
    values = {}
    if "{index}" in path:
        values["index"] = 0
    if "{path}" in path:
        values["path"] = "manifest.json"
    if "{candidate}" in path:
        values["candidate"] = world["approved"].pk
    if "{id}" in path:
        pk = world["loose"].pk if "/turns/" in path else None
        for prefix, value in path_ids(world).items():
            if pk is None and path.startswith(prefix):
                pk = value
        values["id"] = pk
    return values


def _fuzz(operation, headers: dict, world, *, mode: GenerationMode) -> list[str]:
    """Run ``EXAMPLES`` generated cases of one operation; the failures, as text (empty when all passed)."""
    failures: list[str] = []
    fixed = _path_parameters(operation, world)

    @seed(20261203)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        if fixed and case.path_parameters is not None:
            case.path_parameters.update(fixed)
        response = case.call(headers=headers)
        try:
            case.validate_response(response, checks=CHECKED, headers=headers)
        except (AssertionError, FailureGroup) as error:
            failures.append(f"{operation.label} [{mode.value}] {case.as_curl_command()}\n{error}")

    try:
        run()
    except Unsatisfiable:
        # Negative mode finds nothing to break in an operation without parameters or body: nothing to send.
        assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no valid request could be generated"
    return failures


@pytest.mark.parametrize("role", ROLES)
def test_every_operation_passes_schemathesis_for_every_role(role, world, api_schema, monkeypatch):
    # A run that is accepted is queued: no worker is running, and nothing here needs the task.
    monkeypatch.setattr(run_services, "run_queue", lambda run_id: None)
    _, token = AuthToken.objects.create(world["users"][role])
    headers = {"Authorization": f"Token {token}"}
    failures = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 26
    for operation in operations:
        if operation.definition.raw.get("operationId") == TOKEN_OPERATION:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _fuzz(operation, headers, world, mode=mode)
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(failures[:20])


def test_the_token_endpoint_passes_schemathesis(world, api_schema, settings):
    settings.AXES_ENABLED = False  # lockout has its own tests; here every guess must still be a documented answer
    operation = next(
        result.ok()
        for result in api_schema.get_all_operations()
        if result.ok().definition.raw.get("operationId") == TOKEN_OPERATION
    )
    failures = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        failures += _fuzz(operation, {}, world, mode=mode)
    assert not failures, "\n\n".join(failures[:20])
