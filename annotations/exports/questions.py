"""The split Psyche-R1 trains on: approved hard questions to GRPO (prompt and verified answer), approved easy ones
to SFT with their best rationale (``<think>`` reasoning, then the answer).

Only approved questions of a cross-selection run with no open risk flag leave; the best rationale is the one a
reviewer chose (and perhaps edited), else the correct one with the highest mean rating (``question.rate`` events,
each reviewer's latest), else the first correct one. An easy question with no correct rationale is left out.
"""

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from generation import selectors as gen_selectors
from generation.agents.question import answer_messages
from generation.models import CandidateKind
from generation.pipelines.question import PROMPT_VERSION

from ..models import AuditEvent
from ..services.audit import audit_record


@dataclass(frozen=True)
class QuestionExportResult:
    grpo: Path
    sft: Path
    grpo_count: int
    sft_count: int
    skipped: int


def _mean_ratings(candidate) -> dict[int, float]:
    """Mean rating per rationale index over each reviewer's latest ``question.rate``."""
    latest: dict = {}
    for event in AuditEvent.objects.filter(candidate=candidate, action="question.rate").order_by("created_at", "id"):
        latest[event.actor_id] = event.data.get("ratings", [])
    sums: dict[int, list[float]] = {}
    for ratings in latest.values():
        for rating in ratings:
            scores = [rating[k] for k in ("correct", "clinical", "clear") if isinstance(rating.get(k), int)]
            if scores:
                sums.setdefault(rating["index"], []).append(sum(scores) / len(scores))
    return {i: sum(v) / len(v) for i, v in sums.items()}


def best_rationale(candidate) -> dict | None:
    """The answer (model, rationale, answer) to train on, or None when no correct rationale exists."""
    answers = candidate.content.get("answers", [])
    chosen = candidate.content.get("chosen")
    if chosen is not None and answers[chosen].get("rationale"):
        return answers[chosen]
    correct = [(i, a) for i, a in enumerate(answers) if a.get("correct") and a.get("rationale")]
    if not correct:
        return None
    means = _mean_ratings(candidate)
    return max(correct, key=lambda pair: (means.get(pair[0], 0.0), -pair[0]))[1]


def _prompt(content: dict) -> list[dict]:
    return answer_messages(
        version=PROMPT_VERSION,
        question=content["question"],
        options=content["options"],
        question_type=content["question_type"],
    )


def _metadata(candidate) -> dict:
    source = candidate.source or {}
    return {
        "candidate_id": candidate.pk,
        "subject": candidate.content.get("subject"),
        "question_type": candidate.content["question_type"],
        "difficulty": candidate.content["difficulty"],
        "models": candidate.content.get("selection", {}).get("models"),
        "source": {k: source[k] for k in ("dataset", "license", "attribution", "id") if k in source} or None,
    }


def grpo_record(candidate) -> dict:
    return {
        "prompt": _prompt(candidate.content),
        "answer": candidate.content["answer"],
        "metadata": _metadata(candidate),
    }


def sft_record(candidate, best: dict) -> dict:
    reply = f"<think>\n{best['rationale']}\n</think>\nAnswer: {candidate.content['answer']}"
    return {
        "messages": [*_prompt(candidate.content), {"role": "assistant", "content": reply}],
        "metadata": {**_metadata(candidate), "rationale_model": best["model"], "edited": bool(best.get("edited"))},
    }


def _write(path: Path, lines: list[dict]) -> None:
    # Written to a temporary file and renamed: a file appears whole or not at all.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def questions_export(*, out_dir: Path, actor=None) -> QuestionExportResult:
    """Write ``grpo.jsonl`` (approved hard questions) and ``sft.jsonl`` (approved easy ones) under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    grpo, sft, skipped = [], [], 0
    for candidate in gen_selectors.candidate_list_exportable(kind=CandidateKind.QUESTION).order_by("id"):
        # What people approved, never a later edit.
        approved = candidate.approved_revision
        assert approved is not None  # candidate_list_exportable keeps only candidates with one
        candidate.content = content = approved.content
        if content.get("difficulty") == "hard" and content["question_type"] != "open":
            grpo.append(grpo_record(candidate))
        elif content.get("difficulty") == "easy":
            best = best_rationale(candidate)
            if best is None:
                skipped += 1
            else:
                sft.append(sft_record(candidate, best))
        else:
            skipped += 1
    paths = {"grpo": out_dir / "grpo.jsonl", "sft": out_dir / "sft.jsonl"}
    _write(paths["grpo"], grpo)
    _write(paths["sft"], sft)
    audit_record(
        actor=actor,
        action="questions.export",
        data={
            "grpo": len(grpo),
            "sft": len(sft),
            "skipped": skipped,
            "sha256": {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in paths.items()},
        },
    )
    return QuestionExportResult(paths["grpo"], paths["sft"], len(grpo), len(sft), skipped)
