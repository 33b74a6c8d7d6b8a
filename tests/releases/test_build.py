"""Building a release: each format's rows, the gates, dedup, grouped splits, reproducibility, verify, failure."""

import json

import pytest

from annotations.models import AuditEvent, Review
from annotations.services.edits import turn_edit
from annotations.services.rubrics import rubric_get_default
from generation.models import Candidate, ClientProfile, Revision, Scenario, SubEmotion
from generation.services import candidates as gen_candidates
from releases import formats, services
from releases.models import Release
from tests import factories

from .helpers import all_rows, make_question, rows

pytestmark = pytest.mark.django_db

SFT = {"formats": ["sft"], "splits": {"train": 1, "validation": 0, "test": 0, "seed": 1}}


def approved(prefix: str = "", **kwargs) -> Candidate:
    return factories.make_candidate(content=factories.dialogue_content(prefix=prefix), status="approved", **kwargs)


def review(candidate, reviewer, *, decision="approve", score=4) -> Review:
    rubric = rubric_get_default(kind="dialogue")
    return Review.objects.create(
        candidate=candidate,
        revision=candidate.approved_revision,
        reviewer=reviewer,
        rubric=rubric,
        scores={c["key"]: score for c in rubric.criteria},
        decision=decision,
    )


def ids(rows_: list[dict]) -> list[int]:
    return [r["metadata"]["candidate_id"] for r in rows_]


def test_sft_and_sharegpt_rows(taxonomy, build, counselor):
    one = approved("One. ")
    review(one, counselor)
    release = build({"formats": ["sft", "sharegpt"], "splits": SFT["splits"]})
    assert release.status == Release.Status.READY, release.error
    [sft] = rows(release, "sft/train.jsonl")
    assert sft["messages"][0]["role"] == "system"
    assert [m["role"] for m in sft["messages"][1:]] == ["user", "assistant", "user", "assistant"]
    assert sft["messages"][1]["content"] == "One. Client turn 0: I have been feeling tense before exams."
    assert sft["metadata"] == {
        "candidate_id": one.pk, "sub_emotion": "anxiety.1", "language": "en", "revision": 0,
        "reviewers": [counselor.pk], "source": None,
    }  # fmt: skip
    [share] = rows(release, "sharegpt/train.jsonl")
    assert [c["from"] for c in share["conversations"]] == ["system", "human", "gpt", "human", "gpt"]
    assert share["conversations"][2]["value"] == sft["messages"][2]["content"]
    assert not (services.release_dir(release) / "sft" / "validation.jsonl").exists()  # a split of ratio 0
    manifest = json.loads((services.release_dir(release) / "manifest.json").read_text())
    assert manifest == release.manifest
    assert manifest["counts"]["train"] == {"dialogue": {"anxiety.1": 1}}
    assert manifest["reviewers"] == 1
    assert manifest["software"]
    assert {f["name"]: f["rows"] for f in manifest["files"]} == {
        "README.md": 0, "sft/train.jsonl": 1, "sft/train.parquet": 1, "sharegpt/train.jsonl": 1,
        "sharegpt/train.parquet": 1,
    }  # fmt: skip
    assert AuditEvent.objects.filter(action="release.build", data__release=release.pk).exists()


def test_only_approved_candidates_without_open_risk_ship(taxonomy, build, senior):
    kept = approved("Kept. ")
    factories.make_candidate(content=factories.dialogue_content(prefix="Waiting. "))
    factories.make_candidate(content=factories.dialogue_content(prefix="Rejected. "), status="rejected")
    content = factories.dialogue_content(prefix="Flagged. ")
    content["turns"][0]["text"] = "Sometimes I think everyone would be better off dead without me."
    flagged = factories.make_candidate(content=content, status="approved")
    assert flagged.open_risk_flags().exists()
    release = build(SFT)
    assert ids(rows(release, "sft/train.jsonl")) == [kept.pk]

    gen_candidates.candidate_sign_off_risk(
        candidate=flagged, clinician=senior, flag_ids=list(flagged.open_risk_flags().values_list("pk", flat=True)),
        base_version=flagged.version, note="The counselor asks about safety.",
    )  # fmt: skip
    release = build(SFT)
    assert ids(rows(release, "sft/train.jsonl")) == [kept.pk, flagged.pk]


