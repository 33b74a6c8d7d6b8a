"""Importers for counseling dialogues from public datasets and chat-style JSONL.

An import reads and checks every file before it writes anything, then saves all new dialogues in one transaction:
a bad line anywhere means nothing from that import is kept. Each imported candidate remembers where it came from
(dataset, licence, attribution, file, record) and the sha256 of its content, so that importing the same data again
adds nothing.
"""

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction

from . import services
from .models import Candidate, CandidateKind, Language, SubEmotion
from .schemas import ContentError

FORMATS = ("psyroom", "cpsycoun", "messages")

_DATASETS = {
    "psyroom": {
        "dataset": "AI PsyRoom example",
        "license": "MIT",
        "attribution": "AI PsyRoom example dialogues, (c) 2025 Feng Yigui, MIT License",
    },
    "cpsycoun": {
        "dataset": "CPsyCounD",
        "license": "CC BY 4.0",
        "attribution": "CPsyCounD from CPsyCoun (Zhang et al. 2024), CC BY 4.0",
    },
    "messages": {"dataset": "messages", "license": "", "attribution": ""},
}
_PATTERNS = {"psyroom": "*.json", "cpsycoun": "*.txt", "messages": "*.jsonl"}

# A speaker label may carry a qualifier: "来访者（姚先生）：" in couple sessions, "来访者1：", or
# "心理咨询师（扮演外婆）：" in role-play. The role is the same; the qualifier is kept in the text.
_CPSYCOUN_TURN = re.compile(r"^(来访者|心理咨询师)((?:[（(][^）)]*[）)])|\d+)?\s*[：:]\s*(.*)$")
_CPSYCOUN_ROLES = {"来访者": "client", "心理咨询师": "counselor"}
_MESSAGE_ROLES = {"user": "client", "assistant": "counselor", "system": None}
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Older SQLite builds allow 999 parameters in one statement.
_HASH_QUERY_CHUNK = 900


class ImportFormatError(ValueError):
    """A file that can't be imported; the message names the file, the line or record, and what is wrong."""


@dataclass(frozen=True)
class ImportResult:
    created: int
    duplicates: int
    files: int


@dataclass
class _Record:
    """One dialogue read from a file, before it is validated and saved."""

    file: str
    # The record index in a JSON list, or the line a dialogue starts on in a text or JSONL file.
    record: int
    turns: list[dict]
    language: str
    sub_emotion_key: str | None = None
    extra_source: dict = field(default_factory=dict)

    def where(self, format: str) -> str:
        return f"{self.file}: record {self.record}" if format == "psyroom" else f"{self.file}:{self.record}"


def dialogues_import(*, path: Path, format: str, sub_emotion_key: str | None = None) -> ImportResult:
    """Import every dialogue under ``path`` (a file, or a folder searched recursively) in one of ``FORMATS``.

    ``sub_emotion_key`` labels every dialogue; a ``messages`` line may name its own ``sub_emotion`` instead.
    Raises ``ImportFormatError`` naming the file and line (or record) of the first problem, and
    ``ValidationError`` for a bad argument (unknown format, missing path, unknown sub-emotion key). Either way
    nothing is written. Dialogues whose content was imported before, or that repeat within the import, are
    counted as duplicates and skipped.
    """
    if format not in FORMATS:
        raise ValidationError(f"format: must be one of {', '.join(FORMATS)}, not {format!r}")
    path = Path(path)
    if not path.exists():
        raise ValidationError(f"path: {path} does not exist")
    sub_emotions = {s.key: s for s in SubEmotion.objects.all()}
    if sub_emotion_key is not None and sub_emotion_key not in sub_emotions:
        raise ValidationError(f"sub_emotion: no sub-emotion with key {sub_emotion_key!r} (load the taxonomy first?)")

    parse = _PARSERS[format]
    files = list(_files(path, _PATTERNS[format]))
    records: list[_Record] = []
    for file in files:
        name = file.name if file == path else file.relative_to(path).as_posix()
        records.extend(parse(file, name))

    # Validate everything before the transaction opens: building a candidate is pure computation.
    built: list[tuple[str, Candidate]] = []
    for rec in records:
        key = rec.sub_emotion_key or sub_emotion_key
        if key is not None and key not in sub_emotions:
            raise ImportFormatError(f"{rec.where(format)}: sub_emotion: no sub-emotion with key {key!r}")
        content = {"turns": rec.turns}
        source_hash = services.content_hash(content)
        try:
            candidate = services.candidate_build(
                kind=CandidateKind.DIALOGUE,
                content=content,
                language=rec.language,
                sub_emotion=sub_emotions[key] if key else None,
                source={**_DATASETS[format], "file": rec.file, "record": rec.record, **rec.extra_source},
                source_hash=source_hash,
            )
        except ContentError as error:
            raise ImportFormatError(f"{rec.where(format)}: {error}") from error
        built.append((source_hash, candidate))

    created = candidates_save_unique(kind=CandidateKind.DIALOGUE, built=built)
    return ImportResult(created=created, duplicates=len(built) - created, files=len(files))


