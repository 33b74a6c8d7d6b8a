"""Psychology questions (Psyche-R1): the CPsyExam importer.

An import reads and checks every record before it writes anything, then saves all new questions in one
transaction: a malformed record anywhere stops the import with an error naming the file, the record and the field,
and nothing is kept. Each question remembers its source (dataset, CC0 licence, attribution, file, record, id) and the
sha256 of its content, so that importing the same data again adds nothing.
"""

import re
from pathlib import Path, PurePosixPath

from django.core.exceptions import ValidationError
from django.db import transaction

from ..models import Candidate, CandidateKind, Language
from ..schemas import ContentError
from ..services.candidates import candidate_build, content_hash
from .dialogues import ImportResult, candidates_save_unique
from .reading import IdLedger, ImportFormatError, Limits, import_record, read_json_list, sources

FORMATS = ("cpsyexam", "cpsyexam_qa")
SPLITS = ("train", "dev", "test")
SOURCE = {
    "dataset": "CPsyExam",
    "license": "CC0 1.0",
    "attribution": "CPsyExam (Zhao et al. 2024), dedicated to the public domain under CC0 1.0 Universal",
}
_SEPARATED_LETTERS = re.compile(r"^[A-Z](?:\s*[,，、]\s*[A-Z])+$")


def _split_of(name: str) -> str | None:
    return next((part for part in PurePosixPath(name).parts if part in SPLITS), None)


def _text_field(item: dict, key: str, where: str, *, required: bool = True) -> str:
    value = item.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ImportFormatError(f"{where}: {key}: must be non-empty text, not {value!r}"[:300])
    return value.strip()


def _choice_content(item: dict, where: str) -> dict:
    qtype = item.get("question_type")
    if qtype not in ("single", "multi"):
        raise ImportFormatError(f"{where}: question_type: must be single or multi, not {qtype!r}")
    options = item.get("options")
    if not isinstance(options, dict) or not options:
        raise ImportFormatError(f"{where}: options: missing (expected an object of letter: text)")
    clean = {}
    for letter, text in options.items():
        if not isinstance(text, str):
            raise ImportFormatError(f"{where}: options.{letter}: must be text, not {type(text).__name__}")
        if text.strip():
            # CPsyExam lists five letters for every question; an empty one is not an option.
            clean[letter.strip()] = text.strip()
    if len(clean) < 2:
        raise ImportFormatError(f"{where}: options: fewer than two non-empty options")
    answer = item.get("answer")
    if answer is None:
        raise ImportFormatError(f"{where}: answer: missing (the CPsyExam test split carries no answers)")
    if not isinstance(answer, str) or not answer.strip():
        raise ImportFormatError(f"{where}: answer: must be the answer letter(s), not {answer!r}")
    answer = answer.strip()
    if _SEPARATED_LETTERS.match(answer):
        # Some CPsyExam files write multiple answers as "A,B,C".
        answer = re.sub(r"[\s,，、]", "", answer)
    outside = sorted(set(answer) - set(clean))
    if outside:
        raise ImportFormatError(
            f"{where}: answer: {answer!r} names {', '.join(outside)}, not among the options {''.join(sorted(clean))}"
        )
    if qtype == "single" and len(answer) != 1:
        raise ImportFormatError(f"{where}: answer: a single-choice question has one letter, not {answer!r}")
    return {
        "format": "cpsyexam",
        "subject": _text_field(item, "subject_name", where),
        "question_type": qtype,
        "question_kind": _text_field(item, "kind", where, required=False),
        "question": _text_field(item, "question", where),
        "options": clean,
        "answer": "".join(sorted(set(answer))),
        "explanation": _text_field(item, "explanation", where, required=False),
    }


def _open_content(item: dict, where: str) -> dict:
    qtype = item.get("question_type")
    if not isinstance(qtype, str) or not qtype.strip():
        raise ImportFormatError(f"{where}: question_type: must be text such as 'QA_Analyse', not {qtype!r}")
    return {
        "format": "cpsyexam_qa",
        "subject": _text_field(item, "subject_name", where),
        "question_type": "open",
        "question_kind": qtype.strip(),
        "question": _text_field(item, "question", where),
        "options": {},
        "answer": _text_field(item, "answer", where),
        "explanation": "",
    }


def questions_import(
    *, path: Path, format: str = "cpsyexam", split: str | None = None, limit: int | None = None
) -> ImportResult:
    """Import CPsyExam questions from ``path`` (the zip archive, a folder or a JSON file) as question candidates.

    ``format`` is ``cpsyexam`` (single and multiple choice, with answer letters and explanations) or
    ``cpsyexam_qa`` (open case questions with a reference answer); ``split`` keeps only files under a train/, dev/
    or test/ folder; ``limit`` stops after that many records. Files and archives are read with the safe reading of
    ``reading.py``. Raises ``ImportFormatError`` naming the file, the record and the field of the first
    malformed record (or an empty file, a limit passed, one ``id`` on two different questions), and
    ``ValidationError`` for a bad argument; either way nothing is written. Questions imported before, or repeated
    within the import (the same content, with or without the same id), count as duplicates.
    """
    if format not in FORMATS:
        raise ValidationError(f"format: must be one of {', '.join(FORMATS)}, not {format!r}")
    if split is not None and split not in SPLITS:
        raise ValidationError(f"split: must be one of {', '.join(SPLITS)}, not {split!r}")
    if limit is not None and limit < 1:
        raise ValidationError(f"limit: must be at least 1, not {limit}")
    path = Path(path)
    if not path.exists():
        raise ValidationError(f"path: {path} does not exist")
    build = _choice_content if format == "cpsyexam" else _open_content

    built: list[tuple[str, Candidate]] = []
    ids = IdLedger()
    files = 0
    for source in sources(path, suffix=".json", limits=Limits.from_settings()):
        if limit is not None and len(built) >= limit:
            break  # the rest of the files (or archive) is not read
        # A single file's split is in the path given; a folder's or an archive's, in the path within it.
        file_split = _split_of(path.as_posix() if path.is_file() and not source.archive else source.file)
        if split is not None and file_split != split:
            continue
        files += 1
        for index, item in enumerate(read_json_list(source)):
            if limit is not None and len(built) >= limit:
                break
            where = f"{source.name}: record {index}"
            if not isinstance(item, dict):
                raise ImportFormatError(f"{where}: expected an object, not {type(item).__name__}")
            content = build(item, where)
            source_hash = content_hash(content)
            provenance = {**SOURCE, **source.provenance, "record": index, "split": file_split}
            if isinstance(item.get("id"), str):
                provenance["id"] = item["id"]
                ids.add(item["id"], content_hash=source_hash, name=source.name, record=index)
            try:
                candidate = candidate_build(
                    kind=CandidateKind.QUESTION,
                    content=content,
                    language=Language.CHINESE,
                    source=provenance,
                    source_hash=source_hash,
                )
            except ContentError as error:
                raise ImportFormatError(f"{where}: {error}") from error
            built.append((source_hash, candidate))
    if not files:
        raise ImportFormatError(f"{path}: no JSON files" + (f" under a {split}/ folder" if split else ""))
    ids.check(lambda name, record: f"{name}: record {record}")

    with transaction.atomic():
        created = candidates_save_unique(kind=CandidateKind.QUESTION, built=built)
        import_record(
            kind="questions", path=path, format="cpsyexam", created=created, duplicates=len(built) - created,
            files=files,
        )  # fmt: skip
    return ImportResult(created=created, duplicates=len(built) - created, files=files)
