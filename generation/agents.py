"""Agents are prompts plus parsing: what each agent is told, and how its untrusted output is read.

Prompts live in files under ``prompts/<pipeline>/<version>/``; the version is part of every candidate's lineage.
"""

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"

# Labels a model puts in front of a turn ("Counselor: ..."): the one of its own side is dropped, one of the
# other side means the model went on to write the other side's turn.
_LABELS = {
    "client": ["client", "user", "patient", "help-seeker", "me", "来访者", "求助者"],
    "counselor": ["counselor", "counsellor", "therapist", "assistant", "psychologist", "心理咨询师", "咨询师"],
}
_LABEL_RE = {
    role: re.compile(r"^\s*[*_]*(?:" + "|".join(re.escape(label) for label in labels) + r")[*_]*\s*[:：][*_]*\s*", re.I)
    for role, labels in _LABELS.items()
}
_OTHER_LABEL_RE = {
    role: re.compile(
        r"(?:^|\n)\s*[*_]*(?:" + "|".join(re.escape(label) for label in _LABELS[other]) + r")[*_]*\s*[:：]", re.I
    )
    for role, other in (("client", "counselor"), ("counselor", "client"))
}
MIN_TURN_CHARS = 2


class AgentOutputError(ValueError):
    """Model output that cannot be used; ``reason`` is a short code counted in the run's failures."""

    def __init__(self, reason: str, raw: str):
        super().__init__(f"{reason}: {raw[:200]!r}")
        self.reason = reason
        self.raw = raw


@dataclass(frozen=True)
class ParsedTurn:
    text: str
    # What the parser had to mend, counted per run: "spoke_for_other", "truncated".
    repairs: tuple[str, ...] = ()


@cache
def load_prompt(pipeline: str, version: str, name: str) -> str:
    path = PROMPTS_DIR / pipeline / version / f"{name}.txt"
    return path.read_text(encoding="utf-8").strip()


def _trim_to_sentence(text: str) -> str:
    """Cut a turn that ran out of tokens back to its last complete sentence, when it has one."""
    ends = [m.end() for m in re.finditer(r"[.!?。！？](?:[\"'”’)]|\s|$)", text)]
    return text[: ends[-1]].strip() if ends else text


def parse_turn(raw: str, *, role: str, truncated: bool = False, max_chars: int = 2000) -> ParsedTurn:
    """Read one dialogue turn written by the agent playing ``role``.

    Drops a label of the agent's own side, cuts where the model started writing the other side's turn, trims a
    turn that hit the token limit to its last full sentence, and refuses an empty turn.
    """
    repairs = []
    text = raw.replace("\r\n", "\n").strip()
    text = _LABEL_RE[role].sub("", text, count=1).strip()
    other = _OTHER_LABEL_RE[role].search(text)
    if other:
        text = text[: other.start()].strip()
        repairs.append("spoke_for_other")
    if truncated:
        text = _trim_to_sentence(text)
        repairs.append("truncated")
    text = text.strip().strip('"“”').strip()
    if len(text) > max_chars:
        raise AgentOutputError("runaway_turn", raw)
    if len(text) < MIN_TURN_CHARS:
        raise AgentOutputError("spoke_for_other" if other else "empty_turn", raw)
    return ParsedTurn(text=text, repairs=tuple(repairs))


def client_messages(*, version: str, emotion: str, category: str, situation: str, turns: list[dict]) -> list[dict]:
    """The client agent's view: its own turns are the assistant's, the counselor's are the user's."""
    system = load_prompt("dialogue", version, "client").format(emotion=emotion, category=category, situation=situation)
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": load_prompt("dialogue", version, "client_opening")},
    ]
    for turn in turns:
        messages.append({"role": "assistant" if turn["role"] == "client" else "user", "content": turn["text"]})
    return messages


def counselor_messages(*, version: str, turns: list[dict]) -> list[dict]:
    """The counselor agent's view: the client's turns are the user's, its own the assistant's."""
    messages = [{"role": "system", "content": load_prompt("dialogue", version, "counselor")}]
    for turn in turns:
        messages.append({"role": "user" if turn["role"] == "client" else "assistant", "content": turn["text"]})
    return messages
