"""A model spec reaches only the operator's servers, sends only the operator's credentials, and only admins edit it.

The settings ``PSYROOM_MODEL_SERVERS`` and ``PSYROOM_MODEL_CREDENTIALS`` decide; the checks run when a spec is saved
and again when a worker loads it. The local scripted server shows what was (not) sent.
"""

import logging

import pytest
from django.core.exceptions import ImproperlyConfigured, PermissionDenied, ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from generation.backends import loading
from generation.backends import server as server_backend
from generation.backends.base import ModelLoadError, SamplingParams
from generation.backends.loading import backend_for
from generation.backends.server import BackendError, OpenAIBackend
from generation.forms import RunForm
from generation.models import GenerationRun, ModelSpec
from generation.services import runs as run_services
from generation.services.modelspecs import modelspec_save
from generation.services.runs import run_execute
from generation.validators import model_server_check
from psyroom_admin import roles
from psyroom_admin import settings as project_settings
from tests import factories

from .test_backends_http import PROMPT, error, ok

pytestmark = pytest.mark.django_db

SECRET = "the-django-secret-key-never-sent"
API_KEY = "sk-allowed-credential"


@pytest.fixture(autouse=True)
def fresh_backends(monkeypatch):
    monkeypatch.setattr(loading, "_loaded", {})
    monkeypatch.setattr(server_backend, "RETRY_BASE_DELAY_S", 0.001)
    monkeypatch.setattr(server_backend, "RETRY_MAX_DELAY_S", 0.01)


@pytest.fixture
def server(serve, settings, monkeypatch, taxonomy):
    """The operator's model server, allowed with the credential ``vllm``."""
    server = serve(ok("From the allowed server."))
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("PSYROOM_TEST_VLLM_KEY", API_KEY)
    settings.PSYROOM_MODEL_SERVERS = [server.base_url]
    settings.PSYROOM_MODEL_CREDENTIALS = {"vllm": "PSYROOM_TEST_VLLM_KEY"}
    return server


def _spec(**fields) -> ModelSpec:
    defaults = {"name": "vllm-qwen", "backend": ModelSpec.Backend.OPENAI, "path": "qwen2.5-7b-instruct"}
    return ModelSpec(**{**defaults, **fields})


def _written_directly(**fields) -> ModelSpec:
    """A row as one written before the checks existed, or straight into the database: no validation."""
    spec = _spec(**fields)
    spec.save()
    return spec


def _run_with(spec: ModelSpec) -> GenerationRun:
    run = GenerationRun.objects.create(
        kind="dialogue", count=1, model_spec=spec, prompt_version="v1", targets=[{"sub_emotion": "anxiety.1"}]
    )
    return run_execute(run_id=run.pk)


def _sent_the_secret(*servers) -> bool:
    return any(SECRET in str(request) for server in servers for request in server.requests)


# --- Credentials: a name in PSYROOM_MODEL_CREDENTIALS, never an environment variable -----------------------------


def test_a_spec_naming_secret_key_is_refused_on_save(server):
    with pytest.raises(ValidationError) as caught:
        modelspec_save(spec=_spec(base_url=server.base_url, api_key_env="SECRET_KEY"))

    assert "PSYROOM_MODEL_CREDENTIALS" in " ".join(caught.value.message_dict["api_key_env"])
    assert not ModelSpec.objects.filter(name="vllm-qwen").exists()


def test_a_spec_naming_secret_key_in_the_database_fails_its_run_and_sends_nothing(server):
    spec = _written_directly(base_url=server.base_url, api_key_env="SECRET_KEY")

    run = _run_with(spec)

    assert run.status == GenerationRun.Status.FAILED
    assert "'SECRET_KEY' is not a credential name in the PSYROOM_MODEL_CREDENTIALS setting" in run.error
    assert SECRET not in run.error
    assert server.requests == []


@pytest.mark.parametrize("variable", ["SECRET_KEY", "DATABASE_URL", "PSYROOM_TEST_VLLM_KEY"])
def test_backend_for_refuses_a_variable_name_in_place_of_a_credential_name(server, variable):
    with pytest.raises(ModelLoadError, match="PSYROOM_MODEL_CREDENTIALS"):
        backend_for(_spec(base_url=server.base_url, api_key_env=variable))
    assert server.requests == []


def test_no_credential_is_allowed_when_the_setting_is_empty(server, settings):
    settings.PSYROOM_MODEL_CREDENTIALS = {}
    with pytest.raises(ModelLoadError, match=r"\(known: none are set\)"):
        backend_for(_spec(base_url=server.base_url, api_key_env="vllm"))


