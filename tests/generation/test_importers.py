import io
import itertools
import json
import shutil
import tarfile
import threading
import time
import zipfile
from itertools import islice
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from generation.importers import dialogues
from generation.importers.dialogues import ImportResult, dialogues_import
from generation.importers.reading import ImportFormatError
from generation.models import Candidate, Revision, RiskFlag
from generation.services.candidates import candidates_save_rows, content_hash
from tests import factories

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "import"
PSYROOM = FIXTURES / "psyroom-example.json"
CPSYCOUN = FIXTURES / "cpsycoun"
MESSAGES = FIXTURES / "messages.jsonl"
GOOD = {"psyroom": PSYROOM, "cpsycoun": CPSYCOUN, "messages": MESSAGES}

CPSYCOUN_SOURCE = {
    "dataset": "CPsyCounD",
    "license": "CC BY 4.0",
    "attribution": "CPsyCounD from CPsyCoun (Zhang et al. 2024), CC BY 4.0",
}


def run_import(path: Path, fmt: str, **options) -> str:
    out = io.StringIO()
    call_command("import_dialogues", str(path), format=fmt, stdout=out, **options)
    return out.getvalue().strip()


def rows() -> tuple[set[int], set[int]]:
    return set(Candidate.objects.values_list("id", flat=True)), set(Revision.objects.values_list("id", flat=True))


def turns(*pairs: tuple[str, str]) -> list[dict]:
    return [{"role": role, "text": text} for role, text in pairs]


def messages_line(*messages: tuple[str, str], **extra) -> str:
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in messages], **extra})


# --- Each format -----------------------------------------------------------------------------------------------


def test_psyroom_imports_each_record_as_a_chinese_dialogue(taxonomy):
    output = run_import(PSYROOM, "psyroom", sub_emotion="anxiety.1")

    assert output == f"Imported 3 dialogues (0 duplicates skipped) from {PSYROOM}"
    records = json.loads(PSYROOM.read_text(encoding="utf-8"))
    candidates = list(Candidate.objects.order_by("id"))
    assert len(candidates) == 3
    for index, (candidate, record) in enumerate(zip(candidates, records, strict=True)):
        expected = []
        for pair in record["conversation"]:
            # Surrounding whitespace is dropped: record 2 has an input that starts with a space.
            expected += turns(("client", pair["input"].strip()), ("counselor", pair["output"].strip()))
        assert candidate.content == {"turns": expected}
        assert (candidate.kind, candidate.language, candidate.sub_emotion.key) == ("dialogue", "zh", "anxiety.1")
        assert candidate.status == Candidate.Status.GENERATED
        assert candidate.source == {
            "dataset": "AI PsyRoom example",
            "license": "MIT",
            "attribution": "AI PsyRoom example dialogues, (c) 2025 Feng Yigui, MIT License",
            "file": "psyroom-example.json",
            "record": index,
        }
        assert candidate.source_hash == content_hash(candidate.content)
        assert Revision.objects.get(candidate=candidate, number=0).content == candidate.content
    assert [len(c.content["turns"]) for c in candidates] == [36, 36, 28]


def test_psyroom_pair_with_an_empty_input_gives_no_client_turn(tmp_path):
    path = tmp_path / "example.json"
    path.write_text(
        json.dumps(
            [{"conversation": [{"input": "我很累。", "output": "说说看？"}, {"input": "", "output": "慢慢来。"}]}]
        ),
        encoding="utf-8",
    )

    run_import(path, "psyroom")

    assert Candidate.objects.get().content == {
        "turns": turns(("client", "我很累。"), ("counselor", "说说看？"), ("counselor", "慢慢来。"))
    }


