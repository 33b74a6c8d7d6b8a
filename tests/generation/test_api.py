"""The runs API: list, detail, create, cancel; curators and admins only."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import token_create
from generation.models import Candidate, ClientProfile, GenerationRun, ModelSpec, Scenario, SubEmotion
from generation.services import runs as run_services
from generation.services.modelspecs import BUNDLED_MODEL, modelspec_get_default
from psyroom_admin import roles
from tests import factories

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "no_role", roles.COUNSELOR, roles.SENIOR_CLINICIAN, roles.CURATOR, roles.ADMIN]


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def queued(monkeypatch):
    """Run ids queued for a worker: no task is sent."""
    ids = []
    monkeypatch.setattr(run_services, "run_queue", ids.append)
    return ids


@pytest.fixture
def post_run(api, queued, django_capture_on_commit_callbacks):
    """POST /api/runs/ with the on-commit callbacks run, as they would be after the request's transaction."""

    def post(data: dict):
        with django_capture_on_commit_callbacks(execute=True):
            return api.post(reverse("api:run-list"), data, format="json")

    return post


@pytest.fixture
def run(taxonomy):
    return GenerationRun.objects.create(
        kind="dialogue",
        count=4,
        model_spec=modelspec_get_default(),
        prompt_version="v1",
        sub_emotion=SubEmotion.objects.get(key="anxiety.1"),
        targets=[{"sub_emotion": "anxiety.1", "scenario": None}],
    )


def _as(api: APIClient, user) -> APIClient:
    api.force_login(user)
    return api


# --- Access: every endpoint x every role ------------------------------------------------------------------------

