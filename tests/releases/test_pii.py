"""The PII detectors on their own: real-looking identifiers are found, dates, scores and case numbers are not."""

import pytest

from releases import pii


def with_check(first17: str) -> str:
    total = sum(int(d) * w for d, w in zip(first17, pii.ID_WEIGHTS, strict=True))
    return first17 + pii.ID_CHECK[total % 11]


VALID_ID = with_check("11010519491231002")  # ends in X
WRONG_ID = VALID_ID[:-1] + "5"


def found(text: str, detectors=tuple(pii.DETECTORS)) -> list[tuple[str, str]]:
    return [(h.detector, text[h.start : h.end]) for h in pii.scan(text, detectors)]


@pytest.mark.parametrize(
    ("text", "hits"),
    [
        ("请打 +86 138 0013 8000 找我", [("phone", "+86 138 0013 8000")]),
        ("我的电话是13800138000。", [("phone", "13800138000")]),
        ("Call me at (415) 555-2671 tonight.", [("phone", "(415) 555-2671")]),
        ("Write to li.wei@example.com.", [("email", "li.wei@example.com")]),
        ("邮箱 zhang_san+work@mail.example.cn 谢谢", [("email", "zhang_san+work@mail.example.cn")]),
        (f"身份证号 {VALID_ID} 已核对", [("cn_id", VALID_ID)]),
        (f"ID {VALID_ID.lower()}", [("cn_id", VALID_ID.lower())]),
        ("See https://example.org/help?id=3.", [("url", "https://example.org/help?id=3")]),
        ("见 www.example.com/a，好吗", [("url", "www.example.com/a")]),
        (
            f"Mail a@b.io or call +1 415 555 2671, ID {VALID_ID}",
            [("email", "a@b.io"), ("phone", "+1 415 555 2671"), ("cn_id", VALID_ID)],
        ),
    ],
)
def test_hits(text, hits):
    assert found(text) == hits


@pytest.mark.parametrize(
    "text",
    [
        f"A wrong check digit is no ID: {WRONG_ID}",
        "110105194913310029 has no such date",
        "On 2026-01-15 she scored 4/5; by 12/03/2026 it was 3.5 of 5.",
        "Case no. 2023-118, file 20260115, session 12 of 16.",
        "PHQ-9 score 14, GAD-7 score 11, 1234567",
        "我在2026年1月15日考了98分。",
        "",
    ],
)
def test_no_hits(text):
    assert found(text) == []


def test_only_the_chosen_detectors_run():
    text = "li@example.com +86 138 0013 8000"
    assert found(text, ["email"]) == [("email", "li@example.com")]


def test_redact_and_mask():
    text = f"Call +86 138 0013 8000 or li@example.com, ID {VALID_ID}, https://x.example.org"
    assert pii.redact(text, pii.scan(text)) == "Call [PHONE] or [EMAIL], ID [ID], [URL]"
    assert pii.mask("+86 138 0013 8000") == "+8*************00"
    assert pii.mask("a@b.io") == "******"
    assert pii.cn_id_valid(VALID_ID) and not pii.cn_id_valid(WRONG_ID)


def test_scan_content_names_where_and_leaves_the_original_alone():
    content = {"turns": [{"role": "client", "text": "My number is 13800138000."}, {"role": "counselor", "text": "Ok."}]}
    hits, redacted = pii.scan_content("dialogue", content, list(pii.DETECTORS))
    assert [(where, hit.detector, text) for where, hit, text in hits] == [("turns[0].text", "phone", "13800138000")]
    assert redacted["turns"][0]["text"] == "My number is [PHONE]."
    assert content["turns"][0]["text"] == "My number is 13800138000."
    question = {"question": "Q?", "options": {"A": "see www.example.com"}, "answers": [{"rationale": "a@b.io"}]}
    hits, redacted = pii.scan_content("question", question, list(pii.DETECTORS))
    assert [where for where, _, _ in hits] == ["options.A", "answers[0].rationale"]
    assert redacted["options"]["A"] == "see [URL]" and redacted["answers"][0]["rationale"] == "[EMAIL]"