# --- Servers: under a prefix of PSYROOM_MODEL_SERVERS, compared parsed -------------------------------------------


def test_a_base_url_outside_the_allowed_servers_is_refused_on_save(server, serve):
    elsewhere = serve(ok())
    with pytest.raises(ValidationError) as caught:
        modelspec_save(spec=_spec(base_url=elsewhere.base_url, api_key_env="vllm"))

    assert "PSYROOM_MODEL_SERVERS" in " ".join(caught.value.message_dict["base_url"])
    assert not ModelSpec.objects.exists()


def test_a_base_url_outside_the_allowed_servers_fails_its_run_and_sends_nothing(server, serve):
    elsewhere = serve(ok())
    spec = _written_directly(base_url=elsewhere.base_url, api_key_env="vllm")

    run = _run_with(spec)

    assert run.status == GenerationRun.Status.FAILED
    assert "is not under a server in the PSYROOM_MODEL_SERVERS setting" in run.error
    assert elsewhere.requests == [] and server.requests == []


def test_no_server_is_allowed_when_the_setting_is_empty(server, settings):
    settings.PSYROOM_MODEL_SERVERS = []
    with pytest.raises(ModelLoadError, match=r"\(allowed: none are set\)"):
        backend_for(_spec(base_url=server.base_url))
    assert server.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://gpu-1:8000.evil.com/v1",
        "http://gpu-1:8000@evil.com/v1",
        "http://evil.com/http://gpu-1:8000/v1",
        "http://gpu-1.evil.com:8000/v1",
        "http://evil-gpu-1:8000/v1",
        "https://gpu-1:8000/v1",
        "http://gpu-1:8001/v1",
        "http://gpu-1/v1",
        "http://gpu-1:8000/v10",
        "http://gpu-1:8000/",
        "http://gpu-1:8000/v1/../admin",
        "http://gpu-1:8000/v1/%2e%2e/admin",
        "http://gpu-1:8000/v1?next=http://evil.com",
        "http://gpu-1:8000/v1#x",
        "http://gpu-1:8000\t/v1",
        "http://gpu-1:8000\\@evil.com/v1",
        "http://gpu-1:8000/v1 ",
        "ftp://gpu-1:8000/v1",
        "file:///etc/passwd",
        "//gpu-1:8000/v1",
    ],
)
def test_a_lookalike_server_is_refused(settings, url):
    settings.PSYROOM_MODEL_SERVERS = ["http://gpu-1:8000/v1", "http://gpu-2/v1"]
    with pytest.raises(ValidationError):
        model_server_check(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://gpu-1:8000/v1",
        "http://gpu-1:8000/v1/",
        "http://gpu-1:8000/v1/openai",
        "HTTP://GPU-1:8000/v1",
        "http://gpu-2:80/v1",
        "http://gpu-2/v1",
    ],
)
def test_a_url_under_an_allowed_server_passes(settings, url):
    settings.PSYROOM_MODEL_SERVERS = ["http://gpu-1:8000/v1", "http://gpu-2/v1"]
    model_server_check(url)


def test_a_redirect_is_not_followed_with_the_key(server, serve):
    elsewhere = serve(ok("Followed."))
    server.script[:] = [(307, b"", {"Location": elsewhere.base_url + "/chat/completions"})]
    remote = backend_for(_written_directly(base_url=server.base_url, api_key_env="vllm"))

    with pytest.raises(BackendError, match="HTTP 307") as caught:
        remote.generate([PROMPT], SamplingParams())

    assert caught.value.attempts == 1
    assert elsewhere.requests == []


# --- The happy path --------------------------------------------------------------------------------------------


