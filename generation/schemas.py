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


_VALIDATORS = {"dialogue": _dialogue}


def validate_content(kind: str, content: Any) -> None:
    validator = _VALIDATORS.get(kind)
    if validator is None:
        raise ContentError(f"kind: no schema for {kind!r} yet")
    validator(content)
