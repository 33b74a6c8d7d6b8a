"""Exports of approved data for training. Only approved candidates with no open risk flag ever leave."""

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.db.models import Prefetch

from generation import selectors as gen_selectors
from generation.models import CandidateKind, Revision
from generation.training import training_system_prompt

from ..models import Review
from ..services.audit import audit_record

ROLE_TO_CHAT = {"client": "user", "counselor": "assistant"}


@dataclass(frozen=True)
class ExportResult:
    path: Path
    count: int
    sha256: str


def sft_record(*, candidate, revision: Revision, reviewer_ids: list[int]) -> dict:
    """One training example: the system prompt in the dialogue's language, then its turns as user/assistant
    messages."""
    messages = [{"role": "system", "content": training_system_prompt(language=candidate.language)}]
    messages += [{"role": ROLE_TO_CHAT[t["role"]], "content": t["text"]} for t in revision.content["turns"]]
    # A training example ends on the counselor's words: a trailing client turn teaches nothing.
    while messages[-1]["role"] == "user":
        messages.pop()
    source = candidate.source or {}
    return {
        "messages": messages,
        "metadata": {
            "candidate_id": candidate.pk,
            "sub_emotion": candidate.sub_emotion.key if candidate.sub_emotion else None,
            "language": candidate.language,
            "revision": revision.number,
            "reviewers": reviewer_ids,
            "source": {k: source[k] for k in ("dataset", "license", "attribution") if k in source} or None,
        },
    }


def sft_export(*, out: Path, actor=None) -> ExportResult:
    """Write approved dialogues, the revision people approved, one JSON line each; the file appears whole or not at
    all. The reviewers listed are those who judged that revision."""
    candidates = gen_selectors.candidate_list_exportable(kind=CandidateKind.DIALOGUE).prefetch_related(
        # The reviewers who judged it, not those tested on it as a reference item.
        Prefetch("reviews", queryset=Review.objects.filter(gold=False).order_by("created_at")),
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    count = 0
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            for candidate in candidates.iterator(chunk_size=500):
                revision = candidate.approved_revision
                assert revision is not None  # candidate_list_exportable keeps only candidates with one
                reviewer_ids = sorted({r.reviewer_id for r in candidate.reviews.all() if r.revision_id == revision.pk})
                line = json.dumps(
                    sft_record(candidate=candidate, revision=revision, reviewer_ids=reviewer_ids), ensure_ascii=False
                )
                file.write(line + "\n")
                digest.update((line + "\n").encode("utf-8"))
                count += 1
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    result = ExportResult(path=out, count=count, sha256=digest.hexdigest())
    audit_record(actor=actor, action="export.sft", data={"path": str(out), "count": count, "sha256": result.sha256})
    return result
