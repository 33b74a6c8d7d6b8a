"""PsyRoom B treatment plans: from a dialogue and its sub-emotion, a structured plan validated by its schema.

The planner writes the plan section by section (formulation, goals, interventions, homework, schedule, risk,
safety plan, referral criteria): one short, checkable answer per prompt parses far more reliably than one long
JSON document, above all from small models. All sections of all plans in a chunk are one batched call.
"""

from dataclasses import dataclass, field, replace

from ..agents.psyroom import PLAN_SECTIONS, AgentOutputError, answer_start, parse_plan_section, plan_messages
from ..backends.base import Backend, SamplingParams
from ..schemas import ContentError, validate_content
from .dialogue import Usage, call_agents

# v2: the risk assessment's answer starts with "Risk level:" (the model continues it); v1 left the whole answer to the
# model, and a small model often never named a level.
PROMPT_VERSION = "v2"
# The prompt version a run uses, by its language.
PROMPT_VERSIONS = {"en": PROMPT_VERSION, "zh": "v2-zh"}
PIPELINE = "plan"
# A plan fails with any one of its eight sections, so a section gets more tries than a dialogue turn: with the bundled
# model, about half of all plans failed on one section with a single retry.
SECTION_RETRIES = 3


@dataclass
class PlanSource:
    index: int
    turns: list[dict]
    emotion: str
    category: str


@dataclass
class PlanState:
    index: int
    content: dict | None = None
    failure: dict | None = None


@dataclass
class PlanResult:
    plans: list[PlanState]
    usage: Usage = field(default_factory=Usage)


def generate_plans(
    backend: Backend, *, sources: list[PlanSource], sampling: SamplingParams, version: str = PROMPT_VERSION
) -> PlanResult:
    """One plan per source dialogue; a plan with a section that cannot be parsed fails with that section's raw text."""
    result = PlanResult(plans=[PlanState(index=s.index) for s in sources])
    prompts = [
        plan_messages(version=version, section=section, turns=s.turns, emotion=s.emotion, category=s.category)
        for s in sources
        for section in PLAN_SECTIONS
    ]
    per = len(PLAN_SECTIONS)
    answers = call_agents(
        backend,
        prompts,
        # A section whose answer the prompt starts is read whole: the given start and the model's continuation.
        lambda i, c: parse_plan_section(
            PLAN_SECTIONS[i % per], answer_start(prompts[i]) + c.text, truncated=c.truncated
        ),
        replace(sampling, max_new_tokens=max(sampling.max_new_tokens, 160)),
        result.usage,
        retries=SECTION_RETRIES,
    )
    for n, state in enumerate(result.plans):
        sections = answers[n * per : (n + 1) * per]
        bad = next(
            ((name, a) for name, a in zip(PLAN_SECTIONS, sections, strict=True) if isinstance(a, AgentOutputError)),
            None,
        )
        if bad:
            name, error = bad
            state.failure = {"index": state.index, "section": name, "reason": error.reason, "raw": error.raw}
            continue
        content = dict(zip(PLAN_SECTIONS, sections, strict=True))
        try:
            validate_content("plan", content)
        except ContentError as error:
            state.failure = {"index": state.index, "reason": "invalid_plan", "raw": str(error)}
            result.usage.stats["invalid_plan"] += 1
            continue
        state.content = content
    return result