CURATORS_ONLY = {
    "anonymous": 401,
    "no_role": 403,
    "counselor": 403,
    "senior_clinician": 403,
    "curator": 200,
    "admin": 200,
}
MATRIX = {
    "run-list": ("get", lambda r: reverse("api:run-list"), CURATORS_ONLY),
    "run-detail": ("get", lambda r: reverse("api:run-detail", args=[r.pk]), CURATORS_ONLY),
    # An empty body: 400 once allowed, so that nothing is created.
    "run-create": ("post", lambda r: reverse("api:run-list"), {**CURATORS_ONLY, "curator": 400, "admin": 400}),
    "run-cancel": ("post", lambda r: reverse("api:run-cancel", args=[r.pk]), CURATORS_ONLY),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", list(MATRIX))
def test_permission_matrix(api, run, queued, endpoint, role):
    method, url, expected = MATRIX[endpoint]
    if role == "no_role":
        _as(api, factories.make_user(None))
    elif role != "anonymous":
        _as(api, factories.make_user(role))
    response = getattr(api, method)(url(run), {}, format="json")
    assert response.status_code == expected[role], response.content
    assert GenerationRun.objects.count() == 1
    assert queued == []
    run.refresh_from_db()
    cancelled = endpoint == "run-cancel" and expected[role] == 200
    assert run.status == ("cancelled" if cancelled else "queued")


def test_a_counselor_is_told_why(api, counselor, run):
    _as(api, counselor)
    response = api.get(reverse("api:run-list"))
    assert response.status_code == 403
    assert response.json() == {"detail": "Only curators and admins may see and start generation runs."}


def test_token_auth_for_a_curator(api, curator, run):
    _, key = token_create(user=curator)
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = api.get(reverse("api:run-detail", args=[run.pk]))
    assert response.status_code == 200
    assert response.json()["id"] == run.pk


def test_a_superuser_may_see_runs(api, run):
    _as(api, factories.make_user(None, is_superuser=True, is_staff=True))
    assert api.get(reverse("api:run-list")).status_code == 200


# --- Create -----------------------------------------------------------------------------------------------------


def test_create_a_dialogue_run_writes_it_and_queues_it_once(api, curator, taxonomy, queued, post_run):
    _as(api, curator)
    response = post_run(
        {
            "kind": "dialogue",
            "sub_emotions": ["anxiety.1", "anger.1"],
            "count": 5,
            "turns": 4,
            "seed": 7,
            "parameters": {"temperature": 0.5, "supervisor": False},
        }
    )

    assert response.status_code == 201, response.content
    run = GenerationRun.objects.get()
    assert queued == [run.pk]
    body = response.json()
    assert (body["id"], body["kind"], body["status"], body["count"], body["done"], body["failed"]) == (
        run.pk,
        "dialogue",
        "queued",
        5,
        0,
        0,
    )
    assert body["progress"] == 0.0
    assert body["model_spec"]["name"] == BUNDLED_MODEL
    assert body["created_by"] == curator.username
    assert body["targets"] == [
        {"sub_emotion": "anxiety.1", "scenario": None},
        {"sub_emotion": "anger.1", "scenario": None},
    ]
    assert (run.count, run.seed, run.created_by, run.sub_emotion.key) == (5, 7, curator, "anxiety.1")
    assert run.parameters["turns"] == 4
    assert (run.parameters["temperature"], run.parameters["supervisor"]) == (0.5, False)
    assert body["parameters"] == run.parameters


def test_a_user_with_too_many_runs_waiting_gets_a_400_and_no_run(api, curator, taxonomy, queued, post_run, settings):
    settings.PSYROOM_RUNS_PER_USER = 2
    _as(api, curator)
    body = {"kind": "dialogue", "sub_emotions": ["anxiety.1"], "count": 1, "turns": 2}
    assert post_run(body).status_code == 201
    second = post_run(body)
    assert second.status_code == 201
    third = post_run(body)
    assert third.status_code == 400
    assert "2 runs waiting or running (at most 2)" in str(third.json())
    assert GenerationRun.objects.count() == 2
    assert len(queued) == 2
    # A finished run frees its place, a stalled one (still running) does not.
    GenerationRun.objects.filter(pk=second.json()["id"]).update(status=GenerationRun.Status.SUCCEEDED)
    assert post_run(body).status_code == 201
    assert post_run(body).status_code == 400
    # Another curator has places of their own.
    _as(api, factories.make_user(roles.CURATOR, is_staff=True))
    assert post_run(body).status_code == 201


def test_create_a_run_from_scenarios(api, curator, taxonomy, post_run):
    scenario = Scenario.objects.create(
        sub_emotion=SubEmotion.objects.get(key="anxiety.2"), title="Exam week", description="Finals start Monday."
    )
    _as(api, curator)
    response = post_run({"kind": "dialogue", "scenarios": [scenario.pk], "count": 2})
    assert response.status_code == 201, response.content
    assert response.json()["targets"] == [{"sub_emotion": "anxiety.2", "scenario": scenario.pk}]
    assert GenerationRun.objects.get().scenario == scenario


def test_create_a_plan_run_makes_one_plan_per_dialogue(api, curator, taxonomy, post_run):
    dialogues = [factories.make_candidate(), factories.make_candidate()]
    _as(api, curator)
    response = post_run({"kind": "plan", "dialogues": [d.pk for d in dialogues]})
    assert response.status_code == 201, response.content
    run = GenerationRun.objects.get()
    assert (run.kind, run.count, run.targets) == ("plan", 2, [{"dialogue": d.pk} for d in dialogues])


def test_create_a_dialogue_run_that_reconstructs_dialogues(api, curator, taxonomy, post_run):
    source = factories.make_candidate()
    _as(api, curator)
    response = post_run({"kind": "dialogue", "dialogues": [source.pk], "count": 99})
    assert response.status_code == 201, response.content
    run = GenerationRun.objects.get()
    assert (run.kind, run.count, run.targets) == ("dialogue", 1, [{"dialogue": source.pk}])


def test_create_a_scenario_run(api, curator, taxonomy, post_run):
    _as(api, curator)
    response = post_run({"kind": "scenario", "sub_emotions": ["anxiety.1", "anger.1"], "count": 4})
    assert response.status_code == 201, response.content
    assert response.json()["targets"] == [{"sub_emotion": "anxiety.1"}, {"sub_emotion": "anger.1"}]
    assert GenerationRun.objects.get().kind == "scenario"


def test_sources_that_do_not_go_together_are_400(api, curator, taxonomy, queued, post_run):
    source = factories.make_candidate()
    _as(api, curator)
    response = post_run({"kind": "dialogue", "sub_emotions": ["anxiety.1"], "dialogues": [source.pk]})
    assert response.status_code == 400
    assert "not both" in response.json()["dialogues"][0]
    response = post_run({"kind": "scenario", "sub_emotions": ["anxiety.1"], "dialogues": [source.pk], "count": 1})
    assert response.status_code == 400
    assert "a scenario run needs sub-emotions" in response.json()["sub_emotions"][0]
    assert not GenerationRun.objects.exists()
    assert queued == []


@pytest.mark.parametrize("by", ["name", "id"])
def test_create_with_a_model_spec_by_name_or_id(api, curator, taxonomy, post_run, by):
    spec = ModelSpec.objects.create(name="tiny-local", path="/models/tiny", parameters={"max_new_tokens": 32})
    _as(api, curator)
    value = spec.name if by == "name" else str(spec.pk)
    response = post_run({"kind": "dialogue", "sub_emotions": ["anxiety.1"], "count": 1, "model_spec": value})
    assert response.status_code == 201, response.content
    run = GenerationRun.objects.get()
    assert run.model_spec == spec
    assert run.parameters["max_new_tokens"] == 32


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"count": 0}, "count", "count: must be between 1 and 10000, not 0"),
        ({"count": None}, "count", "count: must be between 1 and 10000, not None"),
        ({"turns": 1}, "turns", "turns: must be between 2 and 40, not 1"),
        ({"sub_emotions": []}, "sub_emotions", "sub_emotions: choose at least one sub-emotion or scenario"),
        ({"sub_emotions": ["joy.99"]}, "sub_emotions", "Object with key=joy.99 does not exist."),
        ({"scenarios": [999_999]}, "scenarios", "no scenario with id 999999"),
        ({"kind": "poem"}, "kind", '"poem" is not a valid choice.'),
        ({"model_spec": "gpt-nope"}, "model_spec", "no model spec named or numbered 'gpt-nope'"),
        ({"parameters": {"temperature": 9}}, "parameters", "parameters.temperature: 9 is outside 0.0..2.0"),
        ({"parameters": {"beam": 4}}, "parameters", "parameters: unknown parameter 'beam'"),
        ({"parameters": "hot"}, "parameters", 'Expected a dictionary of items but got type "str".'),
    ],
)
def test_a_bad_run_is_400_naming_the_field_and_writes_nothing(
    api, curator, taxonomy, queued, post_run, data, field, message
):
    _as(api, curator)
    response = post_run({"kind": "dialogue", "sub_emotions": ["anxiety.1"], "count": 2, **data})
    assert response.status_code == 400
    assert set(response.json()) == {field}, response.json()
    assert message in response.json()[field][0]
    assert not GenerationRun.objects.exists()
    assert queued == []