def candidates_save_unique(*, kind: str, built: list[tuple[str, Candidate]]) -> int:
    """Save the built ``(source_hash, candidate)`` pairs whose hash is new for ``kind`` (in the database and among
    themselves), all in one transaction; returns how many were saved."""
    with transaction.atomic():
        hashes = list(dict.fromkeys(h for h, _ in built))
        seen: set[str] = set()
        for start in range(0, len(hashes), _HASH_QUERY_CHUNK):
            seen.update(
                Candidate.objects.filter(
                    kind=kind, source_hash__in=hashes[start : start + _HASH_QUERY_CHUNK]
                ).values_list("source_hash", flat=True)
            )
        new = []
        for source_hash, candidate in built:
            if source_hash not in seen:
                seen.add(source_hash)
                new.append(candidate)
        # A concurrent import of the same data can still collide on the unique (kind, source_hash) constraint; the
        # IntegrityError then rolls this import back whole, which is the rule anyway.
        services.candidates_save_new(candidates=new)
    return len(new)


# --- Files ---------------------------------------------------------------------------------------------------------


def _natural_key(path: Path) -> list:
    # case_2 before case_10: digit runs compare as numbers.
    return [[int(p) if p.isdigit() else p for p in re.split(r"(\d+)", part)] for part in path.parts]


def _files(path: Path, pattern: str) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    found = sorted((p for p in path.rglob(pattern) if p.is_file()), key=lambda p: _natural_key(p.relative_to(path)))
    if not found:
        raise ImportFormatError(f"{path}: no {pattern} files in this folder")
    yield from found