def test_the_approved_revision_ships_never_a_later_edit(taxonomy, build, counselor):
    candidate = approved("Approved. ")
    turn_edit(
        candidate=candidate, editor=counselor, index=1, text="A later, unreviewed edit.", base_version=1,
        category="wording",
    )  # fmt: skip
    candidate.refresh_from_db()
    assert candidate.status == Candidate.Status.IN_REVIEW  # the edit sent it back to review: it does not ship
    with pytest.raises(Exception, match="selects nothing"):
        build(SFT)
    # Even were it marked approved again without a new approval, the revision people approved is what ships.
    Candidate.objects.filter(pk=candidate.pk).update(status=Candidate.Status.APPROVED)
    [row] = rows(build(SFT), "sft/train.jsonl")
    assert row["metadata"]["revision"] == 0
    texts = [m["content"] for m in row["messages"]]
    assert "A later, unreviewed edit." not in texts
    assert "Approved. Counselor turn 0: That sounds hard. What helps you?" in texts


def test_dpo_pairs_come_from_counselor_edits(taxonomy, build, counselor):
    candidate = factories.make_candidate(content=factories.dialogue_content(n_exchanges=3))
    turn_edit(
        candidate=candidate, editor=counselor, index=3, base_version=1, category="clinical",
        text="It sounds like exams bring a lot of pressure. Which moments feel the hardest?",
    )  # fmt: skip
    candidate.refresh_from_db()
    turn_edit(  # a near-identical change: no pair
        candidate=candidate, editor=counselor, index=5, base_version=candidate.version, category="wording",
        text="Counselor turn 2: That sounds hard. What helps you ?",
    )  # fmt: skip
    candidate.refresh_from_db()
    turn_edit(  # a client turn: no pair
        candidate=candidate, editor=counselor, index=0, base_version=candidate.version, category="wording",
        text="Client turn 0: I feel tense before every exam.",
    )  # fmt: skip
    factories.set_status(candidate, "approved")
    approved("Unedited. ")  # revision 0 approved: nothing to prefer
    release = build({**SFT, "formats": ["dpo", "sft"]})
    [pair] = rows(release, "dpo/train.jsonl")
    better = "It sounds like exams bring a lot of pressure. Which moments feel the hardest?"
    assert pair["chosen"] == [{"role": "assistant", "content": better}]
    assert pair["rejected"] == [{"role": "assistant", "content": "Counselor turn 1: That sounds hard. What helps you?"}]
    # The prompt: the system message, then the approved dialogue up to the edited turn (the client's edit included).
    assert [m["role"] for m in pair["prompt"]] == ["system", "user", "assistant", "user"]
    assert pair["prompt"][1]["content"] == "Client turn 0: I feel tense before every exam."
    assert pair["metadata"]["candidate_id"] == candidate.pk and pair["metadata"]["turn"] == 3
    assert release.manifest["dropped"] == {"dpo_near_identical": 1}
    assert len(rows(release, "sft/train.jsonl")) == 2


def test_edited_only_and_review_thresholds(taxonomy, build, counselor, other_counselor):
    low, high, edited = approved("Low. "), approved("High. "), factories.make_candidate()
    review(low, counselor, score=2)
    review(high, counselor, score=5)
    review(high, other_counselor, score=4)
    turn_edit(candidate=edited, editor=counselor, index=1, text="Better words.", base_version=1, category="wording")
    factories.set_status(edited, "approved")
    release = build({**SFT, "min_mean": {"empathy": 3.5}})
    assert ids(rows(release, "sft/train.jsonl")) == [high.pk]
    assert release.manifest["dropped"] == {"below_min_mean": 2}
    assert release.manifest["reviewers"] == 2
    release = build({**SFT, "min_approvals": 2})
    assert ids(rows(release, "sft/train.jsonl")) == [high.pk]
    release = build({**SFT, "edited_only": True})
    assert ids(rows(release, "sft/train.jsonl")) == [edited.pk]


