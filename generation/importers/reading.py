"""Safe reading for every importer (dialogues, CPsyExam questions, MusPsy courses).

Import files come from outside and are untrusted, like model output. Everything an importer reads goes through
these helpers, which hold the limits an operator sets (``PSYROOM_IMPORT_*``, docs/operations.md#imports):

- ``sources``: a file, a folder (searched recursively) or an archive (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``,
  ``.tar.bz2``, ``.tar.xz``). An archive is read as a stream, member by member: never unpacked to disk, never whole
  in memory. What it unpacks to is counted as it is read, so a small archive that unpacks to gigabytes stops at the
  limit. No member path is trusted: an absolute path, a ``..``, a link, a device or a name with control characters
  or undecodable bytes is refused; directories and macOS metadata (``__MACOSX/``, ``._*``) are skipped.
- ``read_lines`` and ``read_text``: UTF-8 text (a BOM at the start is dropped; ``\\n``, ``\\r\\n`` and ``\\r`` end a
  line), no line or whole-read file larger than the record limit, and no NUL (PostgreSQL can't store it).
- ``parse_json``: no deeper than the depth limit (checked before the parser recurses), and no ``\\u0000`` or
  lone-surrogate escape (which would decode to text no database or encoder accepts).
- ``IdLedger``: the ids of one import's records, in flat memory: one id on two different records is refused.

Every problem is an ``ImportFormatError`` naming the file (``archive.zip/member`` inside an archive) and, where
there is one, the line; the management commands turn it into a ``CommandError`` and nothing is imported.
"""

import bz2
import gzip
import hashlib
import json
import lzma
import re
import stat
import tarfile
import zipfile
import zlib
from array import array
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

from django.conf import settings
from django.dispatch import Signal

# Sent when an import has written, inside its transaction: ``kind`` (dialogues, questions, course), ``path`` (the
# file or folder's name), ``format``, ``created``, ``duplicates``, ``files``. annotations writes it into the audit
# trail; an import refused or rolled back sends nothing.
imported = Signal()


def import_record(*, kind: str, path: Path, format: str, created: int, duplicates: int, files: int) -> None:
    """Tell the audit trail (``imported``) what an import wrote; call it inside the import's transaction."""
    imported.send(
        sender=ImportFormatError,
        kind=kind,
        path=Path(path).name,
        format=format,
        created=created,
        duplicates=duplicates,
        files=files,
    )


class ImportFormatError(ValueError):
    """A file that can't be imported; the message names the file, the line or record, and what is wrong."""


@dataclass(frozen=True)
class Limits:
    """What one import may read; ``Limits.from_settings()`` takes the operator's (docs/operations.md#imports)."""

    # The most bytes read into memory at once: one line of a JSONL file, or a whole file of a format that is read
    # whole (a JSON list, a CPsyCoun case file, a MusPsy file).
    record_bytes: int
    # The most bytes one file or archive member may hold (unpacked).
    file_bytes: int
    # The most bytes one import may read in all (unpacked), and the most files or archive members it may open.
    total_bytes: int
    files: int
    # The deepest nesting of JSON arrays and objects.
    depth: int

    @classmethod
    def from_settings(cls) -> "Limits":
        return cls(
            record_bytes=settings.PSYROOM_IMPORT_MAX_RECORD_BYTES,
            file_bytes=settings.PSYROOM_IMPORT_MAX_FILE_BYTES,
            total_bytes=settings.PSYROOM_IMPORT_MAX_TOTAL_BYTES,
            files=settings.PSYROOM_IMPORT_MAX_FILES,
            depth=settings.PSYROOM_IMPORT_MAX_DEPTH,
        )


class _StreamError(ImportFormatError):
    """A limit reached or damaged data met while reading; the reader that caught it adds the file and line."""


