"""Runs that tell the truth, with real Celery worker processes and a slow local model server.

The model is a local OpenAI-compatible server that answers each agent from the scripted replies
(``tests/generation/scripted.py``) after a delay, so that a chunk takes seconds and a test can act in the middle
of one: kill the worker (SIGKILL) and see the run stalled, then resumed by a new worker with nothing saved twice;
cancel the run and see the worker stop within one model call, saving nothing more.
"""

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
from django.conf import settings as django_settings
from django.urls import reverse
from rest_framework.test import APIClient

from generation import selectors
from generation.models import Candidate, GenerationRun, ModelSpec
from generation.services.runs import run_cancel, run_create
from tests.worker import celery_worker

from .scripted import default_reply

# Real worker processes: the e2e lane.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

HEARTBEAT_S = 1
STALE_S = 3


class AgentServer:
    """``POST /v1/chat/completions``: the scripted agent's answer to the messages, ``delay`` seconds later."""

    def __init__(self, delay: float):
        self.delay = delay
        self.requests: list[float] = []  # when each request came in (time.monotonic())
        self.lock = threading.Lock()
        self.released = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(time.monotonic())
                    n = len(server.requests)
                server.released.wait(server.delay)
                text = default_reply(body["messages"], n)
                data = json.dumps({
                    "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 20, "completion_tokens": 7},
                }).encode()  # fmt: skip
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the worker was killed or gave up

            def log_message(self, format, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def stop(self):
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def model_server(settings, taxonomy):
    """A slow model server, allowed by the operator's settings, here and in the workers the tests start."""
    servers = []

    def start(delay: float) -> AgentServer:
        server = AgentServer(delay)
        servers.append(server)
        settings.PSYROOM_MODEL_SERVERS = [server.base_url]
        return server

    settings.PSYROOM_RUN_STALE_S = STALE_S
    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def clean_broker():
    """No task left in the broker by a killed worker (an unacknowledged Redis message) for later tests."""
    yield
    if django_settings.CELERY_BROKER_URL.startswith("redis://"):
        redis.Redis.from_url(django_settings.CELERY_BROKER_URL).delete("generation", "unacked", "unacked_index")


def _worker_env(server: AgentServer) -> dict:
    return {
        "PSYROOM_MODEL_SERVERS": server.base_url,
        "PSYROOM_RUN_HEARTBEAT_S": str(HEARTBEAT_S),
        "PSYROOM_RUN_STALE_S": str(STALE_S),
    }


def _run(server: AgentServer, *, count: int, batch_size: int, turns: int) -> GenerationRun:
    spec = ModelSpec.objects.create(
        name="slow-server", backend=ModelSpec.Backend.OPENAI, path="scripted", base_url=server.base_url,
        batch_size=batch_size, max_retries=0, timeout_s=30,
    )  # fmt: skip
    return run_create(
        kind="dialogue",
        sub_emotion=selectors.sub_emotion_get(key="anxiety.1"),
        count=count,
        turns=turns,
        model_spec=spec,
        parameters={"supervisor": False, "classify": False, "risk_agent": False},
    )


def wait_for(predicate, *, timeout: float, what: str, log=None) -> float:
    """Wait until ``predicate()``; returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} did not happen within {timeout} s\n" + (log.read_text() if log else ""))
        time.sleep(0.1)
    return time.monotonic() - started


def _row(run: GenerationRun) -> GenerationRun:
    return GenerationRun.objects.get(pk=run.pk)


def test_a_killed_worker_leaves_its_run_stalled_and_a_new_worker_resumes_it(model_server, curator, client,
                                                                              tmp_path, clean_broker):  # fmt: skip
    server = model_server(delay=0.4)
    run = _run(server, count=4, batch_size=1, turns=4)  # four chunks of one dialogue, four calls of 0.4 s each
    first_log = tmp_path / "worker-1.log"
    with celery_worker(first_log, env=_worker_env(server)) as worker:
        wait_for(lambda: _row(run).done >= 1, timeout=60, what="a saved chunk", log=first_log)
        time.sleep(0.6)  # in the middle of the second chunk
        os.kill(worker.pid, signal.SIGKILL)
        killed = time.monotonic()
        worker.wait(timeout=30)
    row = _row(run)
    assert row.status == "running" and 1 <= row.done < 4, (row.status, row.done)
    before = {c.run_index: (c.pk, c.content) for c in Candidate.objects.filter(run=run)}

    # Stalled within the threshold: the selector, the API and the run console say so.
    wait_for(lambda: selectors.run_status(_row(run)) == "stalled", timeout=STALE_S + 2, what="stalled")
    assert time.monotonic() - killed <= STALE_S + 2
    api = APIClient()
    api.force_authenticate(curator)
    body = api.get(reverse("api:run-detail", args=[run.pk])).json()
    assert body["status"] == "stalled" and body["heartbeat_at"] is not None
    assert [r["id"] for r in api.get(reverse("api:run-list"), {"status": "stalled"}).json()["results"]] == [run.pk]
    client.force_login(curator)
    page = client.get(reverse("generation:run", args=[run.pk])).content.decode()
    assert "Stalled" in page and 'id="resume-run"' in page

    # A new worker resumes it when it starts; the rest is generated, nothing is saved twice.
    second_log = tmp_path / "worker-2.log"
    with celery_worker(second_log, env=_worker_env(server)):
        wait_for(lambda: _row(run).is_finished, timeout=60, what="the resumed run", log=second_log)
    row = _row(run)
    assert (row.status, row.done, row.failed, row.resumes) == ("succeeded", 4, 0, 1), row.errors
    assert f"resumed stalled runs [{run.pk}]" in second_log.read_text()
    saved = Candidate.objects.filter(run=run)
    assert sorted(saved.values_list("run_index", flat=True)) == [0, 1, 2, 3]
    for candidate in saved:
        if candidate.run_index in before:
            assert (candidate.pk, candidate.content) == before[candidate.run_index]


def test_a_cancelled_run_stops_its_worker_within_one_model_call_and_saves_nothing_more(model_server, tmp_path,
                                                                                       clean_broker):  # fmt: skip
    server = model_server(delay=1.0)
    # One chunk of two dialogues, eight turns: one model call (two requests at once) per turn, a second each.
    run = _run(server, count=2, batch_size=2, turns=8)
    log = tmp_path / "worker.log"
    with celery_worker(log, env=_worker_env(server)):
        wait_for(lambda: _row(run).chunk_progress.get("calls", 0) >= 2, timeout=60, what="two turns", log=log)
        run_cancel(run=run)
        cancelled, requests_then = time.monotonic(), server.count()
        stopped = wait_for(lambda: f"run {run.pk} stopped" in log.read_text(), timeout=10, what="a stop", log=log)
        time.sleep(2.5)  # what the worker would have asked for next, had it gone on
        assert stopped <= 2.5, f"the worker went on for {stopped:.1f} s after the cancel"
        # At most the turn in flight was asked for (two requests), nothing after it.
        assert server.count() - requests_then <= 2, server.requests
        assert all(t < cancelled + 1.5 for t in server.requests)
    row = _row(run)
    assert (row.status, row.done, row.failed, row.chunk_progress) == ("cancelled", 0, 0, {})
    assert not Candidate.objects.filter(run=run).exists()
