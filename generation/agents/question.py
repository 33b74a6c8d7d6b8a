"""The question answerer (Psyche-R1): step-by-step reasoning inside ``<think>...</think>``, then the answer.

Its output is untrusted. ``parse_answer`` reads it strictly and raises ``AgentOutputError`` with a short reason
(counted in the run's stats) when the reasoning is not closed, no answer letter follows it, a letter is not one of
the options, or a single-choice question gets more than one letter.
"""

import re
from dataclasses import dataclass

from .psyroom import AgentOutputError, load_prompt

PIPELINE = "question"
MAX_RATIONALE_CHARS = 20_000

_THINK_OPEN = re.compile(r"<think>", re.I)
_THINK_CLOSE = re.compile(r"</think>", re.I)
# "Answer: A", "**Answer:** A, C", "答案：ACD", or the letters alone on the first line after the reasoning.
_ANSWER_LINE = re.compile(
    r"^[*_\s]*(?:(?i:(?:final\s+)?answer)|答案|选项)?[*_\s]*[:：]?[*_\s]*"
    r"(?P<letters>[A-Z](?:\s*[,，、/&]?\s*[A-Z])*)[*_\s]*[.。]?[*_\s]*$"
)


@dataclass(frozen=True)
class ParsedAnswer:
    rationale: str
    # The chosen letters, sorted and without repeats: "B" or "ACD".
    answer: str


def answer_messages(*, version: str, question: str, options: dict[str, str], question_type: str) -> list[dict]:
    """The answerer's prompt for one choice question."""
    listed = "\n".join(f"{letter}. {text}" for letter, text in sorted(options.items()))
    user = load_prompt(PIPELINE, version, "user").format(
        instruction=load_prompt(PIPELINE, version, question_type), question=question, options=listed
    )
    return [{"role": "system", "content": load_prompt(PIPELINE, version, "system")}, {"role": "user", "content": user}]


def parse_answer(raw: str, *, options: dict[str, str], question_type: str) -> ParsedAnswer:
    """Read the reasoning and the answer letters; raise ``AgentOutputError`` for anything but a clean answer."""
    text = raw.replace("\r\n", "\n").strip()
    close = _THINK_CLOSE.search(text)
    if close is None:
        raise AgentOutputError("missing_think_close", raw)
    opened = _THINK_OPEN.search(text, 0, close.start())
    rationale = text[opened.end() if opened else 0 : close.start()].strip()
    if not rationale:
        raise AgentOutputError("empty_rationale", raw)
    if len(rationale) > MAX_RATIONALE_CHARS:
        raise AgentOutputError("runaway_rationale", raw)
    after = [line.strip() for line in text[close.end() :].split("\n") if line.strip()]
    match = _ANSWER_LINE.match(after[0]) if after else None
    if match is None:
        raise AgentOutputError("no_answer_letter", raw)
    letters = [c for c in match.group("letters") if c.isalpha()]
    outside = sorted(set(letters) - set(options))
    if outside:
        raise AgentOutputError("letter_outside_options", raw)
    chosen = "".join(sorted(set(letters)))
    if question_type == "single" and len(chosen) != 1:
        raise AgentOutputError("several_letters_for_single", raw)
    return ParsedAnswer(rationale=rationale, answer=chosen)


def answer_is_correct(*, given: str | None, reference: str, question_type: str) -> bool:
    """Exact for single choice; the same set of letters for multiple choice. No answer is never correct."""
    if not given:
        return False
    if question_type == "single":
        return given == reference
    return set(given) == set(reference)