class _Budget:
    """What one pass over an import's input has read so far, against its limits."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.bytes = 0
        self.files = 0

    def add_bytes(self, count: int) -> None:
        self.bytes += count
        if self.bytes > self.limits.total_bytes:
            raise _StreamError(
                f"this import goes on past {self.limits.total_bytes:,} bytes (unpacked), its limit "
                "(PSYROOM_IMPORT_MAX_TOTAL_BYTES)"
            )

    def add_file(self, where: str) -> None:
        self.files += 1
        if self.files > self.limits.files:
            raise ImportFormatError(
                f"{where}: more than {self.limits.files:,} files or archive members (PSYROOM_IMPORT_MAX_FILES)"
            )


# Errors of a damaged or truncated archive or compressed stream, met while reading a member.
_DAMAGED = (OSError, EOFError, zlib.error, lzma.LZMAError, tarfile.TarError, zipfile.BadZipFile)


class _Bounded:
    """A binary stream that counts what it gives against the file limit (and, given a budget, the import's) and
    stops reading once past it: a member that unpacks to more is never read further."""

    def __init__(self, raw, *, limit: int, budget: _Budget | None, on_read: Callable[[bool], None] | None = None):
        self._raw = raw
        self._limit = limit
        self._budget = budget
        # Told True before and False after each read: a tar member's reads, as opposed to the archive's own.
        self._on_read = on_read
        self.bytes = 0

    def read(self, size: int) -> bytes:
        return self._count(self._call(self._raw.read, size))

    def readline(self, size: int) -> bytes:
        return self._count(self._call(self._raw.readline, size))

    def drain(self) -> None:
        """Read what is left (a tar stream must pass over a member to reach the next one), counting it."""
        while self.read(1 << 16):
            pass

    def _call(self, method, size: int) -> bytes:
        if self._on_read:
            self._on_read(True)
        try:
            return method(size)
        except _StreamError:
            raise
        except _DAMAGED as error:
            raise _StreamError(f"damaged or truncated data ({error})") from None
        finally:
            if self._on_read:
                self._on_read(False)

    def _count(self, data: bytes) -> bytes:
        self.bytes += len(data)
        if self.bytes > self._limit:
            raise _StreamError(
                f"this file goes on past {self._limit:,} bytes (unpacked), its limit (PSYROOM_IMPORT_MAX_FILE_BYTES)"
            )
        if self._budget is not None:
            self._budget.add_bytes(len(data))
        return data


@dataclass
class Source:
    """One file to read: a file, a file of a folder or an archive member. ``stream`` is valid until the next one."""

    # How messages name it: the path relative to the folder, or "archive.tar.gz/member/path".
    name: str
    # Provenance: the file's path relative to the folder or archive, and the archive's file name.
    file: str
    archive: str | None
    stream: _Bounded
    limits: Limits

    @property
    def provenance(self) -> dict:
        return {"file": self.file, **({"archive": self.archive} if self.archive else {})}


def natural_key(name: str) -> list:
    # case_2 before case_10: digit runs compare as numbers.
    return [[int(p) if p.isdigit() else p for p in re.split(r"(\d+)", part)] for part in PurePosixPath(name).parts]


_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def sources(path: Path, *, suffix: str, limits: Limits) -> Generator[Source, None, None]:
    """The files to import under ``path``: the file itself (whatever its suffix), the ``*suffix`` files of a folder
    (recursively, in natural order: case_2 before case_10) or of an archive (a zip in natural order, a tar in its
    own order). One pass: each call reads afresh, within its own limits. Raises ``ImportFormatError`` when there is
    no such file at all."""
    path = Path(path)
    budget = _Budget(limits)
    try:
        if path.is_dir():
            yield from _folder_sources(path, suffix, budget)
        elif path.name.lower().endswith(".zip"):
            yield from _zip_sources(path, suffix, budget)
        elif path.name.lower().endswith(_TAR_SUFFIXES):
            yield from _tar_sources(path, suffix, budget)
        else:
            _check_name(path.name, where="file")
            with _open(path, path.name) as raw:
                budget.add_file(path.name)
                yield Source(path.name, path.name, None, _bounded(raw, limits, budget), limits)
    except _StreamError as error:
        # Met between members (a tar header, a truncated archive): no line to name.
        raise ImportFormatError(f"{path.name}: {error}") from None


def file_text(path: Path) -> str:
    """The whole text of one plain file (no archive), read with ``read_text``'s checks and limits and named by its
    path as given."""
    limits, name = Limits.from_settings(), str(path)
    _check_name(name, where="file")
    if not Path(path).is_file():
        raise ImportFormatError(f"{name}: no such file")
    with _open(Path(path), name) as raw:
        return read_text(Source(name, Path(path).name, None, _bounded(raw, limits, _Budget(limits)), limits))


def _open(path: Path, name: str):
    try:
        return open(path, "rb")  # noqa: SIM115 (the callers close it)
    except OSError as error:
        raise ImportFormatError(f"{name}: cannot be read ({error.strerror})") from None


def _bounded(raw, limits: Limits, budget: _Budget | None, on_read=None) -> _Bounded:
    return _Bounded(raw, limit=limits.file_bytes, budget=budget, on_read=on_read)


def _folder_sources(path: Path, suffix: str, budget: _Budget) -> Iterator[Source]:
    found = []
    for file in path.rglob(f"*{suffix}"):
        if file.is_file():
            budget.add_file(path.name)
            found.append(file.relative_to(path).as_posix())
    if not found:
        raise ImportFormatError(f"{path}: no *{suffix} files in this folder")
    for name in sorted(found, key=natural_key):
        _check_name(name, where=f"{path}: file")
        with _open(path / name, name) as raw:
            yield Source(name, name, None, _bounded(raw, budget.limits, budget), budget.limits)


# A name's control characters (NUL and the other C0/C1 codes) and lone surrogates (undecodable bytes in a tar name
# or a file name come back as these): neither can be stored or shown.
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _check_name(name: str, *, where: str) -> None:
    if _BAD_NAME.search(name):
        raise ImportFormatError(f"{where} {ascii(name)}: control characters or undecodable bytes in the name")


def _member_name(raw: str, archive: str) -> str | None:
    """The member's path if it may be read (``None``: a member to skip); refuses any path that is not plainly
    relative (none is ever written to disk, but the name travels into messages and provenance)."""
    _check_name(raw, where=f"{archive}: member")
    parts = raw.replace("\\", "/").split("/")
    if raw.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", raw) or ".." in parts:
        raise ImportFormatError(
            f"{archive}: member {raw!r}: an absolute path or a '..' (archive member paths are not trusted)"
        )
    parts = [p for p in parts if p not in ("", ".")]
    if not parts or "__MACOSX" in parts or parts[-1].startswith("._"):
        return None
    return "/".join(parts)


def _refuse_special(archive: str, member: str, *, link: bool) -> None:
    kind = "a link" if link else "a device or other special file"
    raise ImportFormatError(f"{archive}: member {member!r} is {kind}; archives with links or devices are refused")


def _zip_sources(path: Path, suffix: str, budget: _Budget) -> Iterator[Source]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ImportFormatError(f"{path.name}: not a readable zip archive ({error})") from None
    with archive:
        wanted = []
        for info in archive.infolist():
            budget.add_file(path.name)
            name = _member_name(info.filename, path.name)
            if info.is_dir():
                continue
            # The Unix file type, where the archive's maker recorded one (0: none, a plain file).
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                _refuse_special(path.name, info.filename, link=kind == stat.S_IFLNK)
            if name is None:
                continue
            if info.flag_bits & 0x1:
                raise ImportFormatError(f"{path.name}: member {info.filename!r} is encrypted")
            if name.endswith(suffix):
                wanted.append((name, info))
        if not wanted:
            raise ImportFormatError(f"{path.name}: no *{suffix} files in this archive")
        for name, info in sorted(wanted, key=lambda pair: natural_key(pair[0])):
            try:
                member = archive.open(info)
            except (zipfile.BadZipFile, NotImplementedError, OSError) as error:
                raise ImportFormatError(f"{path.name}/{name}: cannot be read ({error})") from None
            with member:
                bounded = _bounded(member, budget.limits, budget)
                yield Source(f"{path.name}/{name}", name, path.name, bounded, budget.limits)


class _TarStream:
    """The unpacked bytes of a tar archive, as ``tarfile`` reads them: every byte counts against the import's total,
    and what ``tarfile`` reads on its own to find the next member (its header, a long name, a pax header) may not
    grow past a limit, so that a forged header can't make it hold gigabytes in memory."""

    HEADER_LIMIT = 1 << 20

    def __init__(self, raw, budget: _Budget):
        self._raw = raw
        self._budget = budget
        self.in_member = False
        # What tarfile has read since it began looking for the next member, outside the members' own data.
        self.header_bytes = 0

    def read(self, size: int) -> bytes:
        try:
            data = self._raw.read(size)
        except _DAMAGED as error:
            raise _StreamError(f"damaged or truncated archive ({error})") from None
        self._budget.add_bytes(len(data))
        if not self.in_member:
            self.header_bytes += len(data)
            if self.header_bytes > self.HEADER_LIMIT:
                raise _StreamError(f"a member header of more than {self.HEADER_LIMIT:,} bytes")
        return data

    def member_read(self, active: bool) -> None:
        self.in_member = active


def _decompressed(raw):
    """The archive's bytes unpacked as they are read, by its magic number (not its name)."""
    magic = raw.peek(6)[:6]
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw)
    return raw