def test_reviews_of_a_reference_item_count_toward_no_gate(taxonomy, build, counselor, other_counselor):
    high = approved("Ref. ")
    review(high, counselor, score=5)
    tested = review(high, other_counselor, score=5)
    Review.objects.filter(pk=tested.pk).update(gold=True)
    other = approved("Plain. ")
    review(other, counselor, score=5)
    review(other, other_counselor, score=5)
    release = build({**SFT, "min_approvals": 2})
    assert ids(rows(release, "sft/train.jsonl")) == [other.pk]
    assert release.manifest["dropped"] == {"below_min_approvals": 1}
    Review.objects.filter(pk=tested.pk).update(gold=False)
    release = build({**SFT, "min_approvals": 2}, name="again")
    assert ids(rows(release, "sft/train.jsonl")) == [high.pk, other.pk]


def test_exact_duplicates_are_dropped_and_counted(taxonomy, build):
    first = approved("Same. ")
    approved("same.   ")  # the same text after normalization (case, white space)
    other = approved("Other. ")
    release = build(SFT)
    assert ids(rows(release, "sft/train.jsonl")) == [first.pk, other.pk]
    assert release.manifest["dropped"] == {"exact_duplicate": 1}
    release = build({**SFT, "dedup": {"exact": False}})
    assert len(rows(release, "sft/train.jsonl")) == 3


def test_no_group_lies_in_two_splits(taxonomy, build):
    anxiety = SubEmotion.objects.get(key="anxiety.1")
    scenarios = [Scenario.objects.create(sub_emotion=anxiety, title=f"S{i}", description="d") for i in range(6)]
    profiles = [ClientProfile.objects.create(name=f"P{i}") for i in range(4)]
    made = []
    for i in range(60):
        candidate = approved(f"D{i}. ", sub_emotion_key=["anxiety.1", "anger.1"][i % 2])
        if i % 3 == 0:
            Candidate.objects.filter(pk=candidate.pk).update(scenario=scenarios[i % 6])
        elif i % 3 == 1:  # candidate_create takes no profile (generation sets it for courses)
            Candidate.objects.filter(pk=candidate.pk).update(profile=profiles[i % 4])
        made.append(candidate)
    # A regeneration of a scenario's dialogue joins its parent's group, and so the scenario's.
    child = factories.make_candidate(content=factories.dialogue_content(prefix="Child. "), parent=made[1])
    factories.set_status(child, "approved")
    spec = {"formats": ["sft"], "splits": {"train": 0.6, "validation": 0.2, "test": 0.2, "seed": 7}}
    release = build(spec)
    split_of = {}
    for split in ("train", "validation", "test"):
        for row in rows(release, f"sft/{split}.jsonl"):
            split_of[row["metadata"]["candidate_id"]] = split
    assert len(split_of) == 61 and set(split_of.values()) == {"train", "validation", "test"}
    by_id = {c.pk: c for c in Candidate.objects.filter(pk__in=split_of)}
    for key in ("scenario_id", "profile_id"):
        groups: dict = {}
        for pk, split in split_of.items():
            value = getattr(by_id[pk], key)
            if value is not None:
                groups.setdefault(value, set()).add(split)
        assert all(len(s) == 1 for s in groups.values()), (key, groups)
    assert split_of[child.pk] == split_of[made[1].pk]
    # Both sub-emotions are spread over the splits.
    for key in ("anxiety.1", "anger.1"):
        assert all(release.manifest["counts"][s]["dialogue"].get(key) for s in ("train", "validation", "test"))
    # Another seed, another deal.
    other = build({**spec, "splits": {**spec["splits"], "seed": 8}})
    assert other.manifest["files"] != release.manifest["files"]


def test_the_same_spec_on_the_same_data_gives_the_same_bytes(taxonomy, build, counselor):
    for i in range(12):
        candidate = approved(f"R{i}. ", sub_emotion_key=["anxiety.1", "anger.1"][i % 2])
        review(candidate, counselor)
    make_question(answer="A", given=("B", "C"), status="approved", question="Hard one")
    spec = {
        "formats": ["sft", "sharegpt", "dpo", "grpo"],
        "splits": {"train": 0.5, "validation": 0.25, "test": 0.25, "seed": 3},
    }
    one, two = build(spec), build(spec)
    assert one.files == two.files
    for entry in one.files:
        a = (services.release_dir(one) / entry["name"]).read_bytes()
        assert a == (services.release_dir(two) / entry["name"]).read_bytes()
    assert services.release_verify(release=one) == []


