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
class Structure:
    """What an answer must be, for a backend to enforce while it decodes (never left to parsing luck).

    Exactly one field is set: ``choices`` (the answer is one of these strings, exactly), ``regex`` (the answer
    matches it whole) or ``json_schema`` (the answer is one JSON value valid against this schema, given as JSON
    text so that the structure stays hashable and comparable).
    """

    choices: tuple[str, ...] = ()
    regex: str = ""
    json_schema: str = ""

    def __post_init__(self):
        if sum(map(bool, (self.choices, self.regex, self.json_schema))) != 1:
            raise ValueError("a structure is exactly one of choices, regex or json_schema")


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 96
    temperature: float = 0.7
    top_p: float = 0.9
    # Small models loop on the same sentence without it.
    repetition_penalty: float = 1.0
    seed: int = 0
    # What the answer must be (a label, a score, a JSON object), enforced while decoding; None for free text.
    structure: Structure | None = None
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
