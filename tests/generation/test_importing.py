"""The safe reading every importer shares (generation/importers/reading.py): sources, archives, text, JSON and ids."""

import gzip
import io
import json
import tarfile
import tracemalloc
import zipfile
from collections import deque
from pathlib import Path

import pytest

from generation.importers.reading import (
    IdLedger,
    ImportFormatError,
    Limits,
    file_text,
    parse_json,
    read_lines,
    read_text,
    sources,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "import"
SHIPPED_CPSYCOUN = Path(__file__).resolve().parents[3] / "shared" / "data" / "cpsycoun" / "cpsycound-dialogues.tar.gz"
LIMITS = Limits(record_bytes=1 << 20, file_bytes=1 << 24, total_bytes=1 << 25, files=100, depth=32)
MiB = 1 << 20


def limits(**changes) -> Limits:
    return Limits(**{**LIMITS.__dict__, **changes})


def read_all(path: Path, suffix: str, limits: Limits = LIMITS) -> dict[str, str]:
    """Every source's name and whole text."""
    return {source.name: read_text(source) for source in sources(path, suffix=suffix, limits=limits)}


def every_line(path: Path, limits: Limits = LIMITS) -> list[tuple[int, str]]:
    return [line for source in sources(path, suffix=".jsonl", limits=limits) for line in read_lines(source)]


def read_through(path: Path, limits: Limits) -> None:
    """Read every line, keeping none (as an import's first pass does)."""
    for source in sources(path, suffix=".jsonl", limits=limits):
        deque(read_lines(source), maxlen=0)


def lines_of(path: Path, data: bytes, limits: Limits = LIMITS) -> list[tuple[int, str]]:
    path.write_bytes(data)
    return every_line(path, limits)


def special(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def make_tar(path: Path, members: list[tuple], mode: str = "w:gz", **options) -> Path:
    """A tar archive of (name, bytes) files, or (TarInfo, None) for anything else."""
    with tarfile.open(path, mode, **options) as archive:
        for name, data in members:
            if isinstance(name, tarfile.TarInfo):
                archive.addfile(name)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def make_zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


CASE = "来访者：你好。\n\n心理咨询师：你好，请说。\n".encode()


# --- Archives ------------------------------------------------------------------------------------------------------


def test_a_tar_gz_is_read_member_by_member_in_its_own_order_without_directories(tmp_path):
    path = make_tar(
        tmp_path / "cases.tar.gz",
        [(special("Data", tarfile.DIRTYPE), None), ("Data/case_10.txt", CASE), ("Data/case_2.txt", CASE + b"\n"),
         ("Data/notes.md", b"# notes"), ("__MACOSX/Data/._case_2.txt", b"\x00\x05binary")],
    )  # fmt: skip

    found = list(sources(path, suffix=".txt", limits=LIMITS))

    assert [(s.name, s.file, s.archive) for s in found] == [
        ("cases.tar.gz/Data/case_10.txt", "Data/case_10.txt", "cases.tar.gz"),
        ("cases.tar.gz/Data/case_2.txt", "Data/case_2.txt", "cases.tar.gz"),
    ]
    assert found[0].provenance == {"file": "Data/case_10.txt", "archive": "cases.tar.gz"}
    assert read_all(path, ".txt") == {
        "cases.tar.gz/Data/case_10.txt": CASE.decode(),
        "cases.tar.gz/Data/case_2.txt": CASE.decode() + "\n",
    }


@pytest.mark.parametrize("mode", ["w:bz2", "w:xz", "w"])
def test_other_tar_compressions_are_read_by_their_magic_number(tmp_path, mode):
    path = make_tar(tmp_path / "cases.tar", [("case_1.txt", CASE)], mode=mode)

    assert read_all(path, ".txt") == {"cases.tar/case_1.txt": CASE.decode()}


def test_a_zip_is_read_in_natural_order(tmp_path):
    path = make_zip(tmp_path / "chat.zip", [("b/10.jsonl", b"{}\n"), ("b/2.jsonl", b"[]\n"), ("b/", b"")])

    assert read_all(path, ".jsonl") == {"chat.zip/b/2.jsonl": "[]\n", "chat.zip/b/10.jsonl": "{}\n"}


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("../escape.txt", "chat.ARCHIVE: member '../escape.txt': an absolute path or a '..'"),
        ("/etc/case_1.txt", "chat.ARCHIVE: member '/etc/case_1.txt': an absolute path or a '..'"),
        ("Data/../../case_1.txt", "an absolute path or a '..' (archive member paths are not trusted)"),
        ("C:\\case_1.txt", "an absolute path or a '..'"),
        ("Data/case\n1.txt", "chat.ARCHIVE: member 'Data/case\\n1.txt': control characters"),
    ],
)
@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_member_paths_are_not_trusted(tmp_path, kind, member, message):
    good = ("Data/case_1.txt", CASE)
    members = [good, (member, CASE)]
    path = (make_zip if kind == "zip" else make_tar)(tmp_path / f"chat.{kind}", members)

    with pytest.raises(ImportFormatError) as raised:
        read_all(path, ".txt")

    assert message.replace("ARCHIVE", kind) in str(raised.value)


