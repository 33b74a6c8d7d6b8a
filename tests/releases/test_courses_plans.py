"""The ``courses`` (MusPsy) and ``plans`` (PsyRoom B) formats, from real course and plan candidates."""

import json
from pathlib import Path

import pytest

from annotations.services.courses import session_memory_edit
from generation.importers.courses import course_import_muspsy
from generation.models import Candidate, CandidateKind
from generation.selectors import course_sessions
from generation.services.candidates import candidate_create
from releases import courses_plans, services
from releases.models import Release, ReleaseItem
from tests import factories

from .helpers import all_rows, rows

pytestmark = pytest.mark.django_db

MUSPSY = Path(__file__).resolve().parent.parent / "fixtures" / "muspsy"
ALL_TRAIN = {"train": 1, "validation": 0, "test": 0, "seed": 0}
PLAN = {
    "case_formulation": "The client pressures herself before exams; perfectionism keeps it going.",
    "goals": ["Reduce exam anxiety", "Sleep before exams"],
    "interventions": [{"technique": "Cognitive restructuring", "rationale": "Her beliefs drive it."}],
    "homework": ["Thought record"],
    "session_schedule": ["Session 1: assessment"],
    "risk_assessment": {"level": "low", "rationale": "No thoughts of harm."},
    "safety_plan": ["Call a friend"],
    "referral_criteria": ["Panic attacks"],
}
NEW_MEMORY = {
    "emotion_cognitive": "Calmer; fear of death still present.",
    "observations": "Opens up about his friend's death.",
    "assignments": "Talk to one resident in the support group.",
    "session_goal": "Reduce death anxiety.",
    "summary": "We talked about loss and support. He will join the group.",
}


def import_course(name: str = "1000") -> Candidate:
    return course_import_muspsy(
        dialogues=MUSPSY / "dialogues_1000.txt",
        memories=MUSPSY / "memories_1000.txt",
        cards=MUSPSY / "usercards_1000.txt",
    ).course


def approve(candidate: Candidate) -> Candidate:
    return factories.set_status(candidate, Candidate.Status.APPROVED)


@pytest.fixture
def course(taxonomy, counselor):
    """The imported MusPsy course (6 sessions), approved with its sessions; session 1's memory edited by a person
    before approval, and session 2 edited again after it (that later edit never ships)."""
    course = approve(import_course())
    sessions = list(course_sessions(course=course))
    first = sessions[0]
    session_memory_edit(session=first, editor=counselor, memory=NEW_MEMORY, base_version=first.version,
                        category="clinical", reason="memory missed the loss")  # fmt: skip
    for session in sessions:
        approve(Candidate.objects.get(pk=session.pk))
    second = Candidate.objects.get(pk=sessions[1].pk)
    later = {**NEW_MEMORY, "summary": "A later edit nobody approved."}
    session_memory_edit(session=second, editor=counselor, memory=later, base_version=second.version,
                        category="clinical")  # fmt: skip
    Candidate.objects.filter(pk=second.pk).update(status=Candidate.Status.APPROVED)  # (an edit sends it to review)
    return course