def _read_text(file: Path, name: str) -> str:
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ImportFormatError(f"{name}:{line}: not UTF-8 text ({error.reason})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _is_text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _language_of(turns: list[dict]) -> str:
    return Language.CHINESE if any(_CJK.search(t["text"]) for t in turns) else Language.ENGLISH


# --- AI PsyRoom example.json ---------------------------------------------------------------------------------------


def _parse_psyroom(file: Path, name: str) -> list[_Record]:
    try:
        data = json.loads(_read_text(file, name))
    except json.JSONDecodeError as error:
        raise ImportFormatError(f"{name}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}") from None
    if not isinstance(data, list):
        raise ImportFormatError(f"{name}: expected a JSON list of records, not {type(data).__name__}")
    records = []
    for index, item in enumerate(data):
        where = f"{name}: record {index}"
        if not isinstance(item, dict) or "conversation" not in item:
            raise ImportFormatError(f"{where}: expected an object with a 'conversation' list")
        conversation = item["conversation"]
        if not isinstance(conversation, list) or not conversation:
            raise ImportFormatError(f"{where}: conversation must be a non-empty list")
        turns = []
        for j, pair in enumerate(conversation):
            if not isinstance(pair, dict) or "input" not in pair or "output" not in pair:
                raise ImportFormatError(f"{where}: conversation[{j}] must be an object with 'input' and 'output'")
            client, counselor = pair["input"], pair["output"]
            if not isinstance(client, str):
                raise ImportFormatError(f"{where}: conversation[{j}].input must be text")
            if not _is_text(counselor):
                raise ImportFormatError(f"{where}: conversation[{j}].output must be non-empty text")
            # The dataset has pairs with an empty input where the counselor goes on speaking: no client turn there.
            if client.strip():
                turns.append({"role": "client", "text": client.strip()})
            turns.append({"role": "counselor", "text": counselor.strip()})
        records.append(_Record(file=name, record=index, turns=turns, language=Language.CHINESE))
    return records


# --- CPsyCoun case_N.txt -------------------------------------------------------------------------------------------


def _parse_cpsycoun(file: Path, name: str) -> list[_Record]:
    turns: list[dict] = []
    lines_of: list[int] = []
    after_blank = False
    for lineno, line in enumerate(_read_text(file, name).split("\n"), start=1):
        text = line.strip()
        if not text:
            after_blank = True
            continue
        match = _CPSYCOUN_TURN.match(text)
        if match:
            label, qualifier, rest = match.groups()
            if qualifier and rest:
                rest = f"{label}{qualifier}：{rest}"
            turns.append({"role": _CPSYCOUN_ROLES[label], "text": rest})
            lines_of.append(lineno)
        elif not turns:
            raise ImportFormatError(f"{name}:{lineno}: expected a line starting with 来访者： or 心理咨询师：")
        else:
            # Lists, stage directions ("（妈妈进入咨询室）") and other speakers belong to the turn before them;
            # a blank line before them is kept as a paragraph break.
            previous = turns[-1]
            separator = ("\n\n" if after_blank else "\n") if previous["text"] else ""
            previous["text"] += separator + text
        after_blank = False
    if not turns:
        raise ImportFormatError(f"{name}:1: no dialogue turns in this file")
    # Some files end with a bare speaker label (the generator stopped there): that turn has nothing to keep.
    if not turns[-1]["text"]:
        turns.pop()
        lines_of.pop()
    for turn, lineno in zip(turns, lines_of, strict=True):
        if not turn["text"]:
            raise ImportFormatError(f"{name}:{lineno}: this turn has no text")
    return [_Record(file=name, record=lines_of[0] if lines_of else 1, turns=turns, language=Language.CHINESE)]


# --- OpenAI-style messages JSONL -----------------------------------------------------------------------------------


def _parse_messages(file: Path, name: str) -> list[_Record]:
    records = []
    for lineno, line in enumerate(_read_text(file, name).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{name}:{lineno}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise ImportFormatError(f"{where}: invalid JSON at column {error.colno}: {error.msg}") from None
        if not isinstance(item, dict):
            raise ImportFormatError(f"{where}: expected a JSON object with a 'messages' list")
        messages = item.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ImportFormatError(f"{where}: messages must be a non-empty list")
        turns, system = [], []
        for j, message in enumerate(messages):
            if not isinstance(message, dict):
                raise ImportFormatError(f"{where}: messages[{j}] must be an object with 'role' and 'content'")
            role = message.get("role")
            if role not in _MESSAGE_ROLES:
                raise ImportFormatError(f"{where}: messages[{j}].role must be system, user or assistant, not {role!r}")
            if not _is_text(message.get("content")):
                raise ImportFormatError(f"{where}: messages[{j}].content must be non-empty text")
            text = message["content"].strip()
            if role == "system":
                system.append(text)
            else:
                turns.append({"role": _MESSAGE_ROLES[role], "text": text})
        sub_emotion_key = item.get("sub_emotion")
        if sub_emotion_key is not None and not isinstance(sub_emotion_key, str):
            raise ImportFormatError(f"{where}: sub_emotion must be a taxonomy key like 'anxiety.1'")
        language = item.get("language")
        if language is None:
            language = _language_of(turns)
        elif language not in Language.values:
            raise ImportFormatError(f"{where}: language must be one of {', '.join(Language.values)}, not {language!r}")
        records.append(
            _Record(
                file=name,
                record=lineno,
                turns=turns,
                language=language,
                sub_emotion_key=sub_emotion_key,
                extra_source={"system": system} if system else {},
            )
        )
    return records


_PARSERS: dict[str, Callable[[Path, str], list[_Record]]] = {
    "psyroom": _parse_psyroom,
    "cpsycoun": _parse_cpsycoun,
    "messages": _parse_messages,
}