def test_an_allowed_credential_and_server_are_saved_and_used(server):
    spec = modelspec_save(spec=_spec(base_url=server.base_url + "/", api_key_env="vllm"))

    remote = backend_for(ModelSpec.objects.get(pk=spec.pk))

    assert remote.generate([PROMPT], SamplingParams())[0].text == "From the allowed server."
    [request] = server.requests
    assert request["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert not _sent_the_secret(server)


def test_a_spec_without_a_credential_sends_no_authorization(server):
    remote = backend_for(modelspec_save(spec=_spec(base_url=server.base_url)))
    remote.generate([PROMPT], SamplingParams())
    assert "Authorization" not in server.requests[0]["headers"]


def test_an_http_spec_needs_a_base_url_and_a_local_spec_needs_no_server(server):
    with pytest.raises(ValidationError) as caught:
        modelspec_save(spec=_spec())
    assert "base_url" in caught.value.message_dict
    modelspec_save(spec=_spec(name="local", backend=ModelSpec.Backend.TRANSFORMERS, path="/models/tiny"))


# --- Remote error bodies: a bounded, sanitised excerpt in the run; the body in the worker's log -----------------

MARKER = "INTERNAL-SERVICE-MARKER"


@pytest.mark.parametrize(
    "body",
    [
        ("A" * 300 + MARKER + "\n<html>" * 50).encode(),
        {"error": {"message": "B" * 300 + MARKER}},
    ],
)
def test_a_long_error_body_leaves_a_bounded_run_error_and_is_logged(server, caplog, body):
    server.script[:] = [(500, body)]
    spec = _written_directly(base_url=server.base_url, api_key_env="vllm", max_retries=1)

    with caplog.at_level(logging.WARNING, logger="generation.backends"):
        run = _run_with(spec)

    assert run.status == GenerationRun.Status.FAILED
    assert "HTTP 500" in run.error
    assert MARKER not in run.error
    assert len(run.error) < 400 + len(server.base_url)
    assert "\n" not in run.error
    assert any(MARKER in record.getMessage() for record in caplog.records if record.levelno == logging.WARNING)


def test_a_server_echoing_the_key_does_not_put_it_in_the_run(server):
    server.script[:] = [error(401, f"Bad key Bearer {API_KEY}")]
    run = _run_with(_written_directly(base_url=server.base_url, api_key_env="vllm"))

    assert "HTTP 401: Bad key Bearer [redacted]" in run.error
    assert API_KEY not in run.error


def test_a_malformed_answer_is_excerpted_too(serve):
    server = serve((200, b"<html>" + b"C" * 500 + MARKER.encode() + b"</html>"))
    remote = OpenAIBackend(name="remote", model="m", base_url=server.base_url, max_retries=0)
    with pytest.raises(BackendError, match="a body that is not JSON") as caught:
        remote.generate([PROMPT], SamplingParams())
    assert MARKER not in str(caught.value)
    assert len(str(caught.value)) < 300 + len(server.base_url)


# --- Who edits specs: admins only -------------------------------------------------------------------------------


@pytest.fixture
def stored_spec(server):
    return modelspec_save(spec=_spec(base_url=server.base_url, api_key_env="vllm"))


def _admin_form(**fields) -> dict:
    return {
        "name": "vllm-qwen",
        "backend": "openai",
        "path": "qwen2.5-7b-instruct",
        "base_url": "",
        "api_key_env": "",
        "timeout_s": 120,
        "max_retries": 3,
        "dtype": "auto",
        "device": "auto",
        "batch_size": 8,
        "parameters": "{}",
        **fields,
    }


def test_a_curator_views_but_cannot_add_change_or_delete_a_spec_in_the_admin(client, role_groups, curator, stored_spec):
    client.force_login(curator)
    change = reverse("admin:generation_modelspec_change", args=[stored_spec.pk])

    assert client.get(reverse("admin:generation_modelspec_changelist")).status_code == 200
    page = client.get(change)
    assert page.status_code == 200
    assert b'name="base_url"' not in page.content  # read-only
    assert client.get(reverse("admin:generation_modelspec_add")).status_code == 403
    assert client.post(reverse("admin:generation_modelspec_add"), _admin_form(name="other")).status_code == 403
    assert client.post(change, _admin_form(base_url="http://evil.example/v1")).status_code == 403
    assert client.get(reverse("admin:generation_modelspec_delete", args=[stored_spec.pk])).status_code == 403

    stored_spec.refresh_from_db()
    assert stored_spec.base_url != "http://evil.example/v1"
    assert ModelSpec.objects.count() == 1


def test_curators_hold_only_the_view_permission_on_specs(role_groups, curator):
    assert curator.has_perm("generation.view_modelspec")
    assert not curator.has_perm("generation.add_modelspec")
    assert not curator.has_perm("generation.change_modelspec")


def test_an_admin_adds_a_spec_in_the_admin_and_a_secret_key_spec_is_refused(admin_client, server):
    add = reverse("admin:generation_modelspec_add")
    assert admin_client.get(add).status_code == 200

    refused = admin_client.post(add, _admin_form(base_url=server.base_url, api_key_env="SECRET_KEY"))
    assert refused.status_code == 200
    assert b"PSYROOM_MODEL_CREDENTIALS" in refused.content
    lookalike = admin_client.post(add, _admin_form(base_url="http://127.0.0.1:1.evil.com/v1", api_key_env="vllm"))
    assert lookalike.status_code == 200
    assert not ModelSpec.objects.exists()

    added = admin_client.post(add, _admin_form(base_url=server.base_url, api_key_env="vllm"))
    assert added.status_code == 302
    assert ModelSpec.objects.get(name="vllm-qwen").api_key_env == "vllm"


def test_the_service_refuses_a_curator(curator, server):
    with pytest.raises(PermissionDenied):
        modelspec_save(spec=_spec(base_url=server.base_url), user=curator)
    assert not ModelSpec.objects.exists()


def test_the_service_lets_an_admin_save(server):
    admin = factories.make_user(roles.ADMIN)
    assert modelspec_save(spec=_spec(base_url=server.base_url), user=admin).pk


# --- Runs pick an existing spec by id or name, nothing more -----------------------------------------------------


@pytest.mark.parametrize("value", ["¹", "٣", "abc", "9" * 30, str(2**63), "http://evil.example/v1", "x" * 101])
def test_the_runs_api_answers_400_for_a_model_spec_that_is_not_one(taxonomy, curator, monkeypatch, value):
    monkeypatch.setattr(run_services, "run_queue", lambda run_id: None)
    api = APIClient()
    api.force_login(curator)

    answer = api.post(
        reverse("api:run-list"),
        {"kind": "dialogue", "sub_emotions": ["anxiety.1"], "count": 1, "model_spec": value},
        format="json",
    )

    assert answer.status_code == 400
    assert "model_spec" in answer.json()
    assert not GenerationRun.objects.exists()


def test_the_runs_api_answers_400_for_an_id_beyond_the_column(taxonomy, curator):
    api = APIClient()
    api.force_login(curator)
    answer = api.post(reverse("api:run-list"), {"kind": "dialogue", "scenarios": [10**30]}, format="json")
    assert answer.status_code == 400
    assert "scenarios" in answer.json()


@pytest.mark.parametrize("value", ["¹", "abc", "9" * 30])
def test_the_run_form_refuses_a_model_spec_that_is_not_one(taxonomy, value):
    form = RunForm(data={"kind": "dialogue", "sub_emotions": ["anxiety.1"], "count": 1, "turns": 6, "seed": 0,
                         "model_spec": value})  # fmt: skip
    assert not form.is_valid()
    assert "model_spec" in form.errors


# --- The settings themselves ------------------------------------------------------------------------------------


def test_the_credentials_setting_reads_names_and_variables(monkeypatch):
    monkeypatch.setenv("PSYROOM_MODEL_CREDENTIALS", " vllm=VLLM_API_KEY , openai=OPENAI_API_KEY,")
    assert project_settings.env_credentials("PSYROOM_MODEL_CREDENTIALS") == {
        "vllm": "VLLM_API_KEY",
        "openai": "OPENAI_API_KEY",
    }


@pytest.mark.parametrize(
    "value",
    ["vllm", "vllm=", "=VLLM_API_KEY", "a=X,a=Y", "vllm=NOT A NAME", "vllm=SECRET_KEY", "db=DATABASE_URL", "a b=X"],
)
def test_a_bad_credentials_setting_stops_the_start(monkeypatch, value):
    monkeypatch.setenv("PSYROOM_MODEL_CREDENTIALS", value)
    with pytest.raises(ImproperlyConfigured, match="PSYROOM_MODEL_CREDENTIALS"):
        project_settings.env_credentials("PSYROOM_MODEL_CREDENTIALS")


def test_the_servers_setting_reads_prefixes(monkeypatch):
    monkeypatch.setenv("PSYROOM_MODEL_SERVERS", "http://gpu-1:8000/v1, https://gpu-2/v1")
    assert project_settings.env_url_prefixes("PSYROOM_MODEL_SERVERS") == ["http://gpu-1:8000/v1", "https://gpu-2/v1"]


@pytest.mark.parametrize(
    "value", ["gpu-1:8000", "ftp://gpu-1/v1", "http://gpu-1:80x/v1", "http://u:p@gpu-1/v1", "http://gpu-1/v1?a=1"]
)
def test_a_bad_servers_setting_stops_the_start(monkeypatch, value):
    monkeypatch.setenv("PSYROOM_MODEL_SERVERS", value)
    with pytest.raises(ImproperlyConfigured, match="PSYROOM_MODEL_SERVERS"):
        project_settings.env_url_prefixes("PSYROOM_MODEL_SERVERS")