def test_verify_names_a_tampered_file(taxonomy, build):
    approved()
    release = build(SFT)
    path = services.release_dir(release) / "sft" / "train.jsonl"
    path.write_text(path.read_text().replace("tense", "calm"))
    [problem] = services.release_verify(release=release)
    assert problem.startswith("sft/train.jsonl: sha256")
    path.unlink()
    assert services.release_verify(release=release) == ["sft/train.jsonl: missing"]


def test_a_failed_build_leaves_nothing(taxonomy, build, monkeypatch, releases_dir):
    approved()
    written = []

    def broken(self, row):
        written.append(row)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(formats.JsonlWriter, "write", broken)
    release = build(SFT)
    assert written
    assert release.status == Release.Status.FAILED
    assert "No space left on device" in release.error
    assert release.files == [] and release.manifest == {}
    assert list(releases_dir.iterdir()) == []  # no release folder, no temporary one
    assert AuditEvent.objects.filter(action="release.build_failed").exists()
    with pytest.raises(Exception, match="only a queued one"):
        services.release_build(release=release)


def test_grpo_and_reasoning_sft_from_questions(taxonomy, build):
    hard = make_question(answer="A", given=("B", "C"), status="approved", question="Hard one")
    easy = make_question(answer="B", given=("B", "B"), status="approved", question="Easy one")
    none = make_question(answer="B", given=("B", "C"), status="approved", question="No correct rationale")
    Revision.objects.filter(candidate=none).update(content={**none.content, "answers": [], "difficulty": "easy"})
    release = build({"formats": ["grpo", "reasoning-sft"], "splits": SFT["splits"]})
    [grpo] = rows(release, "grpo/train.jsonl")
    assert grpo["answer"] == "A" and grpo["metadata"]["candidate_id"] == hard.pk
    assert "Hard one" in grpo["prompt"][1]["content"]
    [sft] = rows(release, "reasoning-sft/train.jsonl")
    assert sft["metadata"]["candidate_id"] == easy.pk
    assert sft["messages"][-1]["content"] == "<think>\nReasoning of model-a.\n</think>\nAnswer: B"
    assert release.manifest["sources"] == {
        "CPsyExam": {"attribution": "CPsyExam, CC0", "candidates": 2, "license": "CC0 1.0"}
    }
    assert release.manifest["dropped"] == {"question_no_correct_rationale": 1}
    # Only grpo: the easy questions are not in this release.
    release = build({"formats": ["grpo"], "splits": SFT["splits"]})
    assert ids(all_rows(release, "grpo")) == [hard.pk]
    assert release.manifest["dropped"] == {"question_not_in_formats": 2}


def test_the_task_builds_a_queued_release(taxonomy, curator, django_capture_on_commit_callbacks, monkeypatch):
    from releases import tasks

    approved()
    queued = []
    monkeypatch.setattr(services, "_enqueue", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        release = services.release_create(name="queued", version="1", spec=SFT, user=curator)
    assert queued == [release.pk]
    assert tasks.release_build_task(release.pk) == {"release": release.pk, "status": "ready"}
    assert tasks.release_build_task(release.pk) is None  # delivered again: nothing to do


def test_a_build_whose_worker_died_is_failed_and_its_folder_removed(taxonomy, build, curator, releases_dir, settings):
    from datetime import timedelta

    from django.utils import timezone

    approved()
    dead = services.release_create(name="dead", version="1", spec=SFT, user=curator, queue=False)
    Release.objects.filter(pk=dead.pk).update(
        status=Release.Status.BUILDING,
        started_at=timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 1),
    )
    live = services.release_create(name="live", version="1", spec=SFT, user=curator, queue=False)
    Release.objects.filter(pk=live.pk).update(status=Release.Status.BUILDING, started_at=timezone.now())
    releases_dir.mkdir(parents=True)
    (releases_dir / f".tmp-{dead.pk}-abc").mkdir()
    (releases_dir / f".tmp-{live.pk}-def").mkdir()
    assert services.releases_fail_stale() == [dead.pk]
    dead.refresh_from_db()
    assert dead.status == Release.Status.FAILED and "worker stopped" in dead.error
    assert [p.name for p in releases_dir.iterdir()] == [f".tmp-{live.pk}-def"]
