"""The run kinds: for each, how its targets are built, what it adds to its parameters, its prompt version and the
executor of its chunks. ``generation.services.runs`` asks this registry and never names a kind itself."""

from collections.abc import Callable
from dataclasses import dataclass

from ..backends.base import Backend
from ..models import CandidateKind, GenerationRun, ModelSpec
from ..pipelines import course as course_pipeline
from ..pipelines import dialogue as dialogue_pipeline
from ..pipelines import plan as plan_pipeline
from ..pipelines import question as question_pipeline
from ..pipelines import scenario as scenario_pipeline
from .course import course_chunks, course_parameters, course_targets
from .dialogue import critique_targets, dialogue_chunks, dialogue_parameters, dialogue_targets
from .inputs import RunInputs
from .plan import plan_chunks, plan_targets
from .question import question_chunks, question_setup, question_targets
from .sampling import Chunks
from .scenario import scenario_chunks, scenario_targets


def no_parameters(*, turns: int, sessions: int) -> dict:
    """A kind that adds nothing to its run's parameters."""
    return {}


def no_setup(*, parameters: dict, model_spec: ModelSpec | None) -> tuple[dict, ModelSpec | None, dict]:
    """A kind whose parameters are all the sampler's and whose model spec is the one asked for (or the default)."""
    return parameters, model_spec, {}


@dataclass(frozen=True)
class RunKind:
    """What ``run_create`` and ``run_execute`` need of a run kind.

    ``prompt_versions`` is the prompt version of each language the kind writes in; ``targets`` builds the run's
    targets from what it was given; ``setup`` splits the kind's own parameters from
    the sampler's and may choose the model spec (a question run's is the first of its K models); ``parameters``
    adds the kind's own (turns, sessions); ``chunks`` executes the run's missing items chunk by chunk; ``critiques``
    builds the targets of a regeneration with a reviewer's feedback, for the kinds that have one.
    """

    prompt_versions: dict[str, str]
    targets: Callable[[RunInputs], list[dict]]
    chunks: Callable[[GenerationRun, Backend, list[int]], Chunks]
    parameters: Callable[..., dict] = no_parameters
    setup: Callable[..., tuple[dict, ModelSpec | None, dict]] = no_setup
    critiques: Callable[..., list[dict]] | None = None


KINDS: dict[CandidateKind, RunKind] = {
    CandidateKind.DIALOGUE: RunKind(
        prompt_versions=dialogue_pipeline.PROMPT_VERSIONS,
        targets=dialogue_targets,
        chunks=dialogue_chunks,
        parameters=dialogue_parameters,
        critiques=critique_targets,
    ),
    CandidateKind.PLAN: RunKind(
        prompt_versions=plan_pipeline.PROMPT_VERSIONS, targets=plan_targets, chunks=plan_chunks
    ),
    CandidateKind.SCENARIO: RunKind(
        prompt_versions=scenario_pipeline.PROMPT_VERSIONS, targets=scenario_targets, chunks=scenario_chunks
    ),
    CandidateKind.QUESTION: RunKind(
        prompt_versions=question_pipeline.PROMPT_VERSIONS,
        targets=question_targets,
        chunks=question_chunks,
        setup=question_setup,
    ),
    CandidateKind.COURSE: RunKind(
        prompt_versions=course_pipeline.PROMPT_VERSIONS,
        targets=course_targets,
        chunks=course_chunks,
        parameters=course_parameters,
    ),
}
RUN_KINDS = tuple(KINDS)


def run_kind(kind: str) -> RunKind:
    """The registry's entry for a run kind (``KeyError`` for a kind that is not one)."""
    return KINDS[CandidateKind(kind)]
