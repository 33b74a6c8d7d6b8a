"""The run console: who may use it, starting runs (and refusing bad ones), progress, failures and cancelling."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from generation.models import Candidate, ClientProfile, GenerationRun, ModelSpec, SubEmotion
from generation.services import runs as run_services
from generation.services.modelspecs import modelspec_get_default
from generation.services.runs import run_cancel, run_create
from psyroom_admin import roles
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch):
    ids = []
    monkeypatch.setattr(run_services, "run_queue", ids.append)
    return ids


@pytest.fixture
def run(taxonomy, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return run_create(kind="dialogue", sub_emotions=[SubEmotion.objects.get(key="anxiety.1")], count=3)


def urls(run) -> dict[str, tuple[str, str]]:
    return {
        "runs": ("get", reverse("generation:runs")),
        "new": ("get", reverse("generation:run-new")),
        "create": ("post", reverse("generation:run-new")),
        "run": ("get", reverse("generation:run", args=[run.pk])),
        "progress": ("get", reverse("generation:run-progress", args=[run.pk])),
        "cancel": ("post", reverse("generation:run-cancel", args=[run.pk])),
    }


@pytest.mark.parametrize("name", ["runs", "new", "create", "run", "progress", "cancel"])
@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("anonymous", 302),
        (None, 403),
        (roles.COUNSELOR, 403),
        (roles.SENIOR_CLINICIAN, 403),
        (roles.CURATOR, 200),
        (roles.ADMIN, 200),
    ],
)
def test_only_curators_and_admins_use_the_run_console(client, run, name, role, expected):
    if role != "anonymous":
        client.force_login(factories.make_user(role))
    method, url = urls(run)[name]
    response = getattr(client, method)(url, {})
    if expected == 200 and name == "cancel":
        expected = 302  # back to the run page
    if expected == 200 and name == "create":
        expected = 400  # an empty form
    assert response.status_code == expected
    if role == "anonymous":
        assert response["Location"].startswith("/accounts/login/")
    if expected == 403 and name == "cancel":
        run.refresh_from_db()
        assert run.status == "queued"


def test_the_runs_link_shows_only_for_curators(client, curator, counselor, taxonomy):
    client.force_login(curator)
    assert reverse("generation:runs") in client.get(reverse("annotations:queue")).content.decode()
    client.force_login(counselor)
    assert reverse("generation:runs") not in client.get(reverse("annotations:queue")).content.decode()


def test_a_curator_starts_a_dialogue_run(client, curator, taxonomy, queued, django_capture_on_commit_callbacks):
    client.force_login(curator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("generation:run-new"),
            {
                "kind": "dialogue", "sub_emotions": ["anxiety.1", "guilt.0"], "count": "4", "turns": "4",
                "seed": "11", "temperature": "0.5", "threshold": "4", "max_attempts": "3", "supervisor": "on",
            },
        )  # fmt: skip
    run = GenerationRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("generation:run", args=[run.pk])
    assert queued == [run.pk]
    assert run.created_by == curator
    assert [t["sub_emotion"] for t in run.targets] == ["anxiety.1", "guilt.0"]
    assert (run.count, run.seed, run.parameters["turns"]) == (4, 11, 4)
    assert run.parameters["temperature"] == 0.5 and run.parameters["threshold"] == 4.0
    assert run.parameters["supervisor"] is True and run.parameters["classify"] is False


def test_a_curator_starts_a_plan_run_for_dialogues(client, curator, taxonomy, queued):
    first, second = factories.make_candidate(), factories.make_candidate(content=factories.dialogue_content(3))
    client.force_login(curator)
    response = client.post(
        reverse("generation:run-new"),
        {"kind": "plan", "dialogues": f"{first.pk}, {second.pk}", "count": "1", "turns": "6", "seed": "0"},
    )
    assert response.status_code == 302
    run = GenerationRun.objects.get()
    assert (run.kind, run.count, run.targets) == ("plan", 2, [{"dialogue": first.pk}, {"dialogue": second.pk}])


def test_the_run_form_says_when_the_curator_has_too_many_runs_waiting(client, curator, taxonomy, queued, settings):
    settings.PSYROOM_RUNS_PER_USER = 1
    first = factories.make_candidate()
    client.force_login(curator)
    data = {"kind": "plan", "dialogues": f"{first.pk}", "count": "1", "turns": "6", "seed": "0"}
    assert client.post(reverse("generation:run-new"), data).status_code == 302
    response = client.post(reverse("generation:run-new"), data)
    assert response.status_code == 400
    assert "1 runs waiting or running (at most 1)" in response.content.decode()
    assert GenerationRun.objects.count() == 1


def test_a_curator_starts_a_course_run_and_a_question_run(client, curator, taxonomy, queued):
    profile = ClientProfile.objects.create(name="Mei", background="A student before her final exams.")
    twin = ModelSpec.objects.create(name="twin", path="/models/twin")
    questions = [factories.make_candidate(), factories.make_candidate()]
    Candidate.objects.filter(pk__in=[q.pk for q in questions]).update(
        kind="question", sub_emotion=None,
        content={"question_type": "single", "question": "Q?", "options": {"A": "a", "B": "b"}, "answer": ["A"]},
    )  # fmt: skip
    default = modelspec_get_default()
    client.force_login(curator)

    form = client.get(reverse("generation:run-new")).content.decode()
    assert 'name="profiles"' in form and 'name="questions"' in form and 'name="models"' in form

    response = client.post(
        reverse("generation:run-new"),
        {"kind": "course", "profiles": [profile.pk], "count": "2", "sessions": "4", "turns": "4", "seed": "0"},
    )
    assert response.status_code == 302, response.content.decode()
    course_run = GenerationRun.objects.get(kind="course")
    assert (course_run.count, course_run.targets, course_run.parameters["sessions"]) == (
        2,
        [{"profile": profile.pk}],
        4,
    )

    response = client.post(
        reverse("generation:run-new"),
        {
            "kind": "question", "questions": f"{questions[0].pk}-{questions[1].pk}",
            "models": [default.name, twin.name], "min_correct": "2", "count": "1", "turns": "6", "seed": "0",
        },
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()
    run = GenerationRun.objects.get(kind="question")
    assert run.targets == [{"question": q.pk} for q in questions]
    assert (run.parameters["models"], run.parameters["min_correct"]) == (sorted([default.name, "twin"]), 2)
    assert run.model_spec.name == sorted([default.name, "twin"])[0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "course", "count": "1"}, "profiles: a course run needs at least one client profile"),
        ({"kind": "course", "count": "1", "sessions": "11"}, "Ensure this value is less than or equal to 10"),
        ({"kind": "question"}, "questions: a question run needs at least one question"),
        ({"kind": "question", "questions": "5-2"}, "a range runs low to high"),
        ({"kind": "question", "questions": "999999"}, "no question with id 999999"),
        ({"kind": "question", "questions": "QUESTION", "min_correct": "3"}, "min_correct: must be a whole number"),
        ({"kind": "dialogue", "sub_emotions": ["anxiety.1"], "count": "0"}, "Ensure this value is greater than"),
        ({"kind": "dialogue", "sub_emotions": ["anxiety.1"], "temperature": "9"}, "Ensure this value is less than"),
        ({"kind": "dialogue"}, "sub_emotions: choose at least one sub-emotion or scenario"),
        ({"kind": "plan"}, "dialogues: a plan run needs at least one dialogue"),
        ({"kind": "plan", "dialogues": "999999"}, "no dialogue with id 999999"),
        ({"kind": "plan", "dialogues": "12; DROP"}, "is not a candidate id"),
        ({"kind": "dialogue", "sub_emotions": ["nope.1"]}, "Select a valid choice"),
    ],
)
def test_a_bad_run_is_refused_with_the_field_named_and_nothing_written(
    client, curator, taxonomy, queued, data, message
):
    if data.get("questions") == "QUESTION":
        question = factories.make_candidate()
        Candidate.objects.filter(pk=question.pk).update(
            kind="question", content={"question_type": "single", "options": {"A": "a", "B": "b"}, "answer": ["A"]}
        )
        data = {**data, "questions": str(question.pk)}
    client.force_login(curator)
    response = client.post(reverse("generation:run-new"), {"count": "2", "turns": "4", "seed": "0", **data})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not GenerationRun.objects.exists()
    assert queued == []


def test_the_progress_partial_shows_the_numbers_and_stops_polling_when_finished(client, curator, run):
    GenerationRun.objects.filter(pk=run.pk).update(
        status="running", done=1, failed=1, completion_tokens=120, stats={"truncated": 2}
    )
    client.force_login(curator)
    page = client.get(reverse("generation:run-progress", args=[run.pk])).content.decode()
    assert "1 done, 1 failed of 3" in page and "67%" in page and "truncated" in page
    assert 'hx-trigger="every 2s"' in page
    GenerationRun.objects.filter(pk=run.pk).update(status="succeeded")
    page = client.get(reverse("generation:run-progress", args=[run.pk])).content.decode()
    assert "hx-trigger" not in page


def test_the_progress_partial_shows_the_chunk_in_flight(client, curator, run):
    GenerationRun.objects.filter(pk=run.pk).update(
        status="running", heartbeat_at=timezone.now(), completion_tokens=100, prompt_tokens=400,
        chunk_progress={"stage": "turn 3 of 6", "calls": 2, "prompt_tokens": 50, "completion_tokens": 12,
                        "updated_at": timezone.now().isoformat()},
    )  # fmt: skip
    client.force_login(curator)
    page = client.get(reverse("generation:run-progress", args=[run.pk])).content.decode()
    assert "Chunk in flight: turn 3 of 6, 2 model calls, 12 tokens written." in page
    assert "450 in, 112 out" in page  # saved chunks and the chunk in flight
    assert "Running" in page and 'id="resume-run"' not in page


def test_a_stalled_run_says_so_and_a_curator_resumes_it(client, curator, run, monkeypatch):
    enqueued = []

    class Result:
        id = "task-3"

    monkeypatch.setattr(run_services, "run_task_send", lambda run_id: enqueued.append(run_id) or Result())
    GenerationRun.objects.filter(pk=run.pk).update(
        status="running", done=1, heartbeat_at=timezone.now() - timedelta(seconds=settings.PSYROOM_RUN_STALE_S + 1)
    )
    client.force_login(curator)
    page = client.get(reverse("generation:run", args=[run.pk])).content.decode()
    assert "Stalled" in page and "The worker stopped: no heartbeat since" in page and 'id="resume-run"' in page
    assert "run-status-stalled" in client.get(reverse("generation:runs")).content.decode()
    response = client.post(reverse("generation:run-resume", args=[run.pk]), follow=True)
    assert f"Run {run.pk} queued again" in response.content.decode()
    run.refresh_from_db()
    assert (run.status, run.resumes, enqueued) == ("queued", 1, [run.pk])
    response = client.post(reverse("generation:run-resume", args=[run.pk]), follow=True)
    assert "is not stalled" in response.content.decode()
    assert enqueued == [run.pk]


def test_a_counselor_may_not_resume(client, counselor, run, monkeypatch):
    monkeypatch.setattr(run_services, "run_task_send", lambda run_id: pytest.fail("queued"))
    GenerationRun.objects.filter(pk=run.pk).update(status="running", heartbeat_at=None)
    client.force_login(counselor)
    assert client.post(reverse("generation:run-resume", args=[run.pk])).status_code == 403
    run.refresh_from_db()
    assert (run.status, run.resumes) == ("running", 0)


def test_failures_show_their_raw_text_escaped(client, curator, run):
    GenerationRun.objects.filter(pk=run.pk).update(
        failed=1, errors=[{"index": 2, "reason": "empty_turn", "raw": "<script>alert(1)</script>"}]
    )
    client.force_login(curator)
    page = client.get(reverse("generation:run", args=[run.pk])).content.decode()
    assert "Item 2: empty_turn" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page


def test_cancel_stops_a_run_and_a_finished_run_cannot_be_cancelled(client, curator, run):
    client.force_login(curator)
    response = client.post(reverse("generation:run-cancel", args=[run.pk]), follow=True)
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert "cancelled" in response.content.decode()
    finished_at = run.finished_at
    response = client.post(reverse("generation:run-cancel", args=[run.pk]), follow=True)
    assert "has already finished" in response.content.decode()
    run.refresh_from_db()
    assert (run.status, run.finished_at) == ("cancelled", finished_at)


def test_services_refuse_runs_from_users_without_the_role(taxonomy, counselor, run):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        run_create(kind="scenario", sub_emotions=[run.sub_emotion], count=1, created_by=counselor)
    with pytest.raises(PermissionDenied):
        run_cancel(run=run, user=counselor)
    run.refresh_from_db()
    assert run.status == "queued" and GenerationRun.objects.count() == 1
