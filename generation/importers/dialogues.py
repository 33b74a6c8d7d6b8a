"""Importers for counseling dialogues from public datasets and chat-style JSONL.

An import reads its input once, as a stream (``reading.py``: files, folders and archives, within the operator's
limits), and saves the dialogues in batches as it checks them, all in one transaction: a bad line anywhere, or one
id on two different dialogues, rolls back every batch saved before it, so nothing from that import is kept, and
memory stays flat however many dialogues there are. A thread reads and checks the next batches while the last one
is saved; a large input is screened for risk in a process of its own. Each imported candidate remembers where it
came from (dataset, licence, attribution, file, archive, record, id) and the sha256 of its content, so that
importing the same data again adds nothing.

A record's id, which must name one dialogue within an import: a ``messages`` line's or a ``psyroom`` record's
``id`` field (text or a whole number; optional), and a ``cpsycoun`` case file's name (``case_12.txt``, wherever it
lies in the folder or archive). The same id on different content is refused, naming both records; on the same
content it is a repeat, skipped like any duplicate.
"""

import multiprocessing
import queue
import re
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack, closing, suppress
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from multiprocessing.pool import Pool
from pathlib import Path, PurePosixPath
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, reset_queries, transaction

from ..models import Candidate, CandidateKind, Language, SubEmotion
from ..schemas import ContentError, validate_content
from ..selectors import source_hashes_existing
from ..services.candidates import (
    NewRow,
    candidates_save_new,
    candidates_save_rows,
    content_json,
    text_hash,
)
from .reading import (
    IdLedger,
    ImportFormatError,
    Limits,
    Source,
    import_record,
    parse_json,
    read_json_list,
    read_lines,
    read_text,
    sources,
)

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
_SUFFIXES = {"psyroom": ".json", "cpsycoun": ".txt", "messages": ".jsonl"}

# A speaker label may carry a qualifier: "来访者（姚先生）：" in couple sessions, "来访者1：", or
# "心理咨询师（扮演外婆）：" in role-play. The role is the same; the qualifier is kept in the text.
_CPSYCOUN_TURN = re.compile(r"^(来访者|心理咨询师)((?:[（(][^）)]*[）)])|\d+)?\s*[：:]\s*(.*)$")
_CPSYCOUN_ROLES = {"来访者": "client", "心理咨询师": "counselor"}
_MESSAGE_ROLES = {"user": "client", "assistant": "counselor", "system": None}
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Dialogues saved per batch: big enough for few round trips, small enough for flat memory.
BATCH_SIZE = 5000


@dataclass(frozen=True)
class ImportResult:
    created: int
    duplicates: int
    files: int


@dataclass
class _Record:
    """One dialogue read from a file, before it is validated and saved."""

    # The file as messages name it, and its provenance (file, archive).
    name: str
    provenance: dict
    # The record index in a JSON list, or the line a dialogue starts on in a text or JSONL file.
    record: int
    turns: list[dict]
    language: str
    sub_emotion_key: str | None = None
    # The id given in the record (text or a whole number), kept in the source.
    id: str | int | None = None
    extra_source: dict = field(default_factory=dict)


def _where(format: str, name: str, record: int) -> str:
    return f"{name}: record {record}" if format == "psyroom" else f"{name}:{record}"


def _id_of(format: str, rec: _Record) -> str | None:
    """The record's id within the import (see the module docstring), as text."""
    if format == "cpsycoun":
        return PurePosixPath(rec.provenance["file"]).name
    return None if rec.id is None else str(rec.id)