def _tar_sources(path: Path, suffix: str, budget: _Budget) -> Iterator[Source]:
    with _open(path, path.name) as raw:
        stream = _TarStream(_decompressed(raw), budget)
        try:
            # Closed by the with below; a stream-mode tarfile only ever calls read().
            archive = tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|")  # noqa: SIM115
        except tarfile.TarError as error:
            raise ImportFormatError(f"{path.name}: not a readable tar archive ({error})") from None
        found = False
        with archive:
            while True:
                stream.header_bytes = 0
                try:
                    info = archive.next()
                except tarfile.TarError as error:
                    raise ImportFormatError(f"{path.name}: damaged or truncated archive ({error})") from None
                if info is None:
                    break
                # A stream has no index to go back to, but tarfile keeps every header it read in its (undocumented)
                # members list: keep none. getmembers() would read the whole archive.
                archive.members.clear()  # type: ignore[attr-defined]
                budget.add_file(path.name)
                name = _member_name(info.name, path.name)
                if info.isdir():
                    continue
                if not info.isreg():
                    _refuse_special(path.name, info.name, link=info.issym() or info.islnk())
                member = archive.extractfile(info)
                bounded = _bounded(member, budget.limits, None, on_read=stream.member_read)
                try:
                    if name is not None and name.endswith(suffix):
                        found = True
                        yield Source(f"{path.name}/{name}", name, path.name, bounded, budget.limits)
                    bounded.drain()
                except _StreamError as error:
                    raise ImportFormatError(f"{path.name}/{name or info.name}: {error}") from None
    if not found:
        raise ImportFormatError(f"{path.name}: no *{suffix} files in this archive")