# --- In a build --------------------------------------------------------------------------------------------------

SFT = {"formats": ["sft", "dpo"], "splits": {"train": 1, "validation": 0, "test": 0, "seed": 1}}


def leaky(counselor):
    """An approved dialogue with a phone number and an ID, and a counselor edit whose model text had an e-mail."""
    from annotations.services.edits import turn_edit
    from tests import factories

    content = factories.dialogue_content(prefix="Leaky. ")
    content["turns"][0]["text"] = f"My phone is +86 138 0013 8000 and my ID {VALID_ID}."
    content["turns"][1]["text"] = "Write to me at help@clinic.example.com instead."
    content["turns"][2]["text"] = "I work at www.example-office.com as a clerk."
    candidate = factories.make_candidate(content=content)
    turn_edit(
        candidate=candidate, editor=counselor, index=1, base_version=1, category="safety",
        text="Let us keep contact details out of our sessions. What brings you here today?",
    )  # fmt: skip
    candidate.refresh_from_db()
    turn_edit(  # a client turn's model text is never written (a pair's prompt is the approved text): not a hit
        candidate=candidate, editor=counselor, index=2, base_version=candidate.version, category="wording",
        text="I would rather not say where I work.",
    )  # fmt: skip
    return factories.set_status(candidate, "approved")


@pytest.mark.django_db
def test_a_blocking_build_fails_with_the_hits_masked_and_writes_nothing(taxonomy, build, counselor, releases_dir):
    from releases.models import Release

    candidate = leaky(counselor)
    release = build(SFT)
    assert release.status == Release.Status.FAILED
    assert "PII scan found 3 hit(s)" in release.error
    assert release.pii_hits == [
        {"candidate": candidate.pk, "where": "turns[0].text", "detector": "phone", "match": "+8*************00"},
        {"candidate": candidate.pk, "where": "turns[0].text", "detector": "cn_id", "match": "11**************2X"},
        # The model's text of the edited turn is the pair's rejected side: written, so scanned.
        {
            "candidate": candidate.pk,
            "where": "revision 0 turns[1].text",
            "detector": "email",
            "match": "he" + "*" * 19 + "om",
        },
    ]
    assert "0013" not in str(release.pii_hits) and VALID_ID not in str(release.pii_hits)
    assert release.files == [] and release.manifest == {}
    assert list(releases_dir.iterdir()) == []


@pytest.mark.django_db
def test_a_redacting_build_writes_placeholders_and_lists_every_hit(taxonomy, build, counselor):
    import pyarrow.parquet as pq

    from releases import services

    from .helpers import rows

    candidate = leaky(counselor)
    release = build({**SFT, "pii": {"action": "redact"}})
    assert release.status == "ready", release.error
    [sft] = rows(release, "sft/train.jsonl")
    assert sft["messages"][1]["content"] == "My phone is [PHONE] and my ID [ID]."
    [pair] = rows(release, "dpo/train.jsonl")
    assert pair["rejected"] == [{"role": "assistant", "content": "Write to me at [EMAIL] instead."}]
    assert pair["prompt"][1]["content"] == "My phone is [PHONE] and my ID [ID]."
    assert release.manifest["pii"]["hits"] == [
        {"candidate": candidate.pk, "where": "turns[0].text", "detector": "phone"},
        {"candidate": candidate.pk, "where": "turns[0].text", "detector": "cn_id"},
        {"candidate": candidate.pk, "where": "revision 0 turns[1].text", "detector": "email"},
    ]
    folder = services.release_dir(release)
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"13800138000" not in data and b"0013 8000" not in data and VALID_ID.encode() not in data
            assert b"help@clinic" not in data
    table = pq.read_table(folder / "sft" / "train.parquet")
    assert table.column("messages")[0].as_py()[1]["content"] == "My phone is [PHONE] and my ID [ID]."


@pytest.mark.django_db
def test_detectors_left_out_of_the_spec_do_not_block(taxonomy, build, counselor):
    leaky(counselor)
    release = build({**SFT, "pii": {"action": "block", "detectors": ["url"]}})
    assert release.status == "ready", release.error
