"""Psyche-R1 cross-selection: K models answer every question, with step-by-step reasoning; the answers are checked.

All questions of a chunk are answered by one model in one batched call, model after model. Every answer is kept,
parsed or not: an answer that cannot be parsed is recorded with its raw text and reason and counts as incorrect. A
question is ``hard`` when fewer than ``min_correct`` of the K models answer it correctly, ``easy`` otherwise.
"""

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from ..agents.psyroom import AgentOutputError
from ..agents.question import answer_is_correct, answer_messages, parse_answer
from ..backends.base import Backend, SamplingParams

PROMPT_VERSION = "v1"
# The prompt version a run uses, by its language.
PROMPT_VERSIONS = {"en": PROMPT_VERSION, "zh": "v1-zh"}
PIPELINE = "question"


@dataclass
class QuestionItem:
    """One question to answer: its run index and its content (question_type, question, options, answer)."""

    index: int
    content: dict
    answers: list[dict] = field(default_factory=list)

    @property
    def correct(self) -> int:
        return sum(1 for a in self.answers if a["correct"])


@dataclass
class QuestionBatch:
    items: list[QuestionItem]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    stats: Counter = field(default_factory=Counter)


def difficulty_of(*, answers: list[dict], min_correct: int) -> str:
    """``hard`` when fewer than ``min_correct`` answers are correct."""
    return "hard" if sum(1 for a in answers if a["correct"]) < min_correct else "easy"


def cross_select(
    models: list[tuple[str, Backend]],
    items: list[QuestionItem],
    *,
    min_correct: int,
    sampling: SamplingParams,
    version: str = PROMPT_VERSION,
) -> QuestionBatch:
    """Have every model answer every item (one call per model), check each answer and set the difficulty."""
    batch = QuestionBatch(items=items)
    if not items:
        return batch
    prompts = [
        answer_messages(
            version=version,
            question=item.content["question"],
            options=item.content["options"],
            question_type=item.content["question_type"],
        )
        for item in items
    ]
    for k, (name, backend) in enumerate(models):
        completions = backend.generate(prompts, replace(sampling, seed=sampling.seed * 31 + k))
        batch.calls += 1
        for item, completion in zip(items, completions, strict=True):
            batch.prompt_tokens += completion.prompt_tokens
            batch.completion_tokens += completion.completion_tokens
            content = item.content
            record: dict[str, Any] = {"model": name, "raw": completion.text}
            try:
                parsed = parse_answer(
                    completion.text, options=content["options"], question_type=content["question_type"]
                )
            except AgentOutputError as error:
                batch.stats[f"answer_{error.reason}"] += 1
                batch.stats["answers_unparsed"] += 1
                record.update(rationale="", answer=None, correct=False, error=error.reason)
            else:
                correct = answer_is_correct(
                    given=parsed.answer, reference=content["answer"], question_type=content["question_type"]
                )
                record.update(rationale=parsed.rationale, answer=parsed.answer, correct=correct)
                batch.stats["answers_correct" if correct else "answers_incorrect"] += 1
            if completion.truncated:
                batch.stats["answers_truncated"] += 1
            item.answers.append(record)
    for item in items:
        batch.stats[difficulty_of(answers=item.answers, min_correct=min_correct)] += 1
    return batch
