"""New scenarios for a sub-emotion, written by a model as candidates of kind ``scenario``.

A generated scenario is only a candidate: generation uses it once a reviewer approves it (it then becomes a
``Scenario`` row, see ``services.candidates.candidate_set_status``). All scenarios of a chunk are one batched call.
"""

from dataclasses import dataclass, field, replace

from ..agents.psyroom import AgentOutputError, parse_scenario, scenario_messages
from ..backends.base import Backend, SamplingParams
from .dialogue import Usage, call_agents

PROMPT_VERSION = "v1"
# The prompt version a run uses, by its language.
PROMPT_VERSIONS = {"en": PROMPT_VERSION, "zh": "v1-zh"}
PIPELINE = "scenario"


@dataclass
class ScenarioState:
    index: int
    content: dict | None = None
    failure: dict | None = None


@dataclass
class ScenarioResult:
    scenarios: list[ScenarioState]
    usage: Usage = field(default_factory=Usage)


def generate_scenarios(
    backend: Backend,
    *,
    indexes: list[int],
    emotion: str,
    category: str,
    existing: list[str],
    sampling: SamplingParams,
    version: str = PROMPT_VERSION,
) -> ScenarioResult:
    """One scenario per index; titles already used (in ``existing`` or earlier in the chunk) are refused."""
    result = ScenarioResult(scenarios=[ScenarioState(index=i) for i in indexes])
    prompt = scenario_messages(version=version, emotion=emotion, category=category, existing=existing)
    answers = call_agents(
        backend,
        [prompt] * len(indexes),
        lambda i, c: parse_scenario(c.text, existing=existing, truncated=c.truncated),
        replace(sampling, max_new_tokens=max(sampling.max_new_tokens, 160)),
        result.usage,
    )
    seen = {title.lower() for title in existing}
    for state, answer in zip(result.scenarios, answers, strict=True):
        if isinstance(answer, AgentOutputError):
            state.failure = {"index": state.index, "reason": answer.reason, "raw": answer.raw}
        elif answer["title"].lower() in seen:
            result.usage.stats["scenario_duplicate"] += 1
            state.failure = {"index": state.index, "reason": "scenario_duplicate", "raw": answer["title"]}
        else:
            seen.add(answer["title"].lower())
            state.content = answer
    return result
