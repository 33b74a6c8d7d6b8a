"""The generation engine in a real Celery worker with the bundled model: supervision, regeneration, emotion labels
and plans; and a worker killed in the middle of a run (SIGKILL) that loses nothing and duplicates nothing."""

import os
import signal
import time

import pytest
import redis
from django.conf import settings
from kombu import Connection

from generation import schemas, selectors
from generation.backends.local import auto_dtype
from generation.models import Candidate, CandidateKind, GenerationRun, SubEmotion
from generation.services import runs as run_services
from generation.services.modelspecs import modelspec_get_default
from generation.services.runs import run_create
from generation.tasks import generate_run
from tests import factories
from tests.worker import celery_worker

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


REVIEWED_DIALOGUES = [
    [
        {"role": "client", "text": "I have an exam next week and I can't sleep. I keep thinking I will fail."},
        {"role": "counselor", "text": "That sounds exhausting. What goes through your mind when you lie awake?"},
        {"role": "client", "text": "That I am not good enough, and that everyone else is better prepared."},
        {"role": "counselor", "text": "Those thoughts are heavy. Can we look at what you have already done?"},
    ],
    [
        {"role": "client", "text": "My boss criticises me in every meeting and my chest tightens before work."},
        {"role": "counselor", "text": "That sounds stressful. When did you first notice the tightness?"},
        {"role": "client", "text": "A month ago. Now I dread Mondays."},
        {"role": "counselor", "text": "It makes sense to dread it. What would help you feel a little safer at work?"},
    ],
]


