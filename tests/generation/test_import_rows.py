"""An import saves rows without model instances (COPY on PostgreSQL): what it saves must be exactly what the ordinary
``candidate_create`` saves for the same records, on SQLite and on PostgreSQL."""

import json
from pathlib import Path

import pytest
from django.db import connection

from generation.importers import dialogues
from generation.importers.dialogues import ImportResult, dialogues_import
from generation.models import Candidate, Revision, RiskFlag, SubEmotion
from generation.services import candidates as candidate_services
from generation.services.candidates import candidate_create, content_hash, content_json

pytestmark = pytest.mark.django_db

# Text that COPY's text format or JSON could get wrong: backslashes (and COPY's own \N and \. markers), tabs, line
# breaks, quotes, control characters, characters outside the BMP, Chinese, and risk that the screen must flag.
HOSTILE = [
    "C:\\Users\\me\\N and \\. and \\\\N",
    "a\ttab, a\nline break, a\r\nCRLF, a \"quote\" and a 'quote'",
    "control \x01\x07\x1b\x7f\u0085 and \u2028 separators",
    "emoji 😔🫠 and 我最近压力很大，晚上总是睡不着。",
    "I want to end it all.\tI have the pills ready.",
    "有时候我觉得不想活了。\\",
]


def records() -> list[dict]:
    lines = []
    for n, text in enumerate(HOSTILE):
        lines.append(
            {
                "id": f"r{n}" if n % 2 else n,
                "messages": [
                    *([{"role": "system", "content": f"Be kind \\ {text}"}] if n % 3 == 0 else []),
                    {"role": "user", "content": text},
                    {"role": "assistant", "content": "Can you tell me more about that?\\"},
                    {"role": "user", "content": "Some nights I don't want to live like this."},
                    {"role": "assistant", "content": text},
                ],
                **({"sub_emotion": "anxiety.1"} if n % 2 else {}),
            }
        )
    lines.append({"messages": [{"role": "user", "content": "plain"}, {"role": "assistant", "content": "Go on."}]})
    return lines


def snapshot() -> list[dict]:
    """Every candidate with its revisions and flags, as the fields a row holds (no keys, no timestamps)."""
    out = []
    for candidate in Candidate.objects.order_by("source_hash"):
        revisions = list(candidate.revisions.order_by("number"))
        out.append(
            {
                "candidate": {
                    field.name: getattr(candidate, field.attname)
                    for field in Candidate._meta.concrete_fields
                    if field.name not in ("id", "created_at", "updated_at")
                },
                "revisions": [
                    {
                        field.name: getattr(revision, field.attname)
                        for field in Revision._meta.concrete_fields
                        if field.name not in ("id", "candidate", "created_at")
                    }
                    for revision in revisions
                ],
                "flags": [
                    {
                        **{
                            field.name: getattr(flag, field.attname)
                            for field in RiskFlag._meta.concrete_fields
                            if field.name not in ("id", "candidate", "revision", "created_at")
                        },
                        "revision": flag.revision.number,
                    }
                    for flag in candidate.flags.order_by("id")
                ],
                "times_set": candidate.created_at is not None and all(r.created_at for r in revisions),
            }
        )
    return out


@pytest.mark.parametrize("screen_process", [False, True], ids=["screened-here", "screened-in-a-process"])
def test_imported_rows_are_what_candidate_create_saves_for_the_same_records(
    taxonomy, tmp_path, monkeypatch, screen_process
):
    if screen_process:
        monkeypatch.setattr(dialogues, "SCREEN_PROCESS_BYTES", 0)
        forked = []
        real_screener = dialogues._screener
        monkeypatch.setattr(dialogues, "_screener", lambda path: forked.append(real_screener(path)) or forked[-1])
        real_screen_in = dialogues._screen_in

        def screen_in(screener, screen, args):
            screened_there.append(len(args[1]))
            return real_screen_in(screener, screen, args)

        monkeypatch.setattr(dialogues, "_screen_in", screen_in)
    screened_there: list[int] = []
    copied = []
    real_copy = candidate_services._copy_rows

    def spy(connection, kind, rows, screened):
        copied.append(len(rows))
        return real_copy(connection, kind, rows, screened)

    monkeypatch.setattr(candidate_services, "_copy_rows", spy)
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=n % 2 == 0) for n, r in enumerate(records())), "utf-8")

    result = dialogues_import(path=path, format="messages")

    assert result == ImportResult(created=len(HOSTILE) + 1, duplicates=0, files=1)
    # PostgreSQL takes the COPY path (what this test is for); elsewhere the rows are built as candidates.
    assert copied == ([len(HOSTILE) + 1] if connection.vendor == "postgresql" else [])
    imported = snapshot()
    # Each dialogue's third turn, and the first and last turns of the two risky texts.
    assert sum(len(c["flags"]) for c in imported) == len(HOSTILE) + 4

    # The same records through the ordinary path.
    RiskFlag.objects.all().delete()
    Candidate.objects.all().delete()
    for candidate in imported:
        fields = candidate["candidate"]
        candidate_create(
            kind=fields["kind"],
            content=fields["content"],
            language=fields["language"],
            sub_emotion=SubEmotion.objects.filter(pk=fields["sub_emotion"]).first(),
            source=fields["source"],
            source_hash=content_hash(fields["content"]),
        )

    assert snapshot() == imported
    if screen_process:
        assert forked and forked[0] is not None
    # On PostgreSQL the new rows were screened in the process (elsewhere candidate_build screens them).
    assert screened_there == ([len(HOSTILE) + 1] if screen_process and connection.vendor == "postgresql" else [])
    for candidate in imported:
        assert candidate["times_set"]
        assert candidate["candidate"]["source_hash"] == content_hash(candidate["candidate"]["content"])
    turns = [c["candidate"]["content"]["turns"] for c in imported]
    assert sorted(t[0]["text"] for t in turns if len(t) == 4) == sorted(HOSTILE)


def test_the_stored_content_is_its_canonical_text_and_hash(taxonomy, tmp_path):
    line = {"messages": [{"role": "user", "content": HOSTILE[0]}, {"role": "assistant", "content": HOSTILE[1]}]}
    path = Path(tmp_path / "one.jsonl")
    path.write_text(json.dumps(line), "utf-8")

    dialogues_import(path=path, format="messages")

    candidate = Candidate.objects.get()
    content = {"turns": [{"role": "client", "text": HOSTILE[0]}, {"role": "counselor", "text": HOSTILE[1].strip()}]}
    assert candidate.content == content == candidate.revisions.get().content
    assert candidate.source_hash == content_hash(content)
    assert content_json(content) == json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def test_a_reimport_of_the_hostile_records_finds_every_one_a_duplicate(taxonomy, tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records()), "utf-8")
    first = dialogues_import(path=path, format="messages")
    counts = (Candidate.objects.count(), Revision.objects.count(), RiskFlag.objects.count())

    again = dialogues_import(path=path, format="messages")

    assert again == ImportResult(created=0, duplicates=first.created, files=1)
    assert (Candidate.objects.count(), Revision.objects.count(), RiskFlag.objects.count()) == counts