def test_one_example_per_session_with_the_earlier_approved_memories(course):
    sessions = list(course_sessions(course=course))
    release = services.release_create(
        name="muspsy", version="1", spec={"formats": ["courses"], "splits": ALL_TRAIN}, user=None, queue=False
    )
    assert release.spec["kinds"] == ["session"]
    release = services.release_build(release=release)
    assert release.status == Release.Status.READY, release.error
    examples = rows(release, "courses/train.jsonl")
    assert [e["metadata"]["session"] for e in examples] == [1, 2, 3, 4, 5, 6]
    assert [e["metadata"]["candidate_id"] for e in examples] == [s.pk for s in sessions]
    first, second, third = examples[0], examples[1], examples[2]
    assert "This is the first session with this client." in first["messages"][0]["content"]
    assert "Memory of session" not in first["messages"][0]["content"]
    system = third["messages"][0]["content"]
    # Session 1's memory as people approved it (the edit), session 2's as approved (not the later edit).
    assert "Memory of session 1:\nEmotion and cognitive state: Calmer; fear of death still present." in system
    assert "Summary: We talked about loss and support. He will join the group." in system
    assert "A later edit nobody approved." not in json.dumps(examples, ensure_ascii=False)
    assert system.index("Memory of session 1:") < system.index("Memory of session 2:")
    assert "Memory of session 3" not in system
    assert third["metadata"]["earlier"] == [[1, 1], [2, 0]]
    assert third["metadata"]["course_id"] == course.pk
    profile = course.approved_revision.content["profile"]
    assert f"Background: {profile['background']}" in system
    assert "Name:" not in system and f"{profile['name']}\n" not in system  # the name field is left out
    # The session's own turns follow, as user and assistant, ending on the counselor's words.
    session_3 = sessions[2].approved_revision.content
    assert third["messages"][1] == {"role": "user" if session_3["turns"][0]["role"] == "client" else "assistant",
                                    "content": session_3["turns"][0]["text"]}  # fmt: skip
    assert {m["role"] for m in third["messages"][1:]} == {"user", "assistant"}
    assert third["messages"][-1]["role"] == "assistant"
    assert second["metadata"]["revision"] == 0 and first["metadata"]["revision"] == 1
    assert set(ReleaseItem.objects.filter(release=release).values_list("format", "rows")) == {("courses", 1)}
    # Parquet twin with the same rows.
    import pyarrow.parquet as pq

    table = pq.read_table(services.release_dir(release) / "courses" / "train.parquet")
    assert table.column_names == ["messages", "metadata"]
    assert [json.loads(m)["session"] for m in table.column("metadata").to_pylist()] == [1, 2, 3, 4, 5, 6]
    card = (services.release_dir(release) / "README.md").read_text(encoding="utf-8")
    assert "config_name: courses" in card and "path: courses/train.parquet" in card and "license: mit" in card
    assert "the earlier sessions' approved memories" in card
    assert release.manifest["sources"]["MusPsy"]["candidates"] == 6


def test_a_session_ships_only_when_its_course_and_the_earlier_sessions_are_approved(course):
    sessions = list(course_sessions(course=course))
    Candidate.objects.filter(pk=sessions[3].pk).update(status=Candidate.Status.NEEDS_REVISION)
    release = services.release_create(
        name="muspsy", version="1", spec={"formats": ["courses"], "splits": ALL_TRAIN}, user=None, queue=False
    )
    release = services.release_build(release=release)
    # Session 4 is not approved: neither it nor the sessions after it (their memories would skip it).
    assert [e["metadata"]["session"] for e in rows(release, "courses/train.jsonl")] == [1, 2, 3]
    Candidate.objects.filter(pk=course.pk).update(status=Candidate.Status.IN_REVIEW)
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="selects nothing"):
        services.release_create(name="muspsy", version="2", spec={"formats": ["courses"]}, user=None, queue=False)


def test_one_course_lands_in_one_split(taxonomy):
    base = approve(import_course())
    courses = [base]
    # Five more courses of six sessions each, as the importer makes them (sessions are children of their course).
    for n in range(5):
        copy = approve(
            candidate_create(kind=CandidateKind.COURSE, content=base.approved_revision.content, language=base.language)
        )
        for session in course_sessions(course=base):
            content = json.loads(json.dumps(session.content))
            content["turns"][0]["text"] = f"Course {n}. " + content["turns"][0]["text"]
            child = candidate_create(kind=CandidateKind.SESSION, content=content, language=base.language, parent=copy)
            Candidate.objects.filter(pk=child.pk).update(sequence=session.sequence)
            approve(child)
        courses.append(copy)
    for session in Candidate.objects.filter(kind=CandidateKind.SESSION, parent=base):
        approve(session)
    release = services.release_create(
        name="split",
        version="1",
        spec={"formats": ["courses"], "splits": {"train": 0.5, "validation": 0.25, "test": 0.25, "seed": 7}},
        user=None,
        queue=False,
    )
    release = services.release_build(release=release)
    assert release.status == Release.Status.READY, release.error
    split_of: dict[int, set[str]] = {}
    for split in ("train", "validation", "test"):
        path = services.release_dir(release) / "courses" / f"{split}.jsonl"
        for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
            split_of.setdefault(json.loads(line)["metadata"]["course_id"], set()).add(split)
    assert len(split_of) == 6
    assert all(len(s) == 1 for s in split_of.values()), split_of
    assert len(set().union(*split_of.values())) >= 2  # the courses were spread, not all put in one split