# --- Text ----------------------------------------------------------------------------------------------------------


def read_lines(source: Source) -> Iterator[tuple[int, str]]:
    """The lines of ``source``, numbered from 1, without their line ends. A line longer than the record limit, a
    file past the file or import limits, bytes that are not UTF-8 and a NUL are refused naming the line."""
    limit = source.limits.record_bytes
    lineno = 0
    while True:
        try:
            # The limit and a "\r\n": a longer line is refused without being read further.
            raw = source.stream.readline(limit + 2)
        except _StreamError as error:
            raise ImportFormatError(f"{source.name}:{lineno + 1}: {error}") from None
        if not raw:
            return
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > limit:
            raise ImportFormatError(
                f"{source.name}:{lineno + 1}: a line longer than {limit:,} bytes (PSYROOM_IMPORT_MAX_RECORD_BYTES)"
            )
        # A "\r" left inside ends a line too (old Mac files): the line numbers are the ones an editor shows.
        for part in raw.split(b"\r") if b"\r" in raw else (raw,):
            lineno += 1
            if lineno == 1 and part.startswith(b"\xef\xbb\xbf"):
                part = part[3:]
            try:
                text = part.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ImportFormatError(f"{source.name}:{lineno}: not UTF-8 text ({error.reason})") from None
            if "\x00" in text:
                raise ImportFormatError(f"{source.name}:{lineno}: {_NUL}")
            yield lineno, text


