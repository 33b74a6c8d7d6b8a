"""Validation of a candidate's ``content``, one schema per kind.

Content comes from models and from imported files: both are untrusted. ``validate_content`` raises
``ContentError`` naming the first thing that is wrong and where (``turns[3].text: ...``).
"""

from typing import Any

DIALOGUE_ROLES = ("client", "counselor")
MAX_TURN_CHARS = 20_000
MAX_TURNS = 400


class ContentError(ValueError):
    """Content that does not fit its kind's schema."""


def _dialogue(content: Any) -> None:
    if not isinstance(content, dict):
        raise ContentError("content: must be an object with a 'turns' list")
    turns = content.get("turns")
    if not isinstance(turns, list) or not turns:
        raise ContentError("turns: must be a non-empty list")
    if len(turns) > MAX_TURNS:
        raise ContentError(f"turns: {len(turns)} turns, more than the limit of {MAX_TURNS}")
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise ContentError(f"turns[{i}]: must be an object with 'role' and 'text'")
        unknown = set(turn) - {"role", "text", "strategy"}
        if unknown:
            raise ContentError(f"turns[{i}]: unknown field(s) {', '.join(sorted(unknown))}")
        if turn.get("role") not in DIALOGUE_ROLES:
            raise ContentError(f"turns[{i}].role: must be 'client' or 'counselor', not {turn.get('role')!r}")
        text = turn.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ContentError(f"turns[{i}].text: must be non-empty text")
        if len(text) > MAX_TURN_CHARS:
            raise ContentError(f"turns[{i}].text: {len(text)} characters, more than the limit of {MAX_TURN_CHARS}")
    if not any(t["role"] == "counselor" for t in turns):
        raise ContentError("turns: a dialogue needs at least one counselor turn")


RISK_LEVELS = ("low", "moderate", "high")
PLAN_LISTS = ("goals", "homework", "session_schedule", "safety_plan", "referral_criteria")


def _text(value: Any, where: str, limit: int = 5000) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ContentError(f"{where}: must be non-empty text")
    if len(value) > limit:
        raise ContentError(f"{where}: {len(value)} characters, more than the limit of {limit}")


def _plan(content: Any) -> None:
    """A treatment plan (PsyRoom B): formulation, goals, interventions, homework, schedule, risk, referral."""
    if not isinstance(content, dict):
        raise ContentError("content: must be an object")
    expected = {"case_formulation", "interventions", "risk_assessment", *PLAN_LISTS}
    missing = expected - set(content)
    if missing:
        raise ContentError(f"content: missing section(s) {', '.join(sorted(missing))}")
    unknown = set(content) - expected
    if unknown:
        raise ContentError(f"content: unknown section(s) {', '.join(sorted(unknown))}")
    _text(content["case_formulation"], "case_formulation")
    for name in PLAN_LISTS:
        items = content[name]
        if not isinstance(items, list) or not items:
            raise ContentError(f"{name}: must be a non-empty list")
        for i, item in enumerate(items):
            _text(item, f"{name}[{i}]", 1000)
    interventions = content["interventions"]
    if not isinstance(interventions, list) or not interventions:
        raise ContentError("interventions: must be a non-empty list")
    for i, item in enumerate(interventions):
        if not isinstance(item, dict) or set(item) != {"technique", "rationale"}:
            raise ContentError(f"interventions[{i}]: must be an object with 'technique' and 'rationale'")
        _text(item["technique"], f"interventions[{i}].technique", 200)
        _text(item["rationale"], f"interventions[{i}].rationale", 1000)
    risk = content["risk_assessment"]
    if not isinstance(risk, dict) or set(risk) != {"level", "rationale"}:
        raise ContentError("risk_assessment: must be an object with 'level' and 'rationale'")
    if risk["level"] not in RISK_LEVELS:
        raise ContentError(f"risk_assessment.level: must be low, moderate or high, not {risk['level']!r}")
    _text(risk["rationale"], "risk_assessment.rationale", 1000)


def _scenario(content: Any) -> None:
    if not isinstance(content, dict):
        raise ContentError("content: a scenario must be an object with title and description")
    unknown = set(content) - {"title", "description"}
    if unknown:
        raise ContentError(f"content: unknown field(s) {sorted(unknown)}")
    _text(content.get("title"), "title", 200)
    _text(content.get("description"), "description", 3000)


_VALIDATORS = {"dialogue": _dialogue, "plan": _plan, "scenario": _scenario}


def validate_content(kind: str, content: Any) -> None:
    validator = _VALIDATORS.get(kind)
    if validator is None:
        raise ContentError(f"kind: no schema for {kind!r} yet")
    validator(content)
