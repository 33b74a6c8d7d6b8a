"""OpenAIBackend against a real local HTTP server whose answers each test scripts."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from generation.backends import loading, server
from generation.backends.base import Completion, ModelLoadError, SamplingParams
from generation.backends.loading import backend_for
from generation.backends.server import BackendError, OpenAIBackend
from generation.models import ModelSpec

PROMPT = [{"role": "system", "content": "You are a counselor."}, {"role": "user", "content": "I can't sleep."}]


def ok(text="I hear you.", *, usage=True, finish_reason="stop"):
    body = {"id": "c1", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
    ]}  # fmt: skip
    if usage:
        body["usage"] = {"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25}
    return 200, body


def error(status, message):
    return status, {"error": {"message": message, "type": "invalid_request_error"}}


class ScriptedServer:
    """Answers request n with ``script[n]`` (the last entry again once the script runs out).

    An entry is ``(status, body)`` or ``(status, body, headers)`` where body is a dict (sent as JSON) or bytes;
    ``("sleep", seconds, entry)`` answers ``entry`` late; ``("close",)`` drops the connection without answering.
    """

    def __init__(self, script):
        self.script = list(script)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with server.lock:
                    n = len(server.requests)
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                    entry = server.script[min(n, len(server.script) - 1)]
                self.answer(entry)

            def answer(self, entry):
                if entry[0] == "close":
                    self.close_connection = True
                    return
                if entry[0] == "sleep":
                    # Woken early when the test ends, so that no handler outlives it by much.
                    server.released.wait(entry[1])
                    return self.answer(entry[2])
                status, body, headers = (*entry, {}) if len(entry) == 2 else entry
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format, *args):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that gave up (timeout) leaves a broken pipe behind: expected here

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def bodies(self):
        return [r["body"] for r in self.requests]

    def stop(self):
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(server, "RETRY_BASE_DELAY_S", 0.001)
    monkeypatch.setattr(server, "RETRY_MAX_DELAY_S", 0.01)


def backend(server, **options):
    defaults = {"name": "remote", "model": "qwen2.5-7b-instruct", "base_url": server.base_url, "max_retries": 3}
    return OpenAIBackend(**{**defaults, **options})


def test_returns_texts_and_token_counts_and_sends_the_sampling_parameters(serve):
    server = serve(ok("I hear you."))
    params = SamplingParams(max_new_tokens=64, temperature=0.3, top_p=0.8, seed=42)

    completions = backend(server, api_key="sk-test").generate([PROMPT], params)

    assert completions == [Completion(text="I hear you.", prompt_tokens=21, completion_tokens=4, truncated=False)]
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    assert request["body"] == {
        "model": "qwen2.5-7b-instruct",
        "messages": PROMPT,
        "max_tokens": 64,
        "temperature": 0.3,
        "top_p": 0.8,
        "seed": 42,
    }


def test_a_batch_keeps_its_order_and_gives_each_prompt_its_own_seed(serve):
    server = serve(ok())
    prompts = [[{"role": "user", "content": f"prompt {i}"}] for i in range(5)]

    completions = backend(server, batch_size=2).generate(prompts, SamplingParams(seed=7, repetition_penalty=1.2))

    assert len(completions) == 5
    by_prompt = {b["messages"][0]["content"]: b for b in server.bodies}
    assert [by_prompt[f"prompt {i}"]["seed"] for i in range(5)] == [7, 8, 9, 10, 11]
    assert all(b["repetition_penalty"] == 1.2 for b in server.bodies)
    assert "Authorization" not in server.requests[0]["headers"]


def test_a_prompt_that_starts_the_answer_asks_the_server_to_continue_it(serve):
    server = serve(ok(" low - no thoughts of harm."))
    started = [*PROMPT, {"role": "assistant", "content": "Risk level:"}]

    backend(server).generate([started, PROMPT], SamplingParams())

    by_last = {b["messages"][-1]["role"]: b for b in server.bodies}
    assert by_last["assistant"]["messages"] == started
    assert by_last["assistant"]["continue_final_message"] is True
    assert by_last["assistant"]["add_generation_prompt"] is False
    assert "continue_final_message" not in by_last["user"] and "add_generation_prompt" not in by_last["user"]


def test_an_empty_batch_makes_no_request(serve):
    server = serve(ok())
    assert backend(server).generate([], SamplingParams()) == []
    assert server.requests == []


def test_without_usage_the_counts_are_zero_and_a_length_stop_is_truncated(serve):
    server = serve(ok("Half a sent", usage=False, finish_reason="length"))
    [completion] = backend(server).generate([PROMPT], SamplingParams())
    assert completion == Completion(text="Half a sent", prompt_tokens=0, completion_tokens=0, truncated=True)


def test_retries_503_then_succeeds(serve):
    server = serve(error(503, "loading"), error(503, "loading"), ok("Better now."))
    [completion] = backend(server).generate([PROMPT], SamplingParams())
    assert completion.text == "Better now."
    assert len(server.requests) == 3
    # Every attempt sends the same request.
    assert server.bodies[0] == server.bodies[2]


@pytest.mark.parametrize("status", [429, 500, 502, 504])
def test_retries_each_transient_status(serve, status):
    server = serve(error(status, "busy"), ok())
    assert backend(server).generate([PROMPT], SamplingParams())[0].text == "I hear you."
    assert len(server.requests) == 2


def test_retries_stop_at_max_retries_with_the_last_error(serve):
    server = serve(error(503, "model is loading"))
    with pytest.raises(BackendError, match=r"after 3 attempts; last: HTTP 503: model is loading") as caught:
        backend(server, max_retries=2).generate([PROMPT], SamplingParams())
    assert len(server.requests) == 3
    assert (caught.value.status, caught.value.attempts) == (503, 3)


def test_no_retries_when_max_retries_is_zero(serve):
    server = serve(error(429, "rate limited"))
    with pytest.raises(BackendError, match="after 1 attempts; last: HTTP 429: rate limited"):
        backend(server, max_retries=0).generate([PROMPT], SamplingParams())
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, {"error": {"message": "max_tokens is too large"}}, "max_tokens is too large"),
        (401, {"error": {"message": "Invalid API key"}}, "Invalid API key"),
        (404, {"object": "error", "message": "The model `x` does not exist."}, "The model `x` does not exist."),
        (422, {"error": "Input validation error", "error_type": "validation"}, "Input validation error"),
        (400, b"plain text complaint", "plain text complaint"),
    ],
)
def test_a_client_error_fails_at_once_naming_the_status_and_the_server_message(serve, status, body, message):
    server = serve((status, body))
    with pytest.raises(BackendError) as caught:
        backend(server).generate([PROMPT], SamplingParams())
    assert f"HTTP {status}: {message}" in str(caught.value)
    assert (caught.value.status, caught.value.attempts) == (status, 1)
    assert len(server.requests) == 1


def test_a_slow_server_times_out_after_the_retries(serve):
    server = serve(("sleep", 5, ok()))
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"after 2 attempts; last: no answer within 0.2 s") as caught:
        backend(server, timeout_s=0.2, max_retries=1).generate([PROMPT], SamplingParams())
    assert time.monotonic() - started < 3
    assert caught.value.status is None
    assert len(server.requests) == 2


def test_a_timeout_then_an_answer_succeeds(serve):
    server = serve(("sleep", 5, ok()), ok("On time."))
    assert backend(server, timeout_s=0.2).generate([PROMPT], SamplingParams())[0].text == "On time."
    assert len(server.requests) == 2


def test_a_dropped_connection_is_retried(serve):
    server = serve(("close",), ok("Back."))
    assert backend(server).generate([PROMPT], SamplingParams())[0].text == "Back."
    assert len(server.requests) == 2


def test_a_refused_connection_is_retried_then_fails():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    remote = OpenAIBackend(name="remote", model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2)
    with pytest.raises(BackendError, match=r"after 3 attempts; last: ConnectionRefusedError"):
        remote.generate([PROMPT], SamplingParams())


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>Bad gateway</html>", "a body that is not JSON"),
        ({"object": "chat.completion"}, "no choices"),
        ({"choices": []}, "no choices"),
        ({"choices": [{"message": {"role": "assistant", "content": None}}]}, r"no choices\[0\]\.message\.content"),
        ({"choices": [{"text": "completion-style"}]}, r"no choices\[0\]\.message\.content"),
    ],
)
def test_a_malformed_body_raises_a_clear_error_without_retrying(serve, body, problem):
    server = serve((200, body))
    with pytest.raises(BackendError, match=f"answered {problem}"):
        backend(server).generate([PROMPT], SamplingParams())
    assert len(server.requests) == 1


def test_one_failed_prompt_fails_the_batch(serve):
    server = serve(ok(), error(400, "prompt too long"))
    prompts = [PROMPT, PROMPT]
    with pytest.raises(BackendError, match="HTTP 400: prompt too long"):
        backend(server, batch_size=1).generate(prompts, SamplingParams())


def spec(**fields):
    defaults = {"name": "vllm-qwen", "backend": ModelSpec.Backend.OPENAI, "path": "qwen2.5-7b-instruct"}
    return ModelSpec(**{**defaults, **fields})


def test_backend_for_builds_the_http_backend_from_a_spec(serve, monkeypatch, settings):
    monkeypatch.setattr(loading, "_loaded", {})
    monkeypatch.setenv("VLLM_KEY", "sk-env")
    server = serve(ok("From the spec."))
    settings.PSYROOM_MODEL_SERVERS = [server.base_url]
    settings.PSYROOM_MODEL_CREDENTIALS = {"vllm": "VLLM_KEY"}
    model_spec = spec(base_url=server.base_url + "/", api_key_env="vllm", timeout_s=5, max_retries=1, batch_size=4)

    remote = backend_for(model_spec)

    assert isinstance(remote, OpenAIBackend)
    assert (remote.timeout_s, remote.max_retries, remote.batch_size) == (5, 1, 4)
    assert backend_for(model_spec) is remote
    assert remote.generate([PROMPT], SamplingParams())[0].text == "From the spec."
    assert server.requests[0]["path"] == "/v1/chat/completions"
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-env"
    assert server.bodies[0]["model"] == "qwen2.5-7b-instruct"


def test_backend_for_refuses_a_spec_whose_key_variable_is_unset(monkeypatch, settings):
    monkeypatch.setattr(loading, "_loaded", {})
    monkeypatch.delenv("VLLM_KEY", raising=False)
    settings.PSYROOM_MODEL_SERVERS = ["http://127.0.0.1:1/v1"]
    settings.PSYROOM_MODEL_CREDENTIALS = {"vllm": "VLLM_KEY"}
    with pytest.raises(ModelLoadError, match="VLLM_KEY of credential 'vllm' is not set"):
        backend_for(spec(base_url="http://127.0.0.1:1/v1", api_key_env="vllm"))


def test_backend_for_refuses_a_spec_without_a_base_url(monkeypatch):
    monkeypatch.setattr(loading, "_loaded", {})
    with pytest.raises(ModelLoadError, match="needs a base_url"):
        backend_for(spec())


@pytest.mark.parametrize(
    ("structure", "sent"),
    [
        ({"choices": ("anxiety.1", "sadness.3")}, {"structured_outputs": {"choice": ["anxiety.1", "sadness.3"]}}),
        ({"regex": "[1-5]"}, {"structured_outputs": {"regex": "[1-5]"}}),
        (
            {"json_schema": '{"type": "object", "properties": {"score": {"type": "integer"}}}'},
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "answer",
                        "schema": {"type": "object", "properties": {"score": {"type": "integer"}}},
                        "strict": True,
                    },
                }
            },  # fmt: skip
        ),
    ],
)
def test_a_structure_is_sent_as_the_server_s_structured_output_parameters(serve, structure, sent):
    from generation.backends.base import Structure

    server = serve(ok("anxiety.1"))
    params = SamplingParams(max_new_tokens=8, seed=1, structure=Structure(**structure))
    [completion] = backend(server).generate([PROMPT], params)
    assert completion.text == "anxiety.1"
    [body] = server.bodies
    assert {k: v for k, v in body.items() if k in ("structured_outputs", "response_format")} == sent


def test_without_a_structure_no_structured_output_parameter_is_sent(serve):
    server = serve(ok())
    backend(server).generate([PROMPT], SamplingParams())
    assert not {"structured_outputs", "response_format"} & set(server.bodies[0])