def test_create_a_question_run_and_a_course_run(api, curator, taxonomy, post_run):
    question = factories.make_candidate()
    Candidate.objects.filter(pk=question.pk).update(
        kind="question", sub_emotion=None,
        content={"question_type": "single", "question": "Q?", "options": {"A": "a", "B": "b"}, "answer": ["A"]},
    )  # fmt: skip
    profile = ClientProfile.objects.create(name="Mei", background="A student before her final exams.")
    _as(api, curator)

    response = post_run({"kind": "question", "questions": [question.pk]})
    assert response.status_code == 201, response.content
    assert (response.json()["kind"], response.json()["count"], response.json()["targets"]) == (
        "question", 1, [{"question": question.pk}],
    )  # fmt: skip

    response = post_run({"kind": "course", "profiles": [profile.pk], "count": 2, "sessions": 4, "turns": 4})
    assert response.status_code == 201, response.content
    run = GenerationRun.objects.get(kind="course")
    assert (run.count, run.targets, run.parameters["sessions"]) == (2, [{"profile": profile.pk}], 4)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"kind": "question"}, "questions", "questions: a question run needs at least one question"),
        ({"kind": "question", "questions": [999_999]}, "questions", "no candidate with id 999999"),
        ({"kind": "course", "count": 1}, "profiles", "profiles: a course run needs at least one client profile"),
        ({"kind": "course", "profiles": [999_999], "count": 1}, "profiles", "no client profile with id 999999"),
        ({"kind": "course", "profiles": "PROFILE", "count": 1, "sessions": 99}, "sessions", "sessions: must be"),
    ],
)
def test_a_bad_question_or_course_run_is_400_naming_the_field(
    api, curator, taxonomy, queued, post_run, data, field, message
):
    if data.get("profiles") == "PROFILE":
        data = {**data, "profiles": [ClientProfile.objects.create(name="Li", background="A retired worker.").pk]}
    _as(api, curator)
    response = post_run(data)
    assert response.status_code == 400
    assert set(response.json()) == {field}, response.json()
    assert message in response.json()[field][0]
    assert not GenerationRun.objects.exists()
    assert queued == []