_NUL = "a NUL character (U+0000), which can't be stored"


def read_text(source: Source) -> str:
    """The whole text of ``source`` (at most the record limit), UTF-8 with ``\\n`` line ends, checked like
    ``read_lines``."""
    limit = source.limits.record_bytes
    try:
        raw = source.stream.read(limit + 1)
    except _StreamError as error:
        raise ImportFormatError(f"{source.name}: {error}") from None
    if len(raw) > limit:
        raise ImportFormatError(
            f"{source.name}: more than {limit:,} bytes, the most a file read whole may hold "
            "(PSYROOM_IMPORT_MAX_RECORD_BYTES)"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
        raise ImportFormatError(f"{source.name}:{line}: not UTF-8 text ({error.reason})") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    nul = text.find("\x00")
    if nul >= 0:
        raise ImportFormatError(f"{source.name}:{text.count(chr(10), 0, nul) + 1}: {_NUL}")
    return text


# --- JSON ----------------------------------------------------------------------------------------------------------

# A JSON string (on one line: a valid one has no raw line break), and the brackets that nest.
_JSON_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")
# A \u escape of NUL or of a surrogate: a real escape, preceded by an even run of backslashes (\\u0000 is the text
# "\u0000", not an escape).
_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u(0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def parse_json(text: str, name: str, *, limits: Limits, line: int = 1) -> Any:
    """``text`` (the whole of ``name``, or its line ``line``) as JSON, refusing with the line: invalid JSON, nesting
    deeper than the limit, and ``\\u0000`` or lone-surrogate escapes."""
    # No nesting can be deeper than the number of brackets, which C counts fast: most records end the check here.
    if text.count("[") + text.count("{") > limits.depth:
        too_deep = _too_deep(text, limits.depth)
        if too_deep is not None:
            raise ImportFormatError(f"{name}:{line + too_deep}: {_deeper(limits.depth)}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportFormatError(f"{name}:{line + error.lineno - 1}:{error.colno}: invalid JSON: {error.msg}") from None
    except RecursionError:
        raise ImportFormatError(f"{name}:{line}: {_deeper(limits.depth)}") from None
    if "\\u" in text:
        bad = _bad_escape(text)
        if bad is not None:
            position, what = bad
            raise ImportFormatError(f"{name}:{line + text.count(chr(10), 0, position)}: {what}")
    return value


def read_json_list(source: Source) -> list:
    """A file that is one JSON list of records (read whole, checked like ``parse_json``); an empty file or list is
    refused."""
    text = read_text(source)
    if not text.strip():
        raise ImportFormatError(f"{source.name}: an empty file (expected a JSON list of records)")
    data = parse_json(text, source.name, limits=source.limits)
    if not isinstance(data, list):
        raise ImportFormatError(f"{source.name}: expected a JSON list of records, not {type(data).__name__}")
    if not data:
        raise ImportFormatError(f"{source.name}: an empty list: no records in this file")
    return data


def _deeper(depth: int) -> str:
    return f"JSON nested deeper than {depth} levels (PSYROOM_IMPORT_MAX_DEPTH)"


def _too_deep(text: str, depth: int) -> int | None:
    """The line (from 0) where nesting first goes past ``depth``, or None."""
    bare = _JSON_STRING.sub('""', text)  # the strings hold no line break: line numbers stay
    level = 0
    for bracket in _BRACKET.finditer(bare):
        if bracket.group() in "[{":
            level += 1
            if level > depth:
                return bare.count("\n", 0, bracket.start())
        else:
            level -= 1
    return None


def _bad_escape(text: str) -> tuple[int, str] | None:
    """Where the first ``\\u0000`` or lone-surrogate escape is in valid JSON text, and what it is."""
    low_of_pair = -1
    for match in _ESCAPE.finditer(text):
        at = match.start(1) - 2
        if at == low_of_pair:
            continue
        code = int(match.group(1), 16)
        if code == 0:
            return at, "a \\u0000 escape (NUL), which can't be stored"
        follower = text[at + 6 : at + 12]
        if 0xD800 <= code <= 0xDBFF and re.fullmatch(r"\\u[dD][c-fC-F][0-9a-fA-F]{2}", follower):
            low_of_pair = at + 6
            continue
        return at, f"a lone surrogate escape (\\u{match.group(1)}), which is not text"
    return None


# --- Ids -----------------------------------------------------------------------------------------------------------


class IdLedger:
    """The ids of one import's records, 24 bytes a record: one id on two records with different content is refused,
    naming both; the same id on the same content is a repeat, which the importers skip as a duplicate.

    Ids are kept as 64-bit digests: two different ids collide about once in 10**7 imports of a million records,
    and then only refuse an import (never merge records).
    """

    def __init__(self):
        self._ids = array("Q")
        self._contents = array("Q")
        self._places = array("Q")
        self._names: list[str] = []

    def add(self, record_id: str, *, content_hash: str, name: str, record: int) -> None:
        if not self._names or self._names[-1] != name:
            self._names.append(name)
        self._ids.append(int.from_bytes(hashlib.blake2b(record_id.encode(), digest_size=8).digest(), "big"))
        self._contents.append(int(content_hash[:16], 16))
        self._places.append((len(self._names) - 1) << 32 | record)

    def check(self, where: Callable[[str, int], str]) -> None:
        """Raise ``ImportFormatError`` for the first record (in reading order) whose id an earlier record with
        different content has; ``where(name, record)`` says where a record is."""
        if len(self._ids) < 2:
            return
        import numpy as np

        ids = np.frombuffer(self._ids, dtype=np.uint64)
        order = np.argsort(ids, kind="stable")  # equal ids stay in reading order
        sorted_ids = ids[order]
        repeated = sorted_ids[1:] == sorted_ids[:-1]
        if not repeated.any():
            return
        # Only the records whose id repeats, grouped by id: each group's first, and those whose content differs.
        grouped = np.zeros(len(ids), dtype=bool)
        grouped[1:] |= repeated
        grouped[:-1] |= repeated
        members, member_ids = order[grouped], sorted_ids[grouped]
        starts = np.ones(len(members), dtype=bool)
        starts[1:] = member_ids[1:] != member_ids[:-1]
        first = np.maximum.accumulate(np.where(starts, np.arange(len(members)), 0))
        contents = np.frombuffer(self._contents, dtype=np.uint64)[members]
        clashes = np.flatnonzero(contents != contents[first])
        if not len(clashes):
            return
        pick = clashes[np.argmin(members[clashes])]  # the clash met first in reading order
        earlier, later_at = int(members[first[pick]]), int(members[pick])
        raise ImportFormatError(
            f"{self._where(later_at, where)}: the same id as {self._where(earlier, where)}, with different content "
            "(an id names one record in an import)"
        )

    def _where(self, index: int, where: Callable[[str, int], str]) -> str:
        place = self._places[index]
        return where(self._names[place >> 32], place & 0xFFFFFFFF)