def dialogues_import(*, path: Path, format: str, sub_emotion_key: str | None = None) -> ImportResult:
    """Import every dialogue under ``path`` (a file, a folder searched recursively, or a .zip/.tar.gz archive) in one
    of ``FORMATS``.

    ``sub_emotion_key`` labels every dialogue; a ``messages`` line may name its own ``sub_emotion`` instead.
    Raises ``ImportFormatError`` naming the file and line (or record) of the first problem (a malformed or empty
    file, a limit passed, one id on two different dialogues), and ``ValidationError`` for a bad argument (unknown
    format, missing path, unknown sub-emotion key). Either way nothing is written. Dialogues whose content was
    imported before, or that repeat within the import, are counted as duplicates and skipped.
    """
    if format not in FORMATS:
        raise ValidationError(f"format: must be one of {', '.join(FORMATS)}, not {format!r}")
    path = Path(path)
    if not path.exists():
        raise ValidationError(f"path: {path} does not exist")
    sub_emotions = {s.key: s for s in SubEmotion.objects.all()}
    if sub_emotion_key is not None and sub_emotion_key not in sub_emotions:
        raise ValidationError(f"sub_emotion: no sub-emotion with key {sub_emotion_key!r} (load the taxonomy first?)")
    limits = Limits.from_settings()

    def records() -> Iterator[_Record]:
        parse = _PARSERS[format]
        for source in sources(path, suffix=_SUFFIXES[format], limits=limits):
            yield from parse(source)

    def sub_emotion_of(rec: _Record) -> SubEmotion | None:
        key = rec.sub_emotion_key or sub_emotion_key
        if key is not None and key not in sub_emotions:
            raise ImportFormatError(
                f"{_where(format, rec.name, rec.record)}: sub_emotion: no sub-emotion with key {key!r}"
            )
        return sub_emotions[key] if key else None

    def row(rec: _Record) -> NewRow:
        """The record as a row to save, checked, or ``ImportFormatError``."""
        sub_emotion = sub_emotion_of(rec)
        content = {"turns": rec.turns}
        try:
            validate_content(CandidateKind.DIALOGUE, content)
        except ContentError as error:
            raise ImportFormatError(f"{_where(format, rec.name, rec.record)}: {error}") from error
        source = {**_DATASETS[format], **rec.provenance, "record": rec.record}
        if rec.id is not None:
            source["id"] = rec.id
        text = content_json(content)
        return NewRow(
            content=content,
            text=text,
            source_hash=text_hash(text),
            language=rec.language,
            sub_emotion_id=sub_emotion.pk if sub_emotion else None,
            source={**source, **rec.extra_source},
        )

    # One pass, in one transaction: each batch is checked, then its new dialogues saved. A bad record, or (once
    # everything is read) one id on two different dialogues, raises and rolls back every batch saved before it.
    ids = IdLedger()
    files = 0

    def checked_batches() -> Iterator[list[NewRow]]:
        """The records as rows, a batch at a time; the ids go in the ledger. Touches no database."""
        nonlocal files
        # Every file holds at least one record (an empty one is refused), so the files are the runs of one name.
        name = None
        for batch in _batches(records(), BATCH_SIZE):
            rows = []
            for rec in batch:
                new = row(rec)
                rows.append(new)
                files, name = files + (rec.name != name), rec.name
                record_id = _id_of(format, rec)
                if record_id is not None:
                    ids.add(record_id, content_hash=new.source_hash, name=rec.name, record=rec.record)
            yield rows

    created = total = 0
    # The table's statistics are refreshed at the start and as the rows read grow tenfold (see _refresh_statistics).
    next_analyze = 0
    # The next batches are read and checked in a thread while this one saves the last: the database's work and the
    # reading overlap (the thread runs while this one waits on the database).
    # A large input's new dialogues are screened for risk in a process of its own, a batch at a time, while the thread
    # reads on: the screen is a third of the work, and there are two cores. It is forked before the thread starts.
    screener = _screener(path)
    with (
        ExitStack() as stack,
        transaction.atomic(),
        closing(_read_ahead(checked_batches(), depth=2)) as batches,
    ):
        if screener is not None:
            stack.callback(screener.join)
            stack.callback(screener.terminate)
        for rows in batches:
            if total >= next_analyze:
                _refresh_statistics()
                next_analyze = max(BATCH_SIZE, total * 10)
            created += candidates_save_rows(
                kind=CandidateKind.DIALOGUE,
                rows=rows,
                run_screen=None if screener is None else partial(_screen_in, screener),
            )
            total += len(rows)
            # With DEBUG on, Django keeps every query's SQL: thousands of batches of it would not be flat memory.
            reset_queries()
        ids.check(lambda name, record: _where(format, name, record))
        import_record(
            kind="dialogues", path=path, format=format, created=created, duplicates=total - created, files=files
        )
    return ImportResult(created=created, duplicates=total - created, files=files)


# From this many bytes of input, the screen runs in a process of its own (a fork costs some 0.1 s).
SCREEN_PROCESS_BYTES = 4 << 20
SCREEN_TIMEOUT_S = 300


def _screener(path: Path) -> Pool | None:
    """A one-process pool for the risk screen where the input is large enough to be worth it, else None."""
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    if sum(f.stat().st_size for f in files) < SCREEN_PROCESS_BYTES:
        return None
    return multiprocessing.get_context("fork").Pool(1)


def _screen_in(screener: Pool, screen: Callable, args: list) -> Any:
    # A screen that has not answered in minutes is a lost process (killed for memory?), not a slow one.
    return screener.apply_async(screen, args).get(timeout=SCREEN_TIMEOUT_S)


_DONE = object()