def test_a_plan_run_of_candidates_that_are_not_dialogues_is_400(api, curator, taxonomy, queued, post_run):
    dialogue = factories.make_candidate()
    not_a_dialogue = factories.make_candidate()
    Candidate.objects.filter(pk=not_a_dialogue.pk).update(kind="plan")
    _as(api, curator)

    response = post_run({"kind": "plan", "dialogues": [dialogue.pk, not_a_dialogue.pk]})
    assert response.status_code == 400
    assert response.json() == {"dialogues": [f"dialogues: candidate(s) [{not_a_dialogue.pk}] are not dialogues"]}

    response = post_run({"kind": "plan", "dialogues": [dialogue.pk, 999_999]})
    assert response.json() == {"dialogues": ["no candidate with id 999999"]}

    response = post_run({"kind": "plan"})
    assert response.json() == {"dialogues": ["dialogues: a plan run needs at least one dialogue"]}
    assert not GenerationRun.objects.exists()
    assert queued == []


def test_a_missing_default_model_is_400(api, curator, taxonomy, queued, post_run, settings):
    settings.PSYROOM_MODEL = "not-configured"
    _as(api, curator)
    response = post_run({"kind": "dialogue", "sub_emotions": ["anxiety.1"], "count": 1})
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["PSYROOM_MODEL='not-configured': no model spec of that name"]}
    assert not GenerationRun.objects.exists()


# --- Read -------------------------------------------------------------------------------------------------------


def test_detail_shows_progress_failures_with_raw_text_tokens_and_stats(api, curator, run):
    failure = {"index": 2, "turn": 1, "reason": "empty_turn", "raw": "   counselor: counselor:"}
    beat = timezone.now()
    GenerationRun.objects.filter(pk=run.pk).update(
        status="running",
        heartbeat_at=beat,
        chunk_progress={
            "stage": "turn 3 of 4",
            "calls": 2,
            "prompt_tokens": 80,
            "completion_tokens": 20,
            "updated_at": beat.isoformat(),
        },  # fmt: skip
        done=2,
        failed=1,
        errors=[failure],
        prompt_tokens=1200,
        completion_tokens=340,
        stats={"truncated": 3},
        parameters={"turns": 4, "temperature": 0.7},
        seed=11,
    )
    _as(api, curator)
    response = api.get(reverse("api:run-detail", args=[run.pk]))
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["count"], body["done"], body["failed"], body["progress"]) == (
        "running",
        4,
        2,
        1,
        75.0,
    )
    assert body["errors"] == [failure]
    assert (body["prompt_tokens"], body["completion_tokens"], body["stats"]) == (1200, 340, {"truncated": 3})
    assert body["targets"] == [{"sub_emotion": "anxiety.1", "scenario": None}]
    assert body["parameters"] == {"turns": 4, "temperature": 0.7}
    assert (body["seed"], body["prompt_version"], body["is_finished"]) == (11, "v1", False)
    # The chunk in flight, not yet saved, and the worker's last sign of life.
    in_flight = {"stage": "turn 3 of 4", "calls": 2, "prompt_tokens": 80, "completion_tokens": 20}
    assert body["chunk_progress"] == {**in_flight, "updated_at": beat.isoformat()}
    assert body["heartbeat_at"] == beat.isoformat().replace("+00:00", "Z") and body["resumes"] == 0


# --- Stalled runs and resuming them -----------------------------------------------------------------------------


@pytest.fixture
def enqueued(monkeypatch):
    ids = []

    class Result:
        id = "task-2"

    monkeypatch.setattr(run_services, "run_task_send", lambda run_id: ids.append(run_id) or Result())
    return ids


