"""Heartbeats, stalled runs, resuming them, a task per chunk, and a model call that stops when the run is
cancelled: the services and selectors, without a worker process (tests/generation/test_run_worker.py has them)."""

import time
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone
from kombu.exceptions import OperationalError

from generation import runwatch, selectors
from generation.backends.base import SamplingParams
from generation.backends.server import BackendError, OpenAIBackend
from generation.models import Candidate, GenerationRun, SubEmotion
from generation.runwatch import RunClosed
from generation.services import runs as run_services
from generation.services.candidates import candidate_build
from generation.services.modelspecs import modelspec_get_default
from generation.services.runs import (
    QueueUnavailable,
    run_cancel,
    run_claim,
    run_execute,
    run_record_chunk,
    run_resume,
    runs_resume_stalled,
)
from tests import factories

from .scripted import ScriptedBackend
from .test_backends_http import PROMPT, ok

pytestmark = pytest.mark.django_db

STALE = 60


@pytest.fixture(autouse=True)
def stale_after(settings):
    settings.PSYROOM_RUN_STALE_S = STALE
    settings.PSYROOM_RUN_AUTO_RESUMES = 2


@pytest.fixture
def enqueued(monkeypatch):
    """Run ids sent to the broker: no task is sent."""
    ids = []

    class Result:
        id = "task-1"

    def enqueue(run_id):
        ids.append(run_id)
        return Result()

    monkeypatch.setattr(run_services, "run_task_send", enqueue)
    return ids


@pytest.fixture
def broker_down(monkeypatch):
    def enqueue(run_id):
        raise OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    monkeypatch.setattr(run_services, "run_task_send", enqueue)


@pytest.fixture
def run(taxonomy):
    spec = modelspec_get_default()
    spec.batch_size = 2
    spec.save()
    return GenerationRun.objects.create(
        kind="dialogue",
        count=5,
        model_spec=spec,
        prompt_version="v1",
        sub_emotion=SubEmotion.objects.get(key="anxiety.1"),
        targets=[{"sub_emotion": "anxiety.1"}],
        parameters={"turns": 2, "supervisor": False, "classify": False},
    )


def _set(run, **fields) -> GenerationRun:
    GenerationRun.objects.filter(pk=run.pk).update(**fields)
    run.refresh_from_db()
    return run


def _ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


# --- What a run shows ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "beat_s_ago", "shown"),
    [
        ("running", 1, "running"),
        ("running", STALE - 5, "running"),
        ("running", STALE + 5, "stalled"),
        ("running", None, "stalled"),
        ("queued", STALE + 5, "queued"),
        ("succeeded", STALE + 5, "succeeded"),
        ("cancelled", None, "cancelled"),
    ],
)
def test_a_running_run_without_a_recent_heartbeat_shows_as_stalled(run, status, beat_s_ago, shown):
    run = _set(run, status=status, heartbeat_at=None if beat_s_ago is None else _ago(beat_s_ago))
    assert selectors.run_status(run) == shown
    # The same rule in SQL: the list filters on what it shows.
    assert list(selectors.run_list(filters={"status": shown})) == [run]
    others = {"running", "stalled", "queued", "succeeded", "cancelled"} - {shown}
    assert all(run not in selectors.run_list(filters={"status": other}) for other in others)


# --- Claiming a delivery ---------------------------------------------------------------------------------------


def test_a_delivery_of_a_run_whose_worker_is_alive_is_dropped(run):
    started = _ago(30)
    run = _set(run, status="running", heartbeat_at=_ago(2), started_at=started)
    assert run_claim(run_id=run.pk) is None
    run.refresh_from_db()
    assert (run.status, run.started_at) == ("running", started)


def test_a_delivery_of_a_stalled_run_takes_it_over_and_keeps_its_start(run):
    started = _ago(3600)
    _set(run, status="running", heartbeat_at=_ago(STALE + 1), started_at=started)
    claimed = run_claim(run_id=run.pk)
    assert claimed.status == "running" and claimed.started_at == started
    assert not selectors.run_is_stalled(claimed)


# --- A task is one chunk ---------------------------------------------------------------------------------------


def test_a_task_generates_one_chunk_then_queues_the_run_again(run, enqueued):
    backend = ScriptedBackend()
    run_execute(run_id=run.pk, backend=backend, max_chunks=1)
    run.refresh_from_db()
    # Chunks of two: one chunk (two turns, one call each) saved, the run queued again for the rest.
    assert (run.status, run.done, len(backend.calls), enqueued, run.task_id) == ("queued", 2, 2, [run.pk], "task-1")
    run_execute(run_id=run.pk, backend=backend, max_chunks=1)
    run_execute(run_id=run.pk, backend=backend, max_chunks=1)
    run.refresh_from_db()
    assert (run.status, run.done, enqueued) == ("succeeded", 5, [run.pk, run.pk])
    assert sorted(Candidate.objects.filter(run=run).values_list("run_index", flat=True)) == [0, 1, 2, 3, 4]


def test_a_next_chunk_that_cannot_be_queued_leaves_the_run_to_show_as_stalled(run, broker_down):
    run_execute(run_id=run.pk, backend=ScriptedBackend(), max_chunks=1)
    run.refresh_from_db()
    assert (run.status, run.done) == ("running", 2)
    assert selectors.run_status(run, now=timezone.now() + timedelta(seconds=STALE + 1)) == "stalled"