def dialogue_with_plan(prefix: str, *, plan_status="approved", dialogue_status="approved") -> tuple:
    dialogue = factories.make_candidate(content=factories.dialogue_content(prefix=prefix), status=dialogue_status)
    plan = candidate_create(
        kind=CandidateKind.PLAN,
        content={**PLAN, "case_formulation": f"{prefix}{PLAN['case_formulation']}"},
        language=dialogue.language,
        sub_emotion=dialogue.sub_emotion,
        parent=dialogue,
    )
    return dialogue, factories.set_status(plan, plan_status)


def test_plans_are_instruction_output_pairs_per_section(taxonomy, build):
    dialogue, plan = dialogue_with_plan("Kept. ")
    dialogue_with_plan("Unapproved dialogue. ", dialogue_status="in_review")
    dialogue_with_plan("Rejected plan. ", plan_status="rejected")
    release = build({"formats": ["plans"], "splits": ALL_TRAIN})
    assert release.status == Release.Status.READY, release.error
    pairs = all_rows(release, "plans")
    assert [p["metadata"]["section"] for p in pairs] == [key for key, _ in courses_plans.PLAN_SECTIONS]
    assert {p["metadata"]["candidate_id"] for p in pairs} == {plan.pk}
    assert {p["metadata"]["dialogue_id"] for p in pairs} == {dialogue.pk}
    by_section = {p["metadata"]["section"]: p for p in pairs}
    assert by_section["case_formulation"]["output"] == "Kept. " + PLAN["case_formulation"]
    assert by_section["goals"]["output"] == "- Reduce exam anxiety\n- Sleep before exams"
    assert by_section["interventions"]["output"] == "- Cognitive restructuring: Her beliefs drive it."
    assert by_section["risk_assessment"]["output"] == "low: No thoughts of harm."
    assert "treatment plan" in by_section["goals"]["instruction"] and "goals" in by_section["goals"]["instruction"]
    assert by_section["homework"]["input"].startswith("Client: Kept. Client turn 0")
    assert "\nCounselor: Kept. Counselor turn 0" in by_section["homework"]["input"]
    assert set(ReleaseItem.objects.filter(release=release).values_list("candidate_id", "format", "rows")) == {
        (plan.pk, "plans", 8)
    }
    import pyarrow.parquet as pq

    table = pq.read_table(services.release_dir(release) / "plans" / "train.parquet")
    assert table.column_names == ["instruction", "input", "output", "metadata"]
    assert table.column("output").to_pylist() == [p["output"] for p in pairs]


def test_a_plan_and_its_dialogue_land_in_one_split_and_the_dialogue_text_passes_the_pii_gate(taxonomy, build):
    dialogue, plan = dialogue_with_plan("Call me on 13800138000. ")
    blocked = build({"formats": ["plans"], "splits": ALL_TRAIN})
    assert blocked.status == Release.Status.FAILED and "PII" in blocked.error
    assert {h["where"].split(" row ")[1].split(".")[0] for h in blocked.pii_hits} >= {"input", "output"}
    assert not ReleaseItem.objects.exists()
    redacted = build({"formats": ["plans"], "splits": ALL_TRAIN, "pii": {"action": "redact"}})
    text = json.dumps(all_rows(redacted, "plans"), ensure_ascii=False)
    assert "13800138000" not in text and "[PHONE]" in text
    # Both sides of each pair and the dialogue as an sft example lie in the same split.
    both = build({"formats": ["plans", "sft"], "splits": {"train": 0.5, "validation": 0.5, "test": 0, "seed": 1},
                  "pii": {"action": "redact"}})  # fmt: skip
    splits = set(
        ReleaseItem.objects.filter(release=both, candidate__in=[dialogue, plan]).values_list("split", flat=True)
    )
    assert len(splits) == 1


def test_kinds_without_a_format_are_refused(taxonomy):
    from releases.spec import spec_validate

    with pytest.raises(Exception, match="no format of this release writes 'course'"):
        spec_validate({"formats": ["courses"], "kinds": ["session", "course"]})
    spec = spec_validate({"formats": ["plans", "courses", "sft"]})
    assert spec["kinds"] == ["dialogue", "plan", "session"]
