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


# --- Questions (Psyche-R1) ------------------------------------------------------------------------------------------

QUESTION_TYPES = ("single", "multi", "open")
QUESTION_FIELDS = {
    "format", "subject", "question_type", "question_kind", "question", "options", "answer", "explanation",
    "answers", "difficulty", "selection", "chosen",
}  # fmt: skip
ANSWER_FIELDS = {"model", "rationale", "answer", "correct", "raw", "error", "edited"}


def _question(content: Any) -> None:
    """A question: single or multiple choice (options A, B, ... and the answer's letters) or open (answer text).

    After a cross-selection run it also holds every model's answer and the difficulty that followed from them.
    """
    if not isinstance(content, dict):
        raise ContentError("content: a question must be an object")
    unknown = set(content) - QUESTION_FIELDS
    if unknown:
        raise ContentError(f"content: unknown field(s) {', '.join(sorted(unknown))}")
    qtype = content.get("question_type")
    if qtype not in QUESTION_TYPES:
        raise ContentError(f"question_type: must be single, multi or open, not {qtype!r}")
    _text(content.get("question"), "question", 20_000)
    options = content.get("options", {})
    answer = content.get("answer")
    if qtype == "open":
        if options:
            raise ContentError("options: an open question has no options")
        _text(answer, "answer", 20_000)
    else:
        if not isinstance(options, dict) or len(options) < 2:
            raise ContentError("options: a choice question needs at least two options")
        for letter, text in options.items():
            if not (len(letter) == 1 and "A" <= letter <= "Z"):
                raise ContentError(f"options: {letter!r} is not a capital letter")
            _text(text, f"options.{letter}", 2000)
        if not isinstance(answer, str) or not answer:
            raise ContentError("answer: a choice question needs its answer letter(s)")
        outside = sorted(set(answer) - set(options))
        if outside:
            raise ContentError(f"answer: {', '.join(outside)} not among the options {''.join(sorted(options))}")
        if len(set(answer)) != len(answer):
            raise ContentError(f"answer: {answer!r} repeats a letter")
        if qtype == "single" and len(answer) != 1:
            raise ContentError(f"answer: a single-choice question has one answer letter, not {answer!r}")
    answers = content.get("answers", [])
    if not isinstance(answers, list):
        raise ContentError("answers: must be a list")
    for i, item in enumerate(answers):
        if not isinstance(item, dict) or not {"model", "raw", "correct"} <= set(item):
            raise ContentError(f"answers[{i}]: must be an object with model, raw and correct")
        if set(item) - ANSWER_FIELDS:
            raise ContentError(f"answers[{i}]: unknown field(s) {', '.join(sorted(set(item) - ANSWER_FIELDS))}")
    if content.get("difficulty") not in (None, "hard", "easy"):
        raise ContentError(f"difficulty: must be hard or easy, not {content['difficulty']!r}")
    chosen = content.get("chosen")
    if chosen is not None and not (isinstance(chosen, int) and 0 <= chosen < len(answers)):
        raise ContentError(f"chosen: {chosen!r} is not the index of one of the answers")


# --- Courses (MusPsy): a course and its sessions -------------------------------------------------------------------

# What the memory writer records after each session, in this order.
MEMORY_FIELDS = ("emotion_cognitive", "observations", "assignments", "session_goal", "summary")


def _memory(memory: Any, where: str) -> None:
    """A session's memory: the five fields; an unparsed one keeps the writer's raw text and may leave fields empty."""
    if not isinstance(memory, dict):
        raise ContentError(f"{where}: must be an object with {', '.join(MEMORY_FIELDS)}")
    unknown = set(memory) - {*MEMORY_FIELDS, "unparsed", "error", "raw"}
    if unknown:
        raise ContentError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    for name in MEMORY_FIELDS:
        value = memory.get(name)
        if memory.get("unparsed") and value == "":
            continue
        _text(value, f"{where}.{name}", 5000)


def _session(content: Any) -> None:
    if not isinstance(content, dict) or set(content) - {"turns", "memory"}:
        raise ContentError("content: a session must be an object with 'turns' and 'memory'")
    _dialogue({"turns": content.get("turns")})
    _memory(content.get("memory"), "memory")


def _course(content: Any) -> None:
    """A course: the profile it was written for (a snapshot), the number of sessions, and course-level notes."""
    if not isinstance(content, dict):
        raise ContentError("content: a course must be an object")
    unknown = set(content) - {"profile", "sessions", "goals", "notes"}
    if unknown:
        raise ContentError(f"content: unknown field(s) {', '.join(sorted(unknown))}")
    if not isinstance(content.get("profile"), dict) or not content["profile"].get("name"):
        raise ContentError("profile: must be an object with at least the client's name")
    sessions = content.get("sessions")
    if not isinstance(sessions, int) or isinstance(sessions, bool) or not 1 <= sessions <= 50:
        raise ContentError(f"sessions: must be a whole number from 1 to 50, not {sessions!r}")
    for name in ("goals", "notes"):
        if not isinstance(content.get(name, ""), str) or len(content.get(name, "")) > 5000:
            raise ContentError(f"{name}: must be text of at most 5000 characters")


_VALIDATORS = {
    "dialogue": _dialogue, "plan": _plan, "scenario": _scenario, "question": _question, "course": _course,
    "session": _session,
}  # fmt: skip


def validate_content(kind: str, content: Any) -> None:
    validator = _VALIDATORS.get(kind)
    if validator is None:
        raise ContentError(f"kind: no schema for {kind!r} yet")
    validator(content)
