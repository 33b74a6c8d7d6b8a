"""Parquet beside every JSONL file, near-duplicate removal, and the dataset card."""

import json

import pyarrow.parquet as pq
import pytest
import yaml

from generation.models import Candidate
from releases import formats, services
from releases.models import Release
from tests import factories

from .helpers import make_question, rows

pytestmark = pytest.mark.django_db

SPLITS = {"train": 0.5, "validation": 0.25, "test": 0.25, "seed": 3}


def dialogue(words: str, **kwargs) -> Candidate:
    """An approved dialogue whose text is its own (``words`` in every turn)."""
    turns = []
    for i in range(3):
        turns.append({"role": "client", "text": f"{words} I keep thinking about it, part {i}."})
        turns.append({"role": "counselor", "text": f"Tell me more about {words.lower()} ({i})."})
    return factories.make_candidate(content={"turns": turns}, status="approved", **kwargs)


def parquet_rows(release, name: str) -> list[dict]:
    table = pq.read_table(services.release_dir(release) / name)
    out = []
    for row in table.to_pylist():
        row["metadata"] = json.loads(row["metadata"])
        if "answer" in row and row["answer"].startswith(("[", "{")):
            row["answer"] = json.loads(row["answer"])
        out.append(row)
    return out


def test_parquet_holds_the_jsonl_rows_in_row_groups(taxonomy, build, counselor, monkeypatch):
    from annotations.services.edits import turn_edit

    monkeypatch.setattr(formats, "ROW_GROUP", 3)  # several row groups from a few rows
    for i in range(14):
        dialogue(f"Exams worry number {i}", sub_emotion_key=["anxiety.1", "anger.1"][i % 2])
    edited = dialogue("Edited one")
    turn_edit(candidate=edited, editor=counselor, index=1, text="What would help right now?", base_version=1,
              category="clinical")  # fmt: skip
    factories.set_status(edited, "approved")
    make_question(answer="A", given=("B", "C"), status="approved", question="Hard one")
    make_question(answer="B", given=("B", "B"), status="approved", question="Easy one")
    spec = {"formats": ["sft", "sharegpt", "dpo", "grpo", "reasoning-sft"], "splits": SPLITS}
    release = build(spec)
    assert release.status == Release.Status.READY, release.error
    jsonl = [f for f in release.files if f["name"].endswith(".jsonl")]
    assert jsonl
    for entry in jsonl:
        name = entry["name"].removesuffix(".jsonl") + ".parquet"
        [parquet] = [f for f in release.files if f["name"] == name]
        assert parquet["rows"] == entry["rows"]
        assert parquet_rows(release, name) == rows(release, entry["name"]), name
    big = pq.ParquetFile(services.release_dir(release) / "sft" / "train.parquet")
    assert big.metadata.num_rows > 3 and big.metadata.num_row_groups == -(-big.metadata.num_rows // 3)
    assert services.release_verify(release=release) == []
    # Twice: the same bytes, Parquet and the card included.
    again = build(spec)
    assert again.files == release.files
    assert {f["name"] for f in again.files} >= {"README.md", "sft/train.parquet", "dpo/train.parquet"}
    # Off when the spec says so.
    plain = build({**spec, "parquet": False})
    assert not [f for f in plain.files if f["name"].endswith(".parquet")]


def test_a_failed_parquet_write_leaves_nothing(taxonomy, build, monkeypatch, releases_dir):
    dialogue("Anything")

    def broken(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(formats.ParquetWriter, "_flush", broken)
    release = build({"formats": ["sft"], "splits": SPLITS})
    assert release.status == Release.Status.FAILED and "No space left" in release.error
    assert list(releases_dir.iterdir()) == []


def test_near_duplicates_are_dropped_at_the_threshold_and_kept_when_off(taxonomy, build):
    first = dialogue("My exams make me anxious every single week")
    near = dialogue("My exams make me nervous every single week")  # one word changed
    other = dialogue("The argument with my brother still hurts")
    copy = dialogue("My exams make me anxious every single week")  # an exact copy
    spec = {"formats": ["sft"], "splits": {"train": 1, "seed": 0}, "dedup": {"exact": True, "near": 0.8}}
    release = build(spec)
    kept = [r["metadata"]["candidate_id"] for r in rows(release, "sft/train.jsonl")]
    assert kept == [first.pk, other.pk]
    assert release.manifest["dropped"] == {"exact_duplicate": 1, "near_duplicate": 1}
    assert release.manifest["duplicates"] == [
        {"id": near.pk, "of": first.pk, "why": "near"},
        {"id": copy.pk, "of": first.pk, "why": "exact"},
    ]
    off = build({**spec, "dedup": {"exact": True, "near": None}})
    assert [r["metadata"]["candidate_id"] for r in rows(off, "sft/train.jsonl")] == [first.pk, near.pk, other.pk]
    # Across splits too: dedup runs before the split, so a near-copy never lands in test beside its original.
    split = build({**spec, "splits": SPLITS})
    assert split.manifest["candidates"] == 2


def test_the_card_has_a_hub_header_and_a_datasheet(taxonomy, build, counselor):
    dialogue("Exams again", language="zh")
    make_question(answer="A", given=("B", "C"), status="approved", question="Hard one")
    release = build({"formats": ["sft", "grpo"], "splits": SPLITS, "pii": {"action": "redact"}}, name="psy-mix")
    text = (services.release_dir(release) / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    head = yaml.safe_load(text.split("---\n")[1])
    assert head["license"] == ["cc0-1.0", "other"]  # CPsyExam's licence, and generated data without one
    assert "generated: no licence recorded" in head["license_details"]
    assert head["language"] == ["zh"]
    assert head["task_categories"] == ["question-answering", "text-generation"]
    assert head["size_categories"] == ["n<1K"]
    configs = {c["config_name"]: c["data_files"] for c in head["configs"]}
    assert set(configs) == {"sft", "grpo"}
    files = {f["name"] for f in release.files}
    for data_files in configs.values():
        assert data_files and all(d["path"] in files and d["path"].endswith(".parquet") for d in data_files)
    for section in ("## Motivation", "## Composition", "## Collection", "## Review process", "## Risk handling",
                    "## Personal data", "## Known limits"):  # fmt: skip
        assert section in text
    assert "| train | dialogue |" in text or "| validation | dialogue |" in text or "| test | dialogue |" in text
    assert "CPsyExam" in text and "redacts" in text
    assert "README.md" in {f["name"] for f in release.manifest["files"]}
    assert counselor.username not in text


def test_the_web_process_does_not_load_pyarrow_or_scipy():
    """Pages and the API import releases; only a build writes Parquet and finds near-duplicates (pyarrow and
    datasketch's scipy cost about 100 MB in every process that imports them)."""
    import os
    import subprocess
    import sys

    from django.conf import settings

    code = (
        "import sys, django; django.setup(); import releases.views, releases.api, releases.services; "
        "print(sorted(m for m in ('pyarrow', 'scipy', 'datasketch') if m in sys.modules))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "psyroom_admin.settings", "SECRET_KEY": "x"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=settings.BASE_DIR, env=env, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_near_duplicates_on_their_own_chinese_included():
    from releases.dedup import NearDuplicates

    base = "我最近压力很大，晚上总是睡不着，工作上的事情让我很焦虑，每天都提心吊胆，觉得自己什么都做不好。" * 3
    finder = NearDuplicates(0.8)
    assert finder.offer(5, base) is None
    assert finder.offer(6, base.replace("焦虑", "紧张", 1)) == 5  # one word changed
    assert finder.offer(7, "父母总是拿我和别人比较，我和男朋友也总是吵架，不知道该怎么办才好。" * 3) is None
    assert finder.offer(8, base) == 5  # a copy of a kept item names the first, not a dropped one
    again = NearDuplicates(0.8)
    assert [again.offer(i, t) for i, t in enumerate([base, base + "。"])] == [None, 0]
