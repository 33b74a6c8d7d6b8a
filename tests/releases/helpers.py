"""What the release tests share beyond fixtures: reading a release's rows, and a question as cross-selection
leaves it."""

import json

from generation.models import CandidateKind
from generation.services.candidates import candidate_create
from releases import services
from tests import factories

OPTIONS = {"A": "Denial", "B": "Projection", "C": "Sublimation", "D": "Regression"}


def rows(release, name: str) -> list[dict]:
    path = services.release_dir(release) / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def all_rows(release, fmt: str) -> list[dict]:
    """Every row of a format, train then validation then test (a split without a file has none)."""
    found = []
    for split in ("train", "validation", "test"):
        if (services.release_dir(release) / fmt / f"{split}.jsonl").exists():
            found += rows(release, f"{fmt}/{split}.jsonl")
    return found


def make_question(*, answer: str, given: tuple[str, str], status: str | None = None, question: str):
    """A question two models answered (``given``), checked against ``answer``: hard when neither is right."""
    answers = [
        {
            "model": model,
            "raw": f"<think>Reasoning of {model}.</think>\nAnswer: {letter}",
            "rationale": f"Reasoning of {model}.",
            "answer": letter,
            "correct": letter == answer,
        }
        for model, letter in zip(("model-a", "model-b"), given, strict=True)
    ]
    correct = sum(a["correct"] for a in answers)
    content = {
        "format": "cpsyexam",
        "subject": "心理咨询",
        "question_type": "single",
        "question": question,
        "options": OPTIONS,
        "answer": answer,
        "explanation": "",
        "answers": answers,
        "difficulty": "hard" if correct < 1 else "easy",
        "selection": {"models": ["model-a", "model-b"], "min_correct": 1, "correct": correct},
    }
    candidate = candidate_create(
        kind=CandidateKind.QUESTION,
        content=content,
        language="zh",
        source={"dataset": "CPsyExam", "license": "CC0 1.0", "attribution": "CPsyExam, CC0"},
    )
    return factories.set_status(candidate, status)