def test_undecodable_bytes_in_a_tar_member_name_are_refused(tmp_path):
    path = make_tar(tmp_path / "chat.tar.gz", [("Data/case_\udcff.txt", CASE)], encoding="utf-8",
                    errors="surrogateescape")  # fmt: skip

    with pytest.raises(ImportFormatError, match=r"member 'Data/case_\\udcff.txt': control characters or undecodable"):
        read_all(path, ".txt")


@pytest.mark.parametrize(
    ("info", "what"),
    [
        (special("Data/case_9.txt", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
        (special("Data/case_9.txt", tarfile.LNKTYPE, "Data/case_1.txt"), "is a link"),
        (special("dev/zero", tarfile.CHRTYPE), "is a device or other special file"),
        (special("fifo", tarfile.FIFOTYPE), "is a device or other special file"),
    ],
)
def test_links_and_devices_in_a_tar_are_refused(tmp_path, info, what):
    path = make_tar(tmp_path / "chat.tgz", [("Data/case_1.txt", CASE), (info, None)])

    with pytest.raises(ImportFormatError, match=f"^chat.tgz: member '{info.name}' {what}; archives with links"):
        read_all(path, ".txt")


def test_a_symbolic_link_in_a_zip_is_refused(tmp_path):
    path = tmp_path / "chat.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("Data/case_1.txt", CASE)
        link = zipfile.ZipInfo("Data/case_2.txt")
        link.external_attr = (0o120777 << 16) | 0x20
        archive.writestr(link, "/etc/passwd")

    with pytest.raises(ImportFormatError, match=r"^chat.zip: member 'Data/case_2.txt' is a link"):
        read_all(path, ".txt")


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_an_archive_with_more_members_than_the_limit_is_refused(tmp_path, kind):
    members = [(f"case_{n}.txt", CASE) for n in range(5)]
    path = (make_zip if kind == "zip" else make_tar)(tmp_path / f"many.{kind}", members)

    with pytest.raises(ImportFormatError, match=rf"^many.{kind}: more than 4 files or archive members \(PSYROOM_IMP"):
        read_all(path, ".txt", limits(files=4))
    assert len(read_all(path, ".txt", limits(files=5))) == 5


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_an_archive_bomb_stops_at_the_limit_without_being_read_whole(tmp_path, kind):
    # 32 MiB of valid JSONL packed into well under 1 MiB; the import may read 1 MiB.
    line = json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]})
    data = (line + "\n").encode() * (32 * MiB // (len(line) + 1))
    path = (make_zip if kind == "zip" else make_tar)(tmp_path / f"bomb.{kind}", [("chat.jsonl", data)])
    assert path.stat().st_size < MiB
    del data

    tracemalloc.start()
    try:
        with pytest.raises(ImportFormatError) as raised:
            read_through(path, limits(file_bytes=MiB))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert str(raised.value).startswith(f"bomb.{kind}/chat.jsonl:")
    assert "this file goes on past 1,048,576 bytes (unpacked), its limit (PSYROOM_IMPORT_MAX_FILE_BYTES)" in str(
        raised.value
    )
    # Stopped at the limit (line 1 MiB / 88 bytes or so), never holding more than a few buffers.
    assert int(str(raised.value).split(":")[1]) < 15_000
    assert peak < 3 * MiB


def test_the_total_limit_counts_every_member_of_a_tar_even_those_skipped(tmp_path):
    path = make_tar(tmp_path / "big.tar.gz", [("zeros.bin", bytes(3 * MiB)), ("case_1.txt", CASE)])

    with pytest.raises(ImportFormatError, match=r"^big.tar.gz/zeros.bin: this import goes on past 2,097,152 bytes"):
        read_all(path, ".txt", limits(total_bytes=2 * MiB))


def test_the_total_limit_counts_every_file_of_a_folder(tmp_path):
    for n in range(3):
        (tmp_path / f"{n}.jsonl").write_bytes(b"{}\n" * 500)

    with pytest.raises(ImportFormatError, match=r"^2.jsonl:\d+: this import goes on past 3,500 bytes"):
        every_line(tmp_path, limits(total_bytes=3500))


def test_a_forged_tar_header_can_not_make_it_hold_megabytes(tmp_path):
    info = tarfile.TarInfo("case_1.txt")
    info.size = len(CASE)
    info.pax_headers = {"comment": "x" * (2 * MiB)}
    path = tmp_path / "pax.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(info, io.BytesIO(CASE))

    with pytest.raises(ImportFormatError, match=r"^pax.tar.gz: a member header of more than 1,048,576 bytes"):
        read_all(path, ".txt")


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("bad.tar.gz", b"not a tar", "bad.tar.gz: not a readable tar archive"),
        ("bad.tar.gz", gzip.compress(b"x" * 2000, mtime=0), r"bad.tar.gz: not a readable tar archive \(invalid header"),
        ("bad.zip", b"PK not a zip", "bad.zip: not a readable zip archive"),
    ],
    ids=["not-a-tar", "gzip-of-no-tar", "not-a-zip"],
)
def test_a_damaged_archive_is_refused(tmp_path, name, data, message):
    (tmp_path / name).write_bytes(data)

    with pytest.raises(ImportFormatError, match=f"^{message}"):
        read_all(tmp_path / name, ".txt")