def _read_ahead(items: Iterator[Any], *, depth: int) -> Generator[Any, None, None]:
    """``items``, made by a thread of their own at most ``depth`` ahead of the caller (so memory stays bounded); an
    exception there is raised here, where the next item was expected. Closing this generator stops the thread."""
    ahead: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                ahead.put((item, None))
            ahead.put((_DONE, None))
        except BaseException as error:  # handed to the caller, who raises it
            ahead.put((_DONE, error))

    thread = threading.Thread(target=produce, name="import-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ahead.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            with suppress(queue.Empty):
                ahead.get(timeout=0.05)
        thread.join()


def _refresh_statistics() -> None:
    """Let PostgreSQL plan the lookup of a batch's hashes on what the candidate table holds now.

    Planned without statistics (a new table, autovacuum off, or rows this very transaction wrote, which autovacuum
    can't see), the lookup reads every candidate of the kind, each batch more than the last: 1.4 s a batch at a
    million rows against 20 ms through the unique index. ANALYZE inside the transaction counts its own rows; on
    two columns it takes well under a second, and the import runs it as the table grows tenfold.
    """
    if connection.vendor != "postgresql":
        return
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {quote(Candidate._meta.db_table)} ({quote('kind')}, {quote('source_hash')})")


def candidates_save_unique(
    *, kind: str, built: list[tuple[str, Any]], build: Callable[[str, Any], Candidate] | None = None
) -> int:
    """Save the ``(source_hash, candidate)`` pairs whose hash is new for ``kind`` (in the database and among
    themselves), all in one transaction; returns how many were saved. With ``build``, the pairs hold what
    ``build(source_hash, item)`` makes a candidate of, and only the new ones are built: a re-import screens
    nothing. Called a batch at a time within an outer transaction, the batches saved before count as in the
    database."""
    with transaction.atomic():
        seen: set[str] = source_hashes_existing(kind=kind, hashes=list(dict.fromkeys(h for h, _ in built)))
        new = []
        for source_hash, item in built:
            if source_hash not in seen:
                seen.add(source_hash)
                new.append(build(source_hash, item) if build else item)
        # A concurrent import of the same data can still collide on the unique (kind, source_hash) constraint; the
        # IntegrityError then rolls this import back whole, which is the rule anyway.
        candidates_save_new(candidates=new)
    return len(new)


def _batches(items: Iterator, size: int) -> Iterator[list]:
    while batch := list(islice(items, size)):
        yield batch


def _is_text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _language_of(turns: list[dict]) -> str:
    return Language.CHINESE if any(_CJK.search(t["text"]) for t in turns) else Language.ENGLISH


def _record_id(item: dict, where: str) -> str | int | None:
    value = item.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not (isinstance(value, int) or _is_text(value)):
        raise ImportFormatError(f"{where}: id must be non-empty text or a whole number, not {value!r}"[:300])
    return value


# --- AI PsyRoom example.json ---------------------------------------------------------------------------------------


def _parse_psyroom(source: Source) -> Iterator[_Record]:
    for index, item in enumerate(read_json_list(source)):
        where = f"{source.name}: record {index}"
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
        yield _Record(
            name=source.name,
            provenance=source.provenance,
            record=index,
            turns=turns,
            language=Language.CHINESE,
            id=_record_id(item, where),
        )


# --- CPsyCoun case_N.txt -------------------------------------------------------------------------------------------


def _parse_cpsycoun(source: Source) -> Iterator[_Record]:
    name = source.name
    turns: list[dict] = []
    lines_of: list[int] = []
    after_blank = False
    for lineno, line in enumerate(read_text(source).split("\n"), start=1):
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
    yield _Record(
        name=name,
        provenance=source.provenance,
        record=lines_of[0] if lines_of else 1,
        turns=turns,
        language=Language.CHINESE,
    )


# --- OpenAI-style messages JSONL -----------------------------------------------------------------------------------


def _parse_messages(source: Source) -> Iterator[_Record]:
    empty = True
    for lineno, line in read_lines(source):
        if not line.strip():
            continue
        empty = False
        where = f"{source.name}:{lineno}"
        item = parse_json(line, source.name, limits=source.limits, line=lineno)
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
        yield _Record(
            name=source.name,
            provenance=source.provenance,
            record=lineno,
            turns=turns,
            language=language,
            sub_emotion_key=sub_emotion_key,
            id=_record_id(item, where),
            extra_source={"system": system} if system else {},
        )
    if empty:
        raise ImportFormatError(f"{source.name}: an empty file: no dialogues in it")


_PARSERS: dict[str, Callable[[Source], Iterator[_Record]]] = {
    "psyroom": _parse_psyroom,
    "cpsycoun": _parse_cpsycoun,
    "messages": _parse_messages,
}
