"""What every model backend takes and gives: chat prompts, sampling parameters, completions."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypedDict

Message = dict[str, str]
Prompt = list[Message]


def continues_answer(prompt: Prompt) -> bool:
    """Whether a prompt ends with the start of the answer (an assistant message), for the model to continue rather
    than to answer afresh."""
    return bool(prompt) and prompt[-1]["role"] == "assistant"


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