def test_a_truncated_tar_gz_is_refused_naming_the_member(tmp_path):
    path = make_tar(tmp_path / "cut.tar.gz", [("case_1.txt", bytes(range(256)) * 4000)])
    path.write_bytes(path.read_bytes()[:-2000])

    with pytest.raises(ImportFormatError, match=r"^cut.tar.gz/case_1.txt: damaged or truncated"):
        read_all(path, ".txt", limits(record_bytes=2 * MiB))


def test_an_archive_with_nothing_of_the_format_is_refused(tmp_path):
    path = make_zip(tmp_path / "other.zip", [("notes.md", b"# notes")])

    with pytest.raises(ImportFormatError, match=r"^other.zip: no \*.txt files in this archive"):
        read_all(path, ".txt")


@pytest.mark.skipif(not SHIPPED_CPSYCOUN.exists(), reason="the shared CPsyCounD archive is not on this machine")
def test_the_shipped_cpsycound_archive_reads_as_its_3084_case_files():
    names = [source.file for source in sources(SHIPPED_CPSYCOUN, suffix=".txt", limits=Limits.from_settings())]

    assert len(names) == len(set(names)) == 3084
    assert all(name.startswith("Data/case_") for name in names)


# --- Text ----------------------------------------------------------------------------------------------------------


def test_lines_end_at_lf_crlf_or_cr_and_a_bom_is_dropped(tmp_path):
    assert lines_of(tmp_path / "x.jsonl", b"\xef\xbb\xbfa\r\nb\rc\n\nd") == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
        (4, ""),
        (5, "d"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"ok\nbad \x00 nul\n", "x.jsonl:2: a NUL character (U+0000), which can't be stored"),
        (b"ok\n\xed\xa0\x80 a surrogate\n", "x.jsonl:2: not UTF-8 text (invalid continuation byte)"),
        (b"ok\n\xff\n", "x.jsonl:2: not UTF-8 text (invalid start byte)"),
        (b"ok\n" + b"x" * 2000 + b"\n", "x.jsonl:2: a line longer than 1,024 bytes (PSYROOM_IMPORT_MAX_RECORD_BYTES)"),
    ],
)
def test_a_bad_line_is_refused_naming_it(tmp_path, data, message):
    with pytest.raises(ImportFormatError) as raised:
        lines_of(tmp_path / "x.jsonl", data, limits(record_bytes=1024))

    assert str(raised.value) == message


def test_a_line_of_exactly_the_limit_is_read(tmp_path):
    assert lines_of(tmp_path / "x.jsonl", b"x" * 1024 + b"\r\n", limits(record_bytes=1024)) == [(1, "x" * 1024)]


def test_a_file_read_whole_is_limited_normalised_and_checked(tmp_path):
    path = tmp_path / "case.txt"
    path.write_bytes(b"a\r\nb\rc\n")
    assert file_text(path) == "a\nb\nc\n"

    path.write_bytes(b"a\r\nb\n\x00")
    with pytest.raises(ImportFormatError, match=rf"^{path}:3: a NUL character"):
        file_text(path)

    path.write_bytes(b"x" * 2048)
    with pytest.raises(
        ImportFormatError, match=r"case.txt: more than 1,024 bytes, the most a file read whole may hold"
    ):
        read_all(path, ".txt", limits(record_bytes=1024))

    with pytest.raises(ImportFormatError, match=rf"^{tmp_path / 'missing.txt'}: no such file"):
        file_text(tmp_path / "missing.txt")


