"""A whole dialogue run through ``OpenAIBackend`` against a local OpenAI-compatible test server that speaks vLLM's
structured outputs: a constrained request is answered with one of its choices, as vLLM answers it."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from generation import selectors
from generation.backends.server import OpenAIBackend
from generation.services import runs as run_services
from generation.services.runs import run_create, run_execute

from .scripted import default_reply, speaker

pytestmark = pytest.mark.django_db

SERVED = "Qwen/Qwen2.5-7B-Instruct"


class StructuredServer:
    """Answers each chat completion as the scripted agents would; under ``structured_outputs.choice`` with the
    choice the scripted answer starts with (the first choice when none does), never free text."""

    def __init__(self):
        self.bodies: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append(body)
                text = default_reply(body["messages"], len(server.bodies))
                choices = body.get("structured_outputs", {}).get("choice")
                if choices:
                    text = next((c for c in choices if text.startswith(c + " ")), choices[0])
                answer = {"id": "x", "object": "chat.completion", "model": SERVED, "system_fingerprint": "fp-1",
                          "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                       "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 10, "completion_tokens": 5}}  # fmt: skip
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def structured_server():
    server = StructuredServer()
    yield server
    server.stop()


def test_a_dialogue_run_through_a_model_server_reads_every_score_and_label(taxonomy, structured_server, monkeypatch):
    monkeypatch.setattr(run_services, "run_queue", lambda run_id: None)
    run = run_create(kind="dialogue", sub_emotion=selectors.sub_emotion_get(key="anxiety.1"), count=3, turns=4, seed=5)
    backend = OpenAIBackend(name="vllm-test", model=SERVED, base_url=structured_server.base_url, batch_size=4)
    run_execute(run_id=run.pk, backend=backend)
    run.refresh_from_db()
    assert (run.status, run.done, run.failed) == ("succeeded", 3, 0), run.errors
    assert "supervision_failed" not in run.stats and "label_outside_taxonomy" not in run.stats

    for candidate in run.candidates.all():
        [attempt] = candidate.ai_review["supervisor"]["attempts"]
        assert len(attempt["scores"]) == 5 and attempt["mean"] == 4.0
        assert all(s["reason"] == "The counselor stays with the client's worry." for s in attempt["scores"].values())
        assert candidate.ai_review["emotion"]["label"] == "anxiety.1" and candidate.ai_review["emotion"]["agrees"]
        assert candidate.lineage["runtime"] == {"server_model": SERVED, "server_fingerprint": "fp-1"}

    # What was constrained, and how: the scores among 1-5, the label among the 35 keys; nothing else.
    constrained = [(speaker(b["messages"]), b["structured_outputs"]["choice"]) for b in structured_server.bodies
                   if "structured_outputs" in b]  # fmt: skip
    keys = sorted(selectors.sub_emotion_list().values_list("key", flat=True))
    assert {agent for agent, _ in constrained} == {"supervisor_score", "classifier"}
    assert all(choice == ["1", "2", "3", "4", "5"] for agent, choice in constrained if agent == "supervisor_score")
    assert all(sorted(choice) == keys for agent, choice in constrained if agent == "classifier")
    assert sum(agent == "supervisor_score" for agent, _ in constrained) == 3 * 5
    # The reasons continue the chosen score, unconstrained.
    reasons = [b for b in structured_server.bodies if b["messages"][-1]["role"] == "assistant"]
    assert len(reasons) == 3 * 5 and all(b["messages"][-1]["content"] == "4 - " for b in reasons)
    assert all(b.get("continue_final_message") is True for b in reasons)
