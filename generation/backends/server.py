"""A model behind an OpenAI-compatible ``/chat/completions`` server (vLLM, TGI), asked over HTTP."""

import http.client
import json
import logging
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import replace

from .base import Completion, ModelLoadError, Prompt, SamplingParams, continues_answer

logger = logging.getLogger(__name__)


# Retry n (from 0) waits about RETRY_BASE_DELAY_S * 2**n, at most RETRY_MAX_DELAY_S; tests make them small.
RETRY_BASE_DELAY_S = 1.0
RETRY_MAX_DELAY_S = 30.0
# Statuses a loaded or restarting server answers with; any other HTTP error will not go away by asking again.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
# How often a batch waiting for a model server asks whether to stop (SamplingParams.interrupt), in seconds.
INTERRUPT_POLL_S = 0.5
# OpenAI and vLLM take a signed 64-bit seed.
_SEED_MODULUS = 2**63


class BackendError(RuntimeError):
    """A model server call that failed: refused, still failing after its retries, or answered something unreadable.

    ``status`` is the HTTP status when there was one; ``attempts`` how many requests were made.
    """

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1):
        super().__init__(message)
        self.status = status
        self.attempts = attempts


def _is_transient(error: Exception) -> bool:
    if isinstance(error, urllib.error.HTTPError):
        return error.code in TRANSIENT_STATUSES
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    # http.client.RemoteDisconnected (closed without an answer) is a ConnectionResetError.
    return isinstance(reason, ConnectionRefusedError | ConnectionResetError | ConnectionAbortedError | TimeoutError)


# What a run's error keeps of a server's words: a run's errors are shown to curators, and a body can hold anything
# (an internal service's page, a header echoed back), so it gets a short excerpt; the worker's log gets the body.
EXCERPT_CHARS = 200
# How much of an error body is read at all.
ERROR_BODY_BYTES = 64 * 1024


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "[redacted]") if secret else text


def _excerpt(text: str, *, secret: str = "") -> str:
    """At most ``EXCERPT_CHARS`` characters of ``text`` on one line: control characters and runs of white space
    become one space, and ``secret`` (the key that was sent) never appears."""
    text = _redact(text, secret)
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _server_message(error: urllib.error.HTTPError, *, name: str, url: str, secret: str = "") -> str:
    """A short excerpt of the server's own words from an error body: OpenAI and vLLM ``{"error": {"message"}}``,
    vLLM ``{"message"}``, TGI ``{"error": "..."}``; else the body's text. The body itself goes to the log."""
    try:
        raw = error.read(ERROR_BODY_BYTES)
    except (OSError, http.client.HTTPException):
        raw = b""
    text = raw.decode("utf-8", errors="replace").strip()
    logger.warning("%s: POST %s answered HTTP %s; body: %s", name, url, error.code, _redact(text, secret))
    detail = text
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        found = payload.get("error", payload.get("message"))
        if isinstance(found, dict):
            found = found.get("message")
        if isinstance(found, str) and found:
            detail = found
    return _excerpt(detail, secret=secret) or _excerpt(str(error.reason or "")) or "(empty body)"