# --- JSON ----------------------------------------------------------------------------------------------------------


def test_nesting_deeper_than_the_limit_is_refused_naming_the_line_before_the_parser_recurses():
    deep = "[" * 200_000 + "]" * 200_000  # deeper than Python's recursion limit
    with pytest.raises(ImportFormatError, match=r"^f.jsonl:7: JSON nested deeper than 32 levels \(PSYROOM_IMPORT_MAX"):
        parse_json(deep, "f.jsonl", limits=LIMITS, line=7)

    document = '{"a": [\n  "[[[[[[[[",\n  ' + "[" * 40 + "]" * 40 + "\n]}"
    with pytest.raises(ImportFormatError, match=r"^f.json:3: JSON nested deeper than 32 levels"):
        parse_json(document, "f.json", limits=LIMITS)


def test_nesting_up_to_the_limit_and_brackets_inside_strings_are_fine():
    assert parse_json("[" * 32 + "]" * 32, "f", limits=LIMITS) == json.loads("[" * 32 + "]" * 32)
    assert parse_json(json.dumps({"text": "[{" * 100}), "f", limits=LIMITS) == {"text": "[{" * 100}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": "x\\u0000y"}', "f.jsonl:4: a \\u0000 escape (NUL), which can't be stored"),
        ('{"a": "\\ud800"}', "f.jsonl:4: a lone surrogate escape (\\ud800), which is not text"),
        ('{"a": "\\uDFFF x"}', "f.jsonl:4: a lone surrogate escape (\\uDFFF), which is not text"),
        ('{"a": "\\ud83d\\ud83d\\ude00"}', "f.jsonl:4: a lone surrogate escape (\\ud83d), which is not text"),
        ('{"\\\\\\ud800": 1}', "f.jsonl:4: a lone surrogate escape (\\ud800), which is not text"),
        ('{"a": "x", "b": "\\u0000"}', "f.jsonl:4: a \\u0000 escape (NUL)"),
    ],
)
def test_nul_and_lone_surrogate_escapes_are_refused_naming_the_line(text, message):
    with pytest.raises(ImportFormatError) as raised:
        parse_json(text, "f.jsonl", limits=LIMITS, line=4)

    assert str(raised.value).startswith(message)


def test_a_surrogate_pair_and_escaped_backslashes_are_text():
    assert parse_json('{"a": "\\ud83d\\ude00 \\\\u0000 \\\\ud800"}', "f", limits=LIMITS) == {
        "a": "\U0001f600 \\u0000 \\ud800"
    }


def test_a_lone_surrogate_in_a_document_is_refused_naming_its_line():
    with pytest.raises(ImportFormatError, match=r"^f.json:3: a lone surrogate escape"):
        parse_json('[\n{"a": 1},\n{"a": "\\udc00"}\n]', "f.json", limits=LIMITS)


def test_invalid_json_names_line_and_column():
    with pytest.raises(ImportFormatError, match=r"^f.jsonl:9:4: invalid JSON: Expecting value"):
        parse_json("[1,", "f.jsonl", limits=LIMITS, line=9)


# --- Ids -----------------------------------------------------------------------------------------------------------


def where(name: str, record: int) -> str:
    return f"{name}:{record}"


def test_one_id_on_different_content_is_refused_naming_both_records():
    ledger = IdLedger()
    ledger.add("a", content_hash="1" * 64, name="x.jsonl", record=1)
    ledger.add("b", content_hash="2" * 64, name="x.jsonl", record=2)
    ledger.add("a", content_hash="1" * 64, name="y.jsonl", record=1)  # a repeat: the same content
    ledger.add("b", content_hash="3" * 64, name="y.jsonl", record=7)
    ledger.add("a", content_hash="4" * 64, name="y.jsonl", record=9)

    with pytest.raises(ImportFormatError) as raised:
        ledger.check(where)

    assert str(raised.value) == (
        "y.jsonl:7: the same id as x.jsonl:2, with different content (an id names one record in an import)"
    )


def test_repeats_and_distinct_ids_pass():
    ledger = IdLedger()
    for n in range(1000):
        ledger.add(str(n), content_hash=f"{n:064x}", name="x", record=n)
    ledger.add("7", content_hash=f"{7:064x}", name="x", record=2000)
    ledger.check(where)
    IdLedger().check(where)