def test_a_run_whose_worker_stopped_beating_is_stalled_and_a_curator_resumes_it(api, curator, run, enqueued):
    GenerationRun.objects.filter(pk=run.pk).update(
        status="running", done=1, heartbeat_at=timezone.now() - timedelta(seconds=settings.PSYROOM_RUN_STALE_S + 1)
    )
    _as(api, curator)
    assert api.get(reverse("api:run-detail", args=[run.pk])).json()["status"] == "stalled"
    assert [r["id"] for r in api.get(reverse("api:run-list"), {"status": "stalled"}).json()["results"]] == [run.pk]
    assert api.get(reverse("api:run-list"), {"status": "running"}).json()["results"] == []
    response = api.post(reverse("api:run-resume", args=[run.pk]))
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["resumes"], response.json()["done"]) == ("queued", 1, 1)
    assert enqueued == [run.pk]
    # Not stalled any more: a second resume is a conflict and queues nothing.
    response = api.post(reverse("api:run-resume", args=[run.pk]))
    assert response.status_code == 409
    assert response.json() == {"detail": f"run {run.pk} (dialogue x4, queued) is not stalled: only a running run "
                               "whose worker stopped can be resumed.", "status": "queued"}  # fmt: skip
    assert enqueued == [run.pk]


@pytest.mark.parametrize("role", ["anonymous", "no_role", roles.COUNSELOR, roles.SENIOR_CLINICIAN])
def test_only_curators_and_admins_resume(api, run, enqueued, role):
    GenerationRun.objects.filter(pk=run.pk).update(status="running", heartbeat_at=None)
    if role != "anonymous":
        _as(api, factories.make_user(None if role == "no_role" else role))
    response = api.post(reverse("api:run-resume", args=[run.pk]))
    assert response.status_code == (401 if role == "anonymous" else 403)
    run.refresh_from_db()
    assert (run.status, run.resumes, enqueued) == ("running", 0, [])


def test_a_resume_with_the_broker_down_is_503_json(api, curator, run, monkeypatch):
    from kombu.exceptions import OperationalError

    def down(run_id):
        raise OperationalError("Connection refused")

    monkeypatch.setattr(run_services, "run_task_send", down)
    GenerationRun.objects.filter(pk=run.pk).update(status="running", heartbeat_at=None)
    _as(api, curator)
    response = api.post(reverse("api:run-resume", args=[run.pk]))
    assert response.status_code == 503
    assert response.json()["code"] == "queue_unavailable"
    assert api.get(reverse("api:run-detail", args=[run.pk])).json()["status"] == "stalled"


def test_a_missing_run_is_404(api, curator, taxonomy):
    _as(api, curator)
    assert api.get(reverse("api:run-detail", args=[999_999])).status_code == 404
    assert api.post(reverse("api:run-cancel", args=[999_999])).status_code == 404


def test_list_is_newest_first_with_filters_and_pages(api, curator, run):
    spec = run.model_spec
    plan = GenerationRun.objects.create(kind="plan", count=1, model_spec=spec, prompt_version="v1", status="succeeded")
    newest = GenerationRun.objects.create(kind="dialogue", count=1, model_spec=spec, prompt_version="v1")
    _as(api, curator)

    def ids(**params) -> list[int]:
        response = api.get(reverse("api:run-list"), params)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids() == [newest.pk, plan.pk, run.pk]
    assert ids(kind="plan") == [plan.pk]
    assert ids(status="queued") == [newest.pk, run.pk]
    assert ids(limit=1, offset=1) == [plan.pk]
    row = api.get(reverse("api:run-list"), {"kind": "plan"}).json()["results"][0]
    assert (row["model_spec"], row["status"], row["progress"]) == (spec.name, "succeeded", 0.0)
    assert api.get(reverse("api:run-list"), {"status": "lost"}).status_code == 400


# --- Cancel -----------------------------------------------------------------------------------------------------


def test_cancel_a_queued_run(api, curator, run):
    _as(api, curator)
    response = api.post(reverse("api:run-cancel", args=[run.pk]))
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["is_finished"]) == ("cancelled", True)
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert run.finished_at is not None


@pytest.mark.parametrize("finished", ["succeeded", "failed", "cancelled"])
def test_cancel_a_finished_run_is_409_and_changes_nothing(api, curator, run, finished):
    GenerationRun.objects.filter(pk=run.pk).update(status=finished)
    _as(api, curator)
    response = api.post(reverse("api:run-cancel", args=[run.pk]))
    assert response.status_code == 409
    assert response.json() == {
        "detail": f"run {run.pk} (dialogue x4, {finished}) has already finished.",
        "status": finished,
    }
    run.refresh_from_db()
    assert (run.status, run.finished_at) == (finished, None)