def _describe(error: Exception, timeout_s: float, *, name: str = "", url: str = "", secret: str = "") -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}: {_server_message(error, name=name, url=url, secret=secret)}"
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    return f"{type(reason).__name__}: {reason}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A model server has no reason to redirect, and urllib would follow a redirect to any host with the
    Authorization header still on: a 3xx fails the request instead (HTTP 3xx, not retried)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _token_count(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class OpenAIBackend:
    """A model behind an OpenAI-compatible server (vLLM, TGI): one ``POST {base_url}/chat/completions`` per prompt.

    A batch's prompts are sent at once from up to ``batch_size`` threads, the server batching them itself. Each
    request is retried, with exponential backoff, only on a refused or reset connection, a timeout, or HTTP 429,
    500, 502, 503 or 504; any other failure (a redirect included) raises ``BackendError`` at once, naming the status
    and a short excerpt of the server's message (the whole body is logged). ``timeout_s`` bounds each wait on the
    socket (connecting, then each read), per attempt.
    """

    def __init__(
        self,
        *,
        name: str,
        model: str,
        base_url: str,
        api_key: str = "",
        timeout_s: float = 120,
        max_retries: int = 3,
        batch_size: int = 8,
    ):
        if not base_url:
            raise ModelLoadError(f"model spec {name!r}: the openai backend needs a base_url (e.g. http://host:8000/v1)")
        self.name = name
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.batch_size = max(1, batch_size)
        # What the server said it ran, from its answers (``runtime``).
        self._served: dict[str, str] = {}

    @property
    def runtime(self) -> dict:
        """What a candidate's lineage records beside the spec: the model the server said it ran (its ``model``
        field, which names the weights it loaded) and its ``system_fingerprint`` where it gives one."""
        return dict(self._served)

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[Completion]:
        if not prompts:
            return []
        # One seed per prompt: a batch may repeat a prompt (the scenario writer does), and the copies must differ as
        # they do in a sampled local batch.
        bodies = [
            self._body(prompt, replace(params, seed=(params.seed + i) % _SEED_MODULUS))
            for i, prompt in enumerate(prompts)
        ]
        pool = ThreadPoolExecutor(max_workers=min(self.batch_size, len(prompts)))
        futures = [pool.submit(self._complete, body) for body in bodies]
        try:
            pending = set(futures)
            while pending:
                # Wake up twice a second to ask whether to stop (a cancelled run), rather than wait out the server.
                done, pending = wait(pending, timeout=INTERRUPT_POLL_S, return_when=FIRST_EXCEPTION)
                for future in done:
                    if future.exception() is not None:
                        future.result()  # raises the request's error
                if pending and params.interrupt is not None:
                    params.interrupt()
            return [future.result() for future in futures]
        finally:
            # On an error or an interruption, requests not yet sent are dropped and those in flight are left to end
            # (each within timeout_s) in their threads, without holding up the caller.
            pool.shutdown(wait=False, cancel_futures=True)

    def _body(self, prompt: Prompt, params: SamplingParams) -> dict:
        body = {
            "model": self.model,
            "messages": prompt,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
        }
        # Not OpenAI parameters: vLLM honours them; a server that does not know them may refuse the request (HTTP 400).
        if params.repetition_penalty != 1.0:
            body["repetition_penalty"] = params.repetition_penalty
        if continues_answer(prompt):
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        structure = params.structure
        if structure is not None:
            # A JSON schema the OpenAI way (vLLM and SGLang honour it too); a choice or a regular expression as
            # vLLM's structured outputs. The answer is still read by the agent's parser: a server that ignored the
            # constraint gives text the parser refuses, with its raw text kept.
            if structure.json_schema:
                schema = json.loads(structure.json_schema)
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": schema, "strict": True},
                }
            elif structure.choices:
                body["structured_outputs"] = {"choice": list(structure.choices)}
            else:
                body["structured_outputs"] = {"regex": structure.regex}
        return body

    def _complete(self, body: dict) -> Completion:
        return self._parse(self._post(body))

    def _post(self, body: dict) -> bytes:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with _opener.open(request, timeout=self.timeout_s) as response:
                    return response.read()
            except (OSError, http.client.HTTPException) as error:  # URLError and HTTPError are OSErrors
                status = error.code if isinstance(error, urllib.error.HTTPError) else None
                problem = _describe(error, self.timeout_s, name=self.name, url=self.url, secret=self.api_key)
                if not _is_transient(error):
                    raise BackendError(
                        f"{self.name}: POST {self.url} failed: {problem}", status=status, attempts=attempt
                    ) from error
                if attempt == attempts:
                    raise BackendError(
                        f"{self.name}: POST {self.url} failed after {attempts} attempts; last: {problem}",
                        status=status,
                        attempts=attempt,
                    ) from error
                delay = min(RETRY_MAX_DELAY_S, RETRY_BASE_DELAY_S * 2 ** (attempt - 1))
                # Jitter, so that the threads of a batch that failed together do not all come back together.
                delay *= random.uniform(0.5, 1.0)
                logger.warning("%s: %s; retry %d of %d in %.2f s", self.name, problem, attempt, self.max_retries, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _parse(self, raw: bytes) -> Completion:
        def malformed(what: str) -> BackendError:
            text = raw[:ERROR_BODY_BYTES].decode("utf-8", errors="replace")
            logger.warning("%s: POST %s answered %s; body: %s", self.name, self.url, what, _redact(text, self.api_key))
            excerpt = _excerpt(text, secret=self.api_key)
            return BackendError(f"{self.name}: {self.url} answered {what}: {excerpt!r}", status=200)

        try:
            payload = json.loads(raw)
        except ValueError:
            raise malformed("a body that is not JSON") from None
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise malformed("no choices")
        message = choices[0].get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise malformed("no choices[0].message.content")
        usage = payload.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        for field, key in (("model", "server_model"), ("system_fingerprint", "server_fingerprint")):
            value = payload.get(field)
            if isinstance(value, str) and value:
                # Untrusted: kept short, on one line.
                self._served[key] = " ".join(value.split())[:200]
        return Completion(
            text=content,
            prompt_tokens=_token_count(usage.get("prompt_tokens")),
            completion_tokens=_token_count(usage.get("completion_tokens")),
            truncated=choices[0].get("finish_reason") == "length",
        )