def wait_for(predicate, *, timeout: float, log=None, what: str = "the run"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s\n" + (log.read_text() if log else ""))
        time.sleep(0.2)


def finished(run_id: int) -> bool:
    return GenerationRun.objects.get(pk=run_id).is_finished


def test_a_worker_supervises_regenerates_labels_and_writes_plans(taxonomy, tmp_path):
    log = tmp_path / "worker.log"
    with celery_worker(log):
        # A threshold of 5 sends every dialogue whose scores parse back to the counselor with the feedback.
        run = run_create(
            kind="dialogue",
            sub_emotion=selectors.sub_emotion_get(key="anxiety.1"),
            count=2,
            turns=4,
            seed=0,
            parameters={"threshold": 5.0, "max_attempts": 2, "classify": True, "max_new_tokens": 64},
        )
        wait_for(lambda: finished(run.pk), timeout=900, log=log)
        run.refresh_from_db()
        assert (run.status, run.done, run.failed) == ("succeeded", 2, 0), (run.errors, log.read_text())
        assert run.completion_tokens > 0
        assert run.stats.get("regenerated", 0) >= 1, run.stats

        dialogues = list(Candidate.objects.filter(run=run).order_by("run_index"))
        taxonomy_keys = set(SubEmotion.objects.values_list("key", flat=True))
        assert "supervision_failed" not in run.stats and "label_outside_taxonomy" not in run.stats, run.stats
        attempts = [len(d.ai_review["supervisor"]["attempts"]) for d in dialogues]
        assert max(attempts) == 2, attempts
        for dialogue in dialogues:
            supervisor = dialogue.ai_review["supervisor"]
            assert supervisor["threshold"] == 5.0
            for attempt in supervisor["attempts"]:
                # Every score is a constrained choice: all five are read, every time.
                assert set(attempt["scores"]) == {"problem_orientation", "expression", "empathy",
                                                  "interactive_communication", "safety"}  # fmt: skip
                assert all(1 <= s["score"] <= 5 for s in attempt["scores"].values())
                assert "unparsed" not in attempt and attempt["mean"] is not None
            # The kept turns are those of one of the attempts.
            assert dialogue.content["turns"] in [a["turns"] for a in supervisor["attempts"]]
            emotion = dialogue.ai_review["emotion"]
            assert emotion["target"] == "anxiety.1"
            # The label is a constrained choice among the taxonomy's keys: never unread, never outside it.
            assert emotion["label"] in taxonomy_keys and emotion["agrees"] == (emotion["label"] == "anxiety.1")
            assert dialogue.lineage["prompt_version"] == "dialogue/v1"
            assert dialogue.lineage["runtime"] == {"device": "cpu", "dtype": auto_dtype("cpu")}
        assert any(d.ai_review["emotion"]["label"] for d in dialogues), [d.ai_review["emotion"] for d in dialogues]

        # Plans are written for dialogues that passed review: two coherent ones (the 135M model's own dialogues give it
        # little to plan from).
        reviewed = [factories.make_candidate(content={"turns": turns}) for turns in REVIEWED_DIALOGUES]
        plans = run_create(kind="plan", dialogues=reviewed, seed=0, parameters={"max_new_tokens": 96})
        wait_for(lambda: finished(plans.pk), timeout=900, log=log)
    plans.refresh_from_db()
    assert plans.done + plans.failed == 2 and plans.done >= 1, (plans.errors, log.read_text())
    for failure in plans.errors:
        assert failure["reason"] and "raw" in failure
    for plan in Candidate.objects.filter(run=plans):
        assert plan.kind == CandidateKind.PLAN
        assert plan.parent in reviewed
        schemas.validate_content(CandidateKind.PLAN, plan.content)
        assert plan.lineage["dialogue"] == plan.parent.pk


def redis_url() -> str:
    """The tests' Redis broker; locally, where the embedded broker is configured, the Redis on this machine."""
    if settings.CELERY_BROKER_URL.startswith("redis://"):
        return settings.CELERY_BROKER_URL
    url = os.environ.get("PSYROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        # CI always has Redis (the suite refuses to start without it); elsewhere, say what is missing.
        pytest.skip(f"the SIGKILL test needs Redis (the file-system broker cannot re-deliver): {url}: {error}")
    return url


def test_a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing(taxonomy, tmp_path, monkeypatch, settings):
    url = redis_url()
    # Heartbeats each second, stalled after three: a delivery of a run whose worker is alive is dropped, so the
    # re-delivered task takes the run over only once the killed worker's heartbeat is stale.
    beats = {"PSYROOM_RUN_HEARTBEAT_S": "1", "PSYROOM_RUN_STALE_S": "3"}
    settings.PSYROOM_RUN_STALE_S = 3
    redis.Redis.from_url(url).delete("generation", "unacked", "unacked_index")
    spec = modelspec_get_default()
    spec.batch_size = 1  # one dialogue per chunk: the kill falls between saved chunks
    spec.save()
    monkeypatch.setattr(run_services, "run_queue", lambda run_id: None)
    run = run_create(
        kind="dialogue",
        sub_emotion=selectors.sub_emotion_get(key="depression.1"),
        count=4,
        turns=2,
        seed=5,
        parameters={"supervisor": False, "classify": False, "max_new_tokens": 24},
    )
    with Connection(url) as connection:
        generate_run.apply_async((run.pk,), connection=connection)

    first_log = tmp_path / "worker-1.log"
    with celery_worker(first_log, broker_url=url, env=beats) as worker:
        wait_for(lambda: GenerationRun.objects.get(pk=run.pk).done >= 1, timeout=600, log=first_log,
                 what="a first saved chunk")  # fmt: skip
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    run.refresh_from_db()
    # A task is one chunk: killed between two chunks, the run waits queued for its next chunk's task.
    assert run.status in ("running", "queued") and 1 <= run.done < 4, (run.status, run.done)
    before = {c.run_index: (c.pk, c.content) for c in Candidate.objects.filter(run=run)}

    # The task was never acknowledged: a new worker finds it past its visibility timeout and runs it again (or
    # resumes the stalled run when it starts), once the dead worker's heartbeat is stale.
    wait_for(lambda: selectors.run_status(GenerationRun.objects.get(pk=run.pk)) != "running", timeout=10,
             what="a stale heartbeat")  # fmt: skip
    second_log = tmp_path / "worker-2.log"
    with celery_worker(second_log, broker_url=url, env={**beats, "CELERY_VISIBILITY_TIMEOUT": "1"}):
        wait_for(lambda: finished(run.pk), timeout=600, log=second_log, what="the re-delivered run")
    run.refresh_from_db()
    assert (run.status, run.done, run.failed) == ("succeeded", 4, 0), run.errors
    saved = Candidate.objects.filter(run=run)
    assert sorted(saved.values_list("run_index", flat=True)) == [0, 1, 2, 3]
    for candidate in saved:
        if candidate.run_index in before:
            assert (candidate.pk, candidate.content) == before[candidate.run_index]