# --- Resuming a stalled run ------------------------------------------------------------------------------------


def test_a_curator_resumes_a_stalled_run_once(run, curator, enqueued):
    run = _set(run, status="running", done=2, heartbeat_at=_ago(STALE + 5), chunk_progress={"calls": 3})
    run = run_resume(run=run, user=curator)
    assert (run.status, run.resumes, run.chunk_progress, run.done, run.task_id) == ("queued", 1, {}, 2, "task-1")
    assert enqueued == [run.pk]
    with pytest.raises(ValidationError, match="is not stalled"):
        run_resume(run=run, user=curator)
    assert enqueued == [run.pk]


@pytest.mark.parametrize("status", ["queued", "running", "succeeded", "cancelled"])
def test_only_a_stalled_run_is_resumed(run, curator, enqueued, status):
    run = _set(run, status=status, heartbeat_at=_ago(5))
    with pytest.raises(ValidationError, match="is not stalled"):
        run_resume(run=run, user=curator)
    run.refresh_from_db()
    assert (run.status, run.resumes, enqueued) == (status, 0, [])


def test_a_counselor_may_not_resume(run, counselor, enqueued):
    run = _set(run, status="running", heartbeat_at=None)
    with pytest.raises(PermissionDenied):
        run_resume(run=run, user=counselor)
    run.refresh_from_db()
    assert (run.status, run.resumes, enqueued) == ("running", 0, [])


def test_a_resume_with_the_broker_down_leaves_the_run_stalled(run, curator, broker_down):
    run = _set(run, status="running", heartbeat_at=_ago(STALE + 5))
    with pytest.raises(QueueUnavailable, match="the run was not resumed"):
        run_resume(run=run, user=curator)
    run.refresh_from_db()
    assert selectors.run_status(run) == "stalled"


def test_workers_resume_stalled_runs_a_limited_number_of_times(run, enqueued, taxonomy):
    alive = GenerationRun.objects.create(
        kind="dialogue", count=1, model_spec=run.model_spec, prompt_version="v1", status="running",
        heartbeat_at=timezone.now(),
    )  # fmt: skip
    run = _set(run, status="running", heartbeat_at=_ago(STALE + 5), resumes=1)
    assert runs_resume_stalled() == [run.pk]
    run.refresh_from_db()
    assert (run.status, run.resumes) == ("queued", 2)
    # Stalled again: two automatic resumes are all it gets; a curator may still resume it.
    run = _set(run, status="running", heartbeat_at=_ago(STALE + 5))
    assert runs_resume_stalled() == []
    assert selectors.run_status(run) == "stalled"
    assert enqueued == [run.pk]
    alive.refresh_from_db()
    assert (alive.status, alive.resumes) == ("running", 0)


# --- Cancelling ------------------------------------------------------------------------------------------------


def test_run_record_chunk_saves_nothing_into_a_finished_run(run):
    run = _set(run, status="succeeded", done=0)
    candidate = candidate_build(
        kind="dialogue", content=factories.dialogue_content(), sub_emotion=run.sub_emotion, run=run, run_index=0
    )
    with pytest.raises(RunClosed):
        run_record_chunk(run=run, candidates=[candidate], failures=[], prompt_tokens=1, completion_tokens=1)
    assert not Candidate.objects.filter(run=run).exists()


def test_a_model_server_call_stops_when_the_run_is_cancelled(serve):
    """A slow server (30 s an answer): the batch stops at the first check after the cancel, not when it answers."""
    server = serve(("sleep", 30, ok()))
    backend = OpenAIBackend(name="remote", model="m", base_url=server.base_url, max_retries=0, timeout_s=60)
    checks = []

    def interrupt():
        checks.append(time.monotonic())
        if len(checks) >= 2:
            raise runwatch.RunClosed("cancelled")

    started = time.monotonic()
    with pytest.raises(runwatch.RunClosed):
        backend.generate([PROMPT, PROMPT], SamplingParams(interrupt=interrupt))
    assert time.monotonic() - started < 3
    assert len(checks) == 2


def test_a_server_error_still_fails_the_batch_at_once(serve):
    server = serve((400, {"error": {"message": "bad request"}}))
    backend = OpenAIBackend(name="remote", model="m", base_url=server.base_url, max_retries=0)
    with pytest.raises(BackendError, match="400"):
        backend.generate([PROMPT], SamplingParams(interrupt=lambda: None))


# --- The heartbeat thread --------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_beats_while_the_run_runs_and_stops_with_it(run):
    run = _set(run, status="running", heartbeat_at=_ago(STALE + 5))
    with runwatch.RunWatch(run.pk, heartbeat_s=0.2):
        time.sleep(0.7)
        run.refresh_from_db()
        assert timezone.now() - run.heartbeat_at < timedelta(seconds=1)
        # Once the run is cancelled, nothing is written any more.
        run_cancel(run=run)
        time.sleep(0.5)
        run.refresh_from_db()
        cancelled_beat = run.heartbeat_at
        time.sleep(0.5)
    run.refresh_from_db()
    assert run.heartbeat_at == cancelled_beat and run.status == "cancelled"
