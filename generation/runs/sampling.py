"""What every run kind shares: the sampler's parameters, a candidate's lineage, what a chunk yields."""

from collections.abc import Iterator, Mapping
from typing import Protocol

from ..backends.base import Backend, SamplingParams
from ..models import Candidate, GenerationRun, ModelSpec, SubEmotion


class ChunkUsage(Protocol):
    """A chunk's tokens and what its parsers caught (``pipelines.dialogue.Usage``, ``pipelines.question``'s batch)."""

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def completion_tokens(self) -> int: ...

    @property
    def stats(self) -> Mapping[str, int]: ...


# What a kind's chunk executor yields for each chunk: the candidates to save, the failed items, the usage.
Chunk = tuple[list[Candidate], list[dict], ChunkUsage]
Chunks = Iterator[Chunk]


def chunk_seed(run: GenerationRun, chunk: list[int]) -> int:
    """The sampler's seed of a chunk: the run's seed and the chunk's first index, so that a chunk run again draws
    the same."""
    return run.seed * 100_003 + chunk[0]


def run_sampling(run: GenerationRun, seed: int) -> SamplingParams:
    """The sampler's parameters of a run (its ``parameters``), with ``seed``."""
    params = run.parameters
    return SamplingParams(
        max_new_tokens=int(params.get("max_new_tokens", 96)),
        temperature=float(params.get("temperature", 0.7)),
        top_p=float(params.get("top_p", 0.9)),
        repetition_penalty=float(params.get("repetition_penalty", 1.0)),
        seed=seed,
    )


def run_lineage(run: GenerationRun, backend: Backend, *, pipeline: str, chunk: list[int], extra: dict) -> dict:
    """What a generated candidate records of how it was made: the model, its runtime, the prompt version and its
    language, the seed, the chunk and the run's parameters, with ``extra``."""
    # The device and dtype an in-process model ran in, or the model a server said it ran.
    runtime = getattr(backend, "runtime", None)
    return {
        "model": run.model_spec.name,
        **({"runtime": runtime} if runtime else {}),
        "model_path": run.model_spec.path,
        "backend": run.model_spec.backend,
        "prompt_version": f"{pipeline}/{run.prompt_version}",
        "language": run.language,
        "seed": run.seed,
        "chunk": chunk,
        "parameters": run.parameters,
        **extra,
    }


def emotion_names(sub: SubEmotion | None, language: str) -> tuple[str, str]:
    """A sub-emotion's name and its category's, as a prompt in ``language`` gives them (``unspecified`` without one).

    The Chinese labels carry the taxonomy's numbering ("焦虑1-自我施加的压力"); a prompt gets the name after it.
    """
    if sub is None:
        return ("未指明", "未指明") if language == "zh" else ("unspecified", "unspecified")
    if language == "zh":
        return sub.label_zh.split("-", 1)[-1], sub.category.label_zh
    return sub.label_en, sub.category.label_en


def taxonomy_labels(language: str) -> dict[str, str]:
    """Every sub-emotion's key and label in ``language``, for the emotion classifier's list."""
    field = "label_zh" if language == "zh" else "label_en"
    return dict(SubEmotion.objects.order_by("key").values_list("key", field))


def risk_agent_default(spec: ModelSpec) -> bool:
    """Whether a run asks its model's risk agent unless told: yes, except with the bundled 135M model, whose answers
    cannot be read in the agent's format (each would open a flag); the rules screen every item either way."""
    return not spec.path.startswith("bundled:")