def test_cpsycoun_folder_imports_every_case_file_in_natural_order():
    output = run_import(CPSYCOUN, "cpsycoun")

    assert output == f"Imported 3 dialogues (0 duplicates skipped) from {CPSYCOUN}"
    candidates = list(Candidate.objects.order_by("id"))
    assert [c.source for c in candidates] == [
        {**CPSYCOUN_SOURCE, "file": name, "record": 1} for name in ("case_2.txt", "case_10.txt", "case_1640.txt")
    ]
    assert [len(c.content["turns"]) for c in candidates] == [18, 17, 14]
    for candidate in candidates:
        roles = [t["role"] for t in candidate.content["turns"]]
        assert roles == ["client", "counselor"] * (len(roles) // 2) + ["client"] * (len(roles) % 2)
        assert not any("\r" in t["text"] or t["text"] != t["text"].strip() for t in candidate.content["turns"])
        assert (candidate.language, candidate.sub_emotion) == ("zh", None)
        assert candidate.revisions.get().number == 0
    assert candidates[0].content["turns"][0] == {
        "role": "client",
        "text": "心理咨询师，我最近怀孕了，但是我很害怕，一直想打掉孩子。",
    }
    # The numbered list under "心理咨询师：您可以尝试以下方法：" belongs to that turn.
    assert candidates[2].content["turns"][11] == {
        "role": "counselor",
        "text": "您可以尝试以下方法：\n1. 主动与丈夫沟通，表达自己的感受和需求。\n2. 倾听丈夫的意见，尊重他的观点。\n"
        "3. 在适当的时候，学会妥协和让步。\n4. 共同参与家庭事务，增进彼此的了解和信任。",
    }


def test_cpsycoun_single_file_is_named_by_its_file_name():
    result = dialogues_import(path=CPSYCOUN / "case_10.txt", format="cpsycoun")

    assert result == ImportResult(created=1, duplicates=0, files=1)
    assert Candidate.objects.get().source == {**CPSYCOUN_SOURCE, "file": "case_10.txt", "record": 1}


def test_cpsycoun_continuation_lines_labels_and_a_trailing_bare_label(tmp_path):
    (tmp_path / "case_1.txt").write_text(
        "\n来访者：我和丈夫总吵架。\n\n"
        "心理咨询师: 你们一般为什么吵？\n\n"
        "来访者（程女士）：为了孩子。\n\n"
        "心理咨询师：可以试试：\n1. 先听对方说完。\n\n2. 约定冷静时间。\n\n"
        "（来访者点头）\n\n"
        "来访者：\n",
        encoding="utf-8",
    )

    run_import(tmp_path, "cpsycoun")

    candidate = Candidate.objects.get()
    assert candidate.content == {
        "turns": turns(
            ("client", "我和丈夫总吵架。"),
            ("counselor", "你们一般为什么吵？"),
            ("client", "来访者（程女士）：为了孩子。"),
            ("counselor", "可以试试：\n1. 先听对方说完。\n\n2. 约定冷静时间。\n\n（来访者点头）"),
        )
    }
    assert candidate.source["record"] == 2


def test_messages_imports_each_line_with_its_sub_emotion_language_and_system_prompt(taxonomy):
    output = run_import(MESSAGES, "messages")

    assert output == f"Imported 3 dialogues (0 duplicates skipped) from {MESSAGES}"
    first, second, third = Candidate.objects.order_by("id")
    assert first.content["turns"] == turns(
        ("client", "I keep lying awake before exams, going over everything I might get wrong."),
        ("counselor", "That sounds exhausting. What goes through your mind when you lie awake?"),
        ("client", "Mostly that I will disappoint my parents if my grades slip."),
        ("counselor", "So the pressure is partly about them. Have you been able to talk with them about it?"),
    )
    assert first.source == {
        "dataset": "messages",
        "license": "",
        "attribution": "",
        "file": "messages.jsonl",
        "record": 1,
        "system": ["You are a warm, careful counselor."],
    }
    assert [c.sub_emotion.key if c.sub_emotion else None for c in (first, second, third)] == ["anxiety.1", None, None]
    assert [c.language for c in (first, second, third)] == ["en", "en", "en"]
    # Line 3 of the file is blank.
    assert [c.source["record"] for c in (first, second, third)] == [1, 2, 4]
    assert "system" not in second.source
    assert [len(c.content["turns"]) for c in (first, second, third)] == [4, 4, 2]


def test_messages_language_defaults_from_the_text_and_the_sub_emotion_option_is_a_default(taxonomy, tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(
        messages_line(("user", "我最近睡不好。"), ("assistant", "能多说一点吗？"))
        + "\n"
        + messages_line(("user", "I can't sleep."), ("assistant", "Tell me more."), sub_emotion="depression.1")
        + "\n"
        + messages_line(("user", "我很生气。"), ("assistant", "发生了什么？"), language="en")
        + "\n",
        encoding="utf-8",
    )

    run_import(path, "messages", sub_emotion="anxiety.2")

    assert [(c.language, c.sub_emotion.key) for c in Candidate.objects.order_by("id")] == [
        ("zh", "anxiety.2"),
        ("en", "depression.1"),
        ("en", "anxiety.2"),
    ]


# --- Duplicates --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["psyroom", "cpsycoun", "messages"])
def test_importing_the_same_data_twice_creates_nothing_the_second_time(taxonomy, fmt):
    run_import(GOOD[fmt], fmt)
    before = rows()

    output = run_import(GOOD[fmt], fmt)

    assert output == f"Imported 0 dialogues (3 duplicates skipped) from {GOOD[fmt]}"
    assert rows() == before
    assert len(before[0]) == 3


def test_a_dialogue_repeated_within_one_import_is_saved_once(tmp_path):
    line = messages_line(("user", "I feel lonely."), ("assistant", "When do you feel it most?"))
    with_system = messages_line(
        ("system", "Be kind."), ("user", "I feel lonely."), ("assistant", "When do you feel it most?")
    )
    path = tmp_path / "chat.jsonl"
    path.write_text(f"{line}\n{with_system}\n", encoding="utf-8")

    result = dialogues_import(path=path, format="messages")

    assert result == ImportResult(created=1, duplicates=1, files=1)
    assert Candidate.objects.get().source["record"] == 1
    assert Revision.objects.count() == 1


# --- Malformed files: a clear error and nothing kept -------------------------------------------------------------

GOOD_PAIR = {"input": "我最近压力很大。", "output": "能具体说说吗？"}
GOOD_MESSAGES = messages_line(("user", "I feel tense at work."), ("assistant", "What makes it tense?"))

MALFORMED = {
    "psyroom bad JSON syntax": (
        "psyroom",
        "bad.json",
        '[\n  {"conversation": [\n    {"input": "a" "output": "b"}\n  ]}\n]\n',
        "bad.json:3:19: invalid JSON: Expecting ',' delimiter",
    ),
    "psyroom record without conversation": (
        "psyroom",
        "bad.json",
        json.dumps([{"conversation": [GOOD_PAIR]}, {"dialogue": [GOOD_PAIR]}], ensure_ascii=False),
        "bad.json: record 1: expected an object with a 'conversation' list",
    ),
    "psyroom empty output": (
        "psyroom",
        "bad.json",
        json.dumps([{"conversation": [GOOD_PAIR, {"input": "嗯。", "output": "  "}]}], ensure_ascii=False),
        "bad.json: record 0: conversation[1].output must be non-empty text",
    ),
    "cpsycoun line without a prefix": (
        "cpsycoun",
        "case_7.txt",
        "\n\n旁白：两人坐下。\n\n来访者：你好。\n\n心理咨询师：你好。\n",
        "case_7.txt:3: expected a line starting with 来访者： or 心理咨询师：",
    ),
    "cpsycoun a turn with no text": (
        "cpsycoun",
        "case_7.txt",
        "来访者：你好。\n\n心理咨询师：\n\n来访者：在吗？\n\n心理咨询师：在。\n",
        "case_7.txt:3: this turn has no text",
    ),
    "cpsycoun no counselor turn": (
        "cpsycoun",
        "case_7.txt",
        "来访者：你好。\n\n来访者：在吗？\n",
        "case_7.txt:1: turns: a dialogue needs at least one counselor turn",
    ),
    "messages line that is not JSON": (
        "messages",
        "bad.jsonl",
        f"{GOOD_MESSAGES}\n\n{{'messages': []}}\n",
        "bad.jsonl:3:2: invalid JSON: Expecting property name enclosed in double quotes",
    ),
    "messages unknown role": (
        "messages",
        "bad.jsonl",
        f"{GOOD_MESSAGES}\n" + messages_line(("user", "Hi."), ("tool", "{}"), ("assistant", "Hello.")),
        "bad.jsonl:2: messages[1].role must be system, user or assistant, not 'tool'",
    ),
    "messages empty content": (
        "messages",
        "bad.jsonl",
        f"{GOOD_MESSAGES}\n" + messages_line(("user", ""), ("assistant", "Hello.")),
        "bad.jsonl:2: messages[0].content must be non-empty text",
    ),
    "messages unknown sub-emotion": (
        "messages",
        "bad.jsonl",
        f"{GOOD_MESSAGES}\n" + messages_line(("user", "Hi."), ("assistant", "Hello."), sub_emotion="anxiety.99"),
        "bad.jsonl:2: sub_emotion: no sub-emotion with key 'anxiety.99'",
    ),
    "messages bad language": (
        "messages",
        "bad.jsonl",
        messages_line(("user", "Hi."), ("assistant", "Hello."), language="fr"),
        "bad.jsonl:1: language must be one of en, zh, not 'fr'",
    ),
}


@pytest.mark.parametrize(("fmt", "name", "text", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_file_names_file_and_line_and_keeps_nothing(taxonomy, tmp_path, fmt, name, text, message):
    factories.make_candidate()
    run_import(GOOD[fmt], fmt)
    before = rows()
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")

    with pytest.raises(CommandError) as raised:
        run_import(path, fmt)

    assert str(raised.value).startswith(message)
    assert str(raised.value).endswith("(nothing was imported)")
    assert rows() == before
    assert len(before[0]) == 4


def test_a_folder_with_one_good_and_one_bad_file_keeps_nothing(tmp_path):
    shutil.copy(CPSYCOUN / "case_2.txt", tmp_path / "case_2.txt")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "case_3.txt").write_text(
        "咨询记录\n\n来访者：你好。\n\n心理咨询师：你好。\n", encoding="utf-8"
    )

    with pytest.raises(CommandError, match=r"^more/case_3\.txt:1: expected a line starting with 来访者："):
        run_import(tmp_path, "cpsycoun")

    assert rows() == (set(), set())


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    (tmp_path / "case_1.txt").write_bytes("来访者：你好。\n\n心理咨询师：你好。\n".encode("gbk"))

    with pytest.raises(CommandError, match=r"^case_1\.txt:1: not UTF-8 text"):
        run_import(tmp_path, "cpsycoun")

    assert not Candidate.objects.exists()


def test_a_failure_while_saving_rolls_back_the_whole_import(monkeypatch):
    real_save = candidates_save_rows

    def save_then_fail(**options):
        assert real_save(**options) > 0
        raise RuntimeError("disk full")

    monkeypatch.setattr(dialogues, "candidates_save_rows", save_then_fail)

    with pytest.raises(RuntimeError, match="disk full"):
        dialogues_import(path=CPSYCOUN, format="cpsycoun")

    assert rows() == (set(), set())


# --- Bad arguments -----------------------------------------------------------------------------------------------


def test_an_unknown_sub_emotion_key_is_refused(taxonomy):
    with pytest.raises(CommandError, match=r"^sub_emotion: no sub-emotion with key 'anxiety\.99'"):
        run_import(PSYROOM, "psyroom", sub_emotion="anxiety.99")

    assert not Candidate.objects.exists()


def test_a_missing_path_or_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        run_import(tmp_path / "nowhere.json", "psyroom")
    with pytest.raises(CommandError, match=r"no \*\.txt files in this folder"):
        run_import(tmp_path, "cpsycoun")


def test_import_format_error_is_a_value_error():
    assert issubclass(ImportFormatError, ValueError)


# --- Hostile and broken input (issue #14): a clear error naming the place, and nothing imported ------------------


def refused(path: Path, fmt: str, **options) -> str:
    """The command's error for ``path``, having checked that nothing was imported."""
    before = rows()
    with pytest.raises(CommandError) as raised:
        run_import(path, fmt, **options)
    assert rows() == before
    message = str(raised.value)
    assert message.endswith("(nothing was imported)")
    return message


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_deeply_nested_json_is_refused_naming_the_line(tmp_path):
    deep = '{"messages": [{"role": "user", "content": "Hi."}], "meta": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path = write(tmp_path / "deep.jsonl", f"{GOOD_MESSAGES}\n{deep}\n")

    assert refused(path, "messages").startswith("deep.jsonl:2: JSON nested deeper than 32 levels")

    nested = json.dumps([{"conversation": [GOOD_PAIR], "meta": json.loads("[" * 40 + "]" * 40)}])
    assert refused(write(tmp_path / "deep.json", nested), "psyroom").startswith(
        "deep.json:1: JSON nested deeper than 32 levels (PSYROOM_IMPORT_MAX_DEPTH)"
    )


@pytest.mark.parametrize(
    ("fmt", "name", "data", "message"),
    [
        (
            "cpsycoun",
            "case_1.txt",
            "来访者：你好。\n\n心理咨询师：你\x00好。\n",
            "case_1.txt:3: a NUL character (U+0000)",
        ),
        ("messages", "chat.jsonl", f"{GOOD_MESSAGES}\n{GOOD_MESSAGES[:-2]}\x00" + '"}]}\n', "chat.jsonl:2: a NUL"),
        (
            "messages",
            "chat.jsonl",
            f"{GOOD_MESSAGES}\n" + messages_line(("user", "Hi.\u0000"), ("assistant", "Hello.")),
            "chat.jsonl:2: a \\u0000 escape (NUL), which can't be stored",
        ),
        (
            "messages",
            "chat.jsonl",
            f"{GOOD_MESSAGES}\n\n" + messages_line(("user", "Hi \ud800."), ("assistant", "Hello.")),
            "chat.jsonl:3: a lone surrogate escape (\\ud800), which is not text",
        ),
        (
            "psyroom",
            "example.json",
            '[\n{"conversation": [{"input": "我很累。", "output": "说说看\\udc00？"}]}\n]',
            "example.json:2: a lone surrogate escape (\\udc00)",
        ),
        (
            "messages",
            "chat.jsonl",
            (GOOD_MESSAGES + "\n" + GOOD_MESSAGES.replace("tense", "\ud800")).encode("utf-8", "surrogatepass"),
            "chat.jsonl:2: not UTF-8 text",
        ),
    ],
)
def test_nul_and_lone_surrogates_are_refused_naming_the_line(tmp_path, fmt, name, data, message):
    assert refused(write(tmp_path / name, data), fmt).startswith(message)


def test_a_surrogate_pair_is_text_and_imports(tmp_path):
    path = write(tmp_path / "chat.jsonl", json.dumps({"messages": [
        {"role": "user", "content": "I feel \U0001f614 today."}, {"role": "assistant", "content": "Tell me more."}
    ]}))  # fmt: skip

    run_import(path, "messages")

    assert Candidate.objects.get().content["turns"][0]["text"] == "I feel \U0001f614 today."


def test_a_line_or_file_over_the_limits_is_refused_naming_it(tmp_path, settings):
    settings.PSYROOM_IMPORT_MAX_RECORD_BYTES = 1024
    long = messages_line(("user", "x" * 1100), ("assistant", "Hello."))
    path = write(tmp_path / "chat.jsonl", f"{GOOD_MESSAGES}\n{long}\n")
    assert refused(path, "messages").startswith(
        "chat.jsonl:2: a line longer than 1,024 bytes (PSYROOM_IMPORT_MAX_RECORD_BYTES)"
    )

    settings.PSYROOM_IMPORT_MAX_FILE_BYTES = 3000
    path = write(tmp_path / "chat.jsonl", f"{GOOD_MESSAGES}\n" * 40)
    line = 3000 // (len(GOOD_MESSAGES) + 1) + 1  # the line that takes the file past the limit
    assert refused(path, "messages").startswith(
        f"chat.jsonl:{line}: this file goes on past 3,000 bytes (unpacked), its limit (PSYROOM_IMPORT_MAX_FILE_BYTES)"
    )

    settings.PSYROOM_IMPORT_MAX_FILE_BYTES = 2**30
    (tmp_path / "cases").mkdir()
    write(tmp_path / "cases" / "case_1.txt", "来访者：你好。\n\n心理咨询师：" + "嗯。" * 200 + "\n")
    assert refused(tmp_path / "cases", "cpsycoun").startswith(
        "case_1.txt: more than 1,024 bytes, the most a file read whole may hold (PSYROOM_IMPORT_MAX_RECORD_BYTES)"
    )


def tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        folder = tarfile.TarInfo("Data")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_a_cpsycound_tar_gz_imports_as_the_shipped_one_is_laid_out(tmp_path):
    # Like cpsycound-dialogues.tar.gz: a Data/ folder of case_N.txt files, in no particular order.
    cases = {f"Data/{p.name}": p.read_bytes() for p in sorted(CPSYCOUN.glob("case_*.txt"), reverse=True)}
    archive = tar_gz(tmp_path / "cpsycound-dialogues.tar.gz", cases)

    output = run_import(archive, "cpsycoun")

    assert output == f"Imported 3 dialogues (0 duplicates skipped) from {archive}"
    assert [c.source for c in Candidate.objects.order_by("id")] == [
        {**CPSYCOUN_SOURCE, "file": name, "archive": "cpsycound-dialogues.tar.gz", "record": 1} for name in cases
    ]
    folder = {c.content["turns"][0]["text"] for c in Candidate.objects.all()}
    assert run_import(archive, "cpsycoun") == f"Imported 0 dialogues (3 duplicates skipped) from {archive}"
    assert len(folder) == 3


def test_a_zip_of_jsonl_imports(taxonomy, tmp_path):
    path = tmp_path / "chat.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(MESSAGES, "export/messages.jsonl")
        archive.writestr("__MACOSX/export/._messages.jsonl", b"\x00\x05\x16\x07")

    assert run_import(path, "messages") == f"Imported 3 dialogues (0 duplicates skipped) from {path}"
    assert Candidate.objects.first().source["archive"] == "chat.zip"


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_an_archive_bomb_is_refused_at_the_limit_and_nothing_is_imported(tmp_path, settings, kind):
    settings.PSYROOM_IMPORT_MAX_TOTAL_BYTES = 1 << 20
    data = (GOOD_MESSAGES + "\n").encode() * ((16 << 20) // (len(GOOD_MESSAGES) + 1))  # 16 MiB
    if kind == "zip":
        path = tmp_path / "bomb.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("chat.jsonl", data)
    else:
        path = tar_gz(tmp_path / "bomb.tar.gz", {"chat.jsonl": data})
    assert path.stat().st_size < 200_000
    del data

    message = refused(path, "messages")

    assert message.startswith(f"bomb.{kind}/chat.jsonl:")
    assert "this import goes on past 1,048,576 bytes (unpacked), its limit (PSYROOM_IMPORT_MAX_TOTAL_BYTES)" in message
    # Refused at the line where the limit fell, about 1 MiB in: the rest was never unpacked.
    assert int(message.split(":")[1]) < 1.1 * (1 << 20) / len(GOOD_MESSAGES)


def test_an_archive_member_path_is_not_trusted(tmp_path):
    path = tmp_path / "chat.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(MESSAGES, "../../etc/messages.jsonl")

    assert refused(path, "messages").startswith(
        "chat.zip: member '../../etc/messages.jsonl': an absolute path or a '..' (archive member paths are not trusted)"
    )


# --- Ids ---------------------------------------------------------------------------------------------------------


def test_one_id_on_two_different_dialogues_is_refused_naming_both_lines(tmp_path):
    first = messages_line(("user", "I feel lonely."), ("assistant", "When?"), id="c-17")
    other = messages_line(("user", "I feel angry."), ("assistant", "At whom?"), id="c-17")
    path = write(tmp_path / "chat.jsonl", f"{first}\n{GOOD_MESSAGES}\n\n{other}\n")

    assert refused(path, "messages").startswith(
        "chat.jsonl:4: the same id as chat.jsonl:1, with different content (an id names one record in an import)"
    )


def test_one_id_on_the_same_dialogue_is_a_repeat_and_ids_are_kept(tmp_path):
    line = messages_line(("user", "I feel lonely."), ("assistant", "When?"), id=17)
    path = write(tmp_path / "chat.jsonl", f"{line}\n{line}\n{GOOD_MESSAGES}\n")

    assert run_import(path, "messages") == f"Imported 2 dialogues (1 duplicates skipped) from {path}"
    assert [c.source.get("id") for c in Candidate.objects.order_by("id")] == [17, None]


@pytest.mark.parametrize("value", [True, "", 1.5, {"a": 1}])
def test_an_id_must_be_text_or_a_whole_number(tmp_path, value):
    path = write(tmp_path / "chat.jsonl", messages_line(("user", "Hi."), ("assistant", "Hello."), id=value))

    assert refused(path, "messages").startswith("chat.jsonl:1: id must be non-empty text or a whole number")


def test_psyroom_records_with_one_id_and_different_content_are_refused(tmp_path):
    records = [
        {"id": "a", "conversation": [GOOD_PAIR]},
        {"id": "a", "conversation": [{"input": "我睡不着。", "output": "多久了？"}]},
    ]
    path = write(tmp_path / "example.json", json.dumps(records, ensure_ascii=False))

    assert refused(path, "psyroom").startswith("example.json: record 1: the same id as example.json: record 0")


def test_two_cpsycoun_case_files_of_one_name_and_different_content_are_refused(tmp_path):
    shutil.copy(CPSYCOUN / "case_2.txt", write_dir(tmp_path / "a") / "case_2.txt")
    shutil.copy(CPSYCOUN / "case_10.txt", write_dir(tmp_path / "b") / "case_2.txt")

    assert refused(tmp_path, "cpsycoun").startswith("b/case_2.txt:1: the same id as a/case_2.txt:1")


def write_dir(path: Path) -> Path:
    path.mkdir()
    return path


# --- Empty input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "name", "text", "message"),
    [
        ("messages", "chat.jsonl", "", "chat.jsonl: an empty file: no dialogues in it"),
        ("messages", "chat.jsonl", "\n  \n\r\n", "chat.jsonl: an empty file: no dialogues in it"),
        ("psyroom", "example.json", "", "example.json: an empty file (expected a JSON list of records)"),
        ("psyroom", "example.json", " [ ] ", "example.json: an empty list: no records in this file"),
        ("cpsycoun", "case_1.txt", "", "case_1.txt:1: no dialogue turns in this file"),
    ],
)
def test_empty_input_is_refused_in_every_format(tmp_path, fmt, name, text, message):
    assert refused(write(tmp_path / name, text), fmt).startswith(message)


def test_an_empty_file_among_good_ones_is_refused(tmp_path):
    write(tmp_path / "a.jsonl", GOOD_MESSAGES)
    write(tmp_path / "b.jsonl", "")

    assert refused(tmp_path, "messages").startswith("b.jsonl: an empty file")


# --- Batches -----------------------------------------------------------------------------------------------------


def test_batches_skip_duplicates_across_them_and_count_files(tmp_path, monkeypatch):
    monkeypatch.setattr(dialogues, "BATCH_SIZE", 2)
    batches = []
    real_save = candidates_save_rows

    def spy(*, rows, **options):
        saved = real_save(rows=rows, **options)
        batches.append((len(rows), saved))
        return saved

    monkeypatch.setattr(dialogues, "candidates_save_rows", spy)
    lines = [messages_line(("user", f"Line {n}."), ("assistant", "Go on.")) for n in range(5)]
    write(tmp_path / "a.jsonl", "\n".join(lines[:3] + [lines[0]]))
    write(tmp_path / "b.jsonl", "\n".join([lines[1], lines[3], lines[4]]))

    result = dialogues_import(path=tmp_path, format="messages")

    assert result == ImportResult(created=5, duplicates=2, files=2)
    # The repeat of line 0 is in the second batch, line 1's in the third: each is found in the database.
    assert batches == [(2, 2), (2, 1), (2, 1), (1, 1)]
    assert [c.content["turns"][0]["text"] for c in Candidate.objects.order_by("id")] == [f"Line {n}." for n in range(5)]
    assert Revision.objects.filter(number=0).count() == 5


def test_a_failure_in_a_later_batch_keeps_nothing_of_the_earlier_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(dialogues, "BATCH_SIZE", 2)
    real_save = candidates_save_rows
    calls = []

    def fail_on_third(*, rows, **options):
        calls.append(len(rows))
        if len(calls) == 3:
            raise RuntimeError("connection lost")
        return real_save(rows=rows, **options)

    monkeypatch.setattr(dialogues, "candidates_save_rows", fail_on_third)
    lines = [messages_line(("user", f"Line {n}."), ("assistant", "Go on.")) for n in range(6)]

    with pytest.raises(RuntimeError, match="connection lost"):
        dialogues_import(path=write(tmp_path / "chat.jsonl", "\n".join(lines)), format="messages")

    assert calls == [2, 2, 2]
    assert rows() == (set(), set())
    assert not RiskFlag.objects.exists()


def test_a_bad_line_after_many_good_ones_keeps_nothing_of_what_was_saved_before_it(tmp_path, monkeypatch):
    saved = []
    real_save = candidates_save_rows

    def spy(**options):
        saved.append(real_save(**options))
        return saved[-1]

    monkeypatch.setattr(dialogues, "candidates_save_rows", spy)
    monkeypatch.setattr(dialogues, "BATCH_SIZE", 1000)
    lines = [messages_line(("user", f"Line {n}. I want to end it all."), ("assistant", "Go on.")) for n in range(3000)]
    path = write(tmp_path / "chat.jsonl", "\n".join([*lines, '{"messages": "oops"}']))

    assert refused(path, "messages").startswith("chat.jsonl:3001: messages must be a non-empty list")
    assert saved == [1000, 1000, 1000]
    assert rows() == (set(), set())
    assert not RiskFlag.objects.exists()


def test_one_id_on_two_dialogues_found_after_everything_is_saved_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(dialogues, "BATCH_SIZE", 2)
    lines = [messages_line(("user", f"Line {n}."), ("assistant", "Go on."), id=f"c{n}") for n in range(5)]
    lines.append(messages_line(("user", "Something else."), ("assistant", "Go on."), id="c0"))

    message = refused(write(tmp_path / "chat.jsonl", "\n".join(lines)), "messages")

    assert message.startswith("chat.jsonl:6: the same id as chat.jsonl:1, with different content")
    assert rows() == (set(), set())


def test_the_planner_statistics_are_refreshed_at_the_start_and_as_the_import_grows_tenfold(tmp_path, monkeypatch):
    monkeypatch.setattr(dialogues, "BATCH_SIZE", 2)
    refreshed = []
    real_refresh = dialogues._refresh_statistics

    def spy():
        refreshed.append(Candidate.objects.count())
        real_refresh()  # on PostgreSQL an ANALYZE inside the import's transaction; elsewhere nothing

    monkeypatch.setattr(dialogues, "_refresh_statistics", spy)
    lines = [messages_line(("user", f"Line {n}."), ("assistant", "Go on.")) for n in range(45)]

    dialogues_import(path=write(tmp_path / "chat.jsonl", "\n".join(lines)), format="messages")

    assert refreshed == [0, 2, 20]
    assert Candidate.objects.count() == 45


def test_reading_ahead_is_bounded_raises_the_readers_error_here_and_stops_its_thread():
    made = []

    def items():
        for n in range(100):
            made.append(n)
            yield n
            if n == 50:
                raise ImportFormatError("chat.jsonl:51: bad")

    ahead = dialogues._read_ahead(items(), depth=2)
    assert next(ahead) == 0
    time.sleep(0.2)
    assert len(made) <= 4  # the one taken, two queued, one waiting to be
    assert list(islice(ahead, 49)) == list(range(1, 50))
    assert next(ahead) == 50
    with pytest.raises(ImportFormatError, match="chat.jsonl:51: bad"):
        next(ahead)

    endless = dialogues._read_ahead(itertools.count(), depth=2)
    assert next(endless) == 0
    endless.close()
    assert not [t for t in threading.enumerate() if t.name == "import-reader"]


def test_a_database_failure_stops_the_reader_thread(tmp_path, monkeypatch):
    monkeypatch.setattr(dialogues, "BATCH_SIZE", 2)

    def fail(**options):
        raise RuntimeError("connection lost")

    monkeypatch.setattr(dialogues, "candidates_save_rows", fail)
    lines = [messages_line(("user", f"Line {n}."), ("assistant", "Go on.")) for n in range(50)]

    with pytest.raises(RuntimeError, match="connection lost"):
        dialogues_import(path=write(tmp_path / "chat.jsonl", "\n".join(lines)), format="messages")

    assert not [t for t in threading.enumerate() if t.name == "import-reader"]
    assert rows() == (set(), set())
