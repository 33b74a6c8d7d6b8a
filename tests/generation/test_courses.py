"""Multi-session courses (MusPsy): import of profiles and whole courses, the memory parser, course runs."""

from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from generation.agents.course import memory_text, parse_memory
from generation.agents.psyroom import AgentOutputError
from generation.importers.courses import course_import_muspsy, profile_import_muspsy
from generation.importers.reading import ImportFormatError
from generation.models import Candidate, CandidateKind, ClientProfile, GenerationRun, Revision
from generation.selectors import course_sessions
from generation.services.courses import profile_save
from generation.services.modelspecs import modelspec_get_default
from generation.services.runs import run_create, run_execute
from tests.generation.scripted import ScriptedBackend

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "muspsy"
CARDS = FIXTURES / "usercards_1000.txt"
MEMORIES = FIXTURES / "memories_1000.txt"
DIALOGUES = FIXTURES / "dialogues_1000.txt"

GOOD_MEMORY = (
    "Emotion and cognitive state: calmer, still worried about exams\n"
    "Counselor observations: engaged and reflective\n"
    "Counseling assignments: keep a thought record\n"
    "Session goal: notice anxious thoughts\n"
    "Summary: We explored exam worries. She agreed to keep a record."
)


# --- Import -----------------------------------------------------------------------------------------------------


def test_cards_and_memories_make_one_profile_with_its_history():
    profile, created = profile_import_muspsy(memories=MEMORIES, cards=CARDS)
    assert created
    assert profile.name == "李某"
    assert profile.background.startswith("Li is an older gentleman living in a retirement home")
    assert "chess" in profile.personality
    assert "no formal diagnosis" in profile.assessment
    assert profile.goals.startswith("帮助李某识别情绪波动的根源")
    assert [h["session"] for h in profile.history] == [1, 2, 3, 4, 5, 6]
    first = profile.history[0]
    assert first["memory"]["assignments"].startswith("Li is assigned to reflect on moments")
    assert first["memory"]["summary"].startswith("Explored Mr. Li's anxiety")
    assert first["card"]["Recent Life Events"].startswith("最近参加了养老院中的一次追思活动")
    assert profile.source["license"] == "MIT" and "Wang Junzhe" in profile.source["attribution"]
    again, created = profile_import_muspsy(memories=MEMORIES, cards=CARDS)
    assert not created and again.pk == profile.pk
    assert ClientProfile.objects.count() == 1


def test_a_whole_course_is_imported_with_its_sessions_and_not_duplicated():
    result = course_import_muspsy(dialogues=DIALOGUES, memories=MEMORIES, cards=CARDS)
    assert result.created
    course = result.course
    assert course.kind == CandidateKind.COURSE and course.profile == result.profile
    assert course.content["sessions"] == 6 and course.content["profile"]["name"] == "李某"
    sessions = list(course_sessions(course=course))
    assert [s.sequence for s in sessions] == [1, 2, 3, 4, 5, 6]
    assert all(s.parent_id == course.pk and s.profile_id == result.profile.pk for s in sessions)
    assert sessions[0].content["turns"][0] == {
        "role": "client",
        "text": "Since the memorial at the home I can't stop thinking about dying.",
    }
    assert sessions[0].content["turns"][1]["role"] == "counselor"
    assert sessions[1].content["memory"]["session_goal"].startswith("Assist Li in challenging his anxiety")
    assert Revision.objects.filter(candidate__in=[course, *sessions], number=0).count() == 7
    assert course.source["dataset"] == "MusPsy"

    again = course_import_muspsy(dialogues=DIALOGUES, memories=MEMORIES, cards=CARDS)
    assert not again.created and again.course.pk == course.pk
    assert Candidate.objects.count() == 7 and ClientProfile.objects.count() == 1


def test_the_command_imports_a_course_and_says_so(capsys):
    call_command("import_course", dialogues=DIALOGUES, memories=MEMORIES, cards=CARDS)
    assert "Imported course" in capsys.readouterr().out
    call_command("import_course", dialogues=DIALOGUES, memories=MEMORIES)
    # Without the cards the profile differs (no cards in its history), but the course is the same.
    assert Candidate.objects.filter(kind=CandidateKind.COURSE).count() == 1


def _write(tmp_path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_memory_numbered_out_of_order_names_the_line_and_keeps_nothing(tmp_path):
    text = MEMORIES.read_text(encoding="utf-8").replace("The 2th Counseling", "The 3th Counseling", 1)
    bad = _write(tmp_path, "memories.txt", text)
    line = text.splitlines().index("The 3th Counseling") + 1
    with pytest.raises(ImportFormatError, match=rf"memories.txt:{line}: session 3 where session 2 was expected"):
        course_import_muspsy(dialogues=DIALOGUES, memories=bad, cards=CARDS)
    assert ClientProfile.objects.count() == 0 and Candidate.objects.count() == 0


def test_a_memory_missing_a_field_is_named(tmp_path):
    text = MEMORIES.read_text(encoding="utf-8")
    lines = text.splitlines()
    start = lines.index("The 2th Counseling")
    goal = next(i for i in range(start, len(lines)) if lines[i].startswith("[Session Goal:]"))
    del lines[goal]
    bad = _write(tmp_path, "memories.txt", "\n".join(lines))
    with pytest.raises(ImportFormatError, match=rf"memories.txt:{start + 1}: session 2 has no \[Session Goal:\]"):
        profile_import_muspsy(memories=bad)
    assert ClientProfile.objects.count() == 0


def test_a_bad_dialogue_line_names_file_and_line_and_the_command_keeps_nothing(tmp_path):
    lines = DIALOGUES.read_text(encoding="utf-8").splitlines()
    lines[6] = "Therapist: a speaker MusPsy does not have"
    bad = _write(tmp_path, "dialogues.txt", "\n".join(lines))
    with pytest.raises(CommandError, match=r"dialogues.txt:7: expected a 'Consultant:' or 'User:' line.*nothing was"):
        call_command("import_course", dialogues=bad, memories=MEMORIES, cards=CARDS)
    assert ClientProfile.objects.count() == 0 and Candidate.objects.count() == 0


def test_sessions_and_memories_must_match_one_to_one(tmp_path):
    text = DIALOGUES.read_text(encoding="utf-8")
    bad = _write(tmp_path, "dialogues.txt", text.rsplit("#######", 1)[0])
    with pytest.raises(ImportFormatError, match="5 sessions, but .*memories_1000.txt has 6 memories"):
        course_import_muspsy(dialogues=bad, memories=MEMORIES)
    empty = _write(tmp_path, "empty.txt", "User: hello\nConsultant: hi\n#######\n#######\nUser: x\nConsultant: y\n")
    with pytest.raises(ImportFormatError, match="empty.txt:4: session 2 is empty"):
        course_import_muspsy(dialogues=empty, memories=MEMORIES)
    assert Candidate.objects.count() == 0


def test_a_card_without_goals_is_named(tmp_path):
    text = CARDS.read_text(encoding="utf-8").replace("Counseling Goals:", "", 1)
    bad = _write(tmp_path, "cards.txt", text)
    with pytest.raises(ImportFormatError, match="cards.txt:10: unexpected line in a client card: '帮助李某"):
        profile_import_muspsy(memories=MEMORIES, cards=bad)
    assert ClientProfile.objects.count() == 0


# --- The memory parser ------------------------------------------------------------------------------------------


def test_parse_memory_reads_the_five_fields():
    memory = parse_memory(GOOD_MEMORY)
    assert memory == {
        "emotion_cognitive": "calmer, still worried about exams",
        "observations": "engaged and reflective",
        "assignments": "keep a thought record",
        "session_goal": "notice anxious thoughts",
        "summary": "We explored exam worries. She agreed to keep a record.",
    }


def test_parse_memory_accepts_musPsy_labels_and_continuation_lines():
    raw = (
        "[Emotion and Cognitive State:] anxious\n[Counselor Observations:] open\n"
        "[Counseling Assignments:] note calm moments\n[Session Goal:] manage thoughts\n"
        "Counseling Summary:\nExplored his anxiety.\nAgreed on next steps."
    )
    memory = parse_memory(raw)
    assert memory["assignments"] == "note calm moments"
    assert memory["summary"] == "Explored his anxiety. Agreed on next steps."


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "memory_unlabelled"),
        ("The client felt better and we talked about school.", "memory_unlabelled"),
        (GOOD_MEMORY.replace("Session goal: notice anxious thoughts\n", ""), "memory_missing_field"),
        (GOOD_MEMORY.replace("keep a thought record", ""), "memory_missing_field"),
        (GOOD_MEMORY + "\nSummary: again", "memory_repeated_field"),
        (GOOD_MEMORY.replace("engaged and reflective", "word " * 600), "memory_runaway"),
    ],
)
def test_parse_memory_refuses_malformed_output_with_its_raw_text(raw, reason):
    with pytest.raises(AgentOutputError) as caught:
        parse_memory(raw)
    assert caught.value.reason == reason
    assert caught.value.raw == raw


def test_a_memory_cut_mid_summary_is_refused():
    with pytest.raises(AgentOutputError, match="memory_truncated"):
        parse_memory(GOOD_MEMORY.rstrip(".") + " and then she", truncated=True)
    assert parse_memory(GOOD_MEMORY, truncated=True)["summary"].endswith("record.")


# --- Course runs with the scripted backend ----------------------------------------------------------------------


def _profile() -> ClientProfile:
    return ClientProfile.objects.create(
        name="Mei", background="A 17-year-old student before her final exams.", personality="Perfectionist.",
        goals="Cope with exam anxiety.",
    )  # fmt: skip


def _course_reply(bad_memory_for_profile: str | None = None):
    def reply(prompt, call):
        text = "\n".join(m["content"] for m in prompt)
        if "counseling memory of a session" in text:
            session = text.split("Session ", 1)[1].split(" ", 1)[0]
            if bad_memory_for_profile and f"I am {bad_memory_for_profile}." in text:
                return "I cannot write that."
            return GOOD_MEMORY.replace("keep a thought record", f"keep a thought record {session}")
        if "role-playing a person" in prompt[0]["content"]:
            name = prompt[0]["content"].split("Name: ", 1)[1].split("\n", 1)[0]
            return f"I still worry about my exams. I am {name}."
        return "What did you notice since we last met?"

    return reply


def test_a_course_run_saves_a_course_with_its_sessions_and_each_session_sees_the_earlier_memories():
    profile = _profile()
    run = run_create(kind="course", profiles=[profile], sessions=3, count=1, turns=2)
    assert run.parameters["sessions"] == 3 and run.targets == [{"profile": profile.pk}]
    backend = ScriptedBackend(_course_reply())
    run = run_execute(run_id=run.pk, backend=backend)
    assert run.status == GenerationRun.Status.SUCCEEDED and run.done == 1
    assert run.stats["memory_parsed"] == 3
    course = run.candidates.get()
    assert course.kind == CandidateKind.COURSE and course.profile == profile
    assert course.content["profile"]["name"] == "Mei" and course.content["sessions"] == 3
    sessions = list(course_sessions(course=course))
    assert [s.sequence for s in sessions] == [1, 2, 3]
    assert all(s.revisions.filter(number=0).exists() for s in sessions)
    assert sessions[0].content["memory"]["assignments"] == "keep a thought record 1"
    # Every prompt of session 3 carries the memories of sessions 1 and 2; the counselor follows up assignment 2.
    session3 = [p for call in backend.calls for p in call if "session 3 of 3" in p[0]["content"]]
    assert session3
    for prompt in session3:
        assert memory_text(sessions[0].content["memory"]) in prompt[0]["content"]
        assert memory_text(sessions[1].content["memory"]) in prompt[0]["content"]
    counselor = [p for p in session3 if "counselor in session" in p[0]["content"]]
    assert 'Follow up on the last assignment ("keep a thought record 2")' in counselor[0][0]["content"]


def test_turns_of_all_courses_are_one_batched_call():
    profiles = [_profile(), ClientProfile.objects.create(name="Li", background="A retired worker.")]
    run = run_create(kind="course", profiles=profiles, sessions=2, count=2, turns=2)
    backend = ScriptedBackend(_course_reply())
    run_execute(run_id=run.pk, backend=backend)
    # Two sessions of two turns and one memory call each: 6 calls, each for both courses.
    assert [len(call) for call in backend.calls] == [2] * 6
    assert Candidate.objects.filter(kind=CandidateKind.SESSION).count() == 4


def test_a_malformed_memory_is_counted_kept_raw_and_the_course_goes_on():
    good, bad = _profile(), ClientProfile.objects.create(name="Zed", background="Unreadable memories.")
    run = run_create(kind="course", profiles=[good, bad], sessions=2, count=2, turns=2)
    run = run_execute(run_id=run.pk, backend=ScriptedBackend(_course_reply("Zed")))
    assert run.status == GenerationRun.Status.SUCCEEDED and run.done == 2
    # Each of Zed's two memories failed twice (the answer and its retry), then was kept unparsed.
    assert run.stats["memory_unparsed"] == 2 and run.stats["memory_unlabelled"] == 4
    assert run.stats["memory_parsed"] == 2
    zed = Candidate.objects.get(kind=CandidateKind.COURSE, profile=bad)
    memory = course_sessions(course=zed).first().content["memory"]
    assert memory["unparsed"] is True and memory["error"] == "memory_unlabelled"
    assert memory["raw"] == "I cannot write that." and memory["summary"] == "I cannot write that."


def test_running_a_course_run_again_duplicates_nothing():
    run = run_create(kind="course", profiles=[_profile()], sessions=2, count=2, turns=2)
    run_execute(run_id=run.pk, backend=ScriptedBackend(_course_reply()))
    GenerationRun.objects.filter(pk=run.pk).update(status=GenerationRun.Status.RUNNING, heartbeat_at=None)
    backend = ScriptedBackend(_course_reply())
    run = run_execute(run_id=run.pk, backend=backend)
    assert backend.calls == []
    assert run.done == 2
    assert Candidate.objects.filter(kind=CandidateKind.COURSE).count() == 2
    assert Candidate.objects.filter(kind=CandidateKind.SESSION).count() == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profiles": []}, "profiles: a course run needs at least one client profile"),
        ({"sessions": 1}, "sessions: must be between 2 and 10, not 1"),
        ({"sessions": 11}, "sessions: must be between 2 and 10, not 11"),
    ],
)
def test_run_create_refuses_bad_course_requests(kwargs, message):
    args = {"kind": "course", "profiles": [_profile()], "count": 1, **kwargs}
    with pytest.raises(ValidationError, match=message):
        run_create(**args)
    assert GenerationRun.objects.count() == 0


def test_the_generate_command_queues_a_course_run(capsys):
    profile = _profile()
    call_command("generate", "course", profile=[profile.pk], sessions=3, count=1)
    run = GenerationRun.objects.get()
    assert run.kind == CandidateKind.COURSE and run.parameters["sessions"] == 3 and run.count == 1
    assert "1 course(s)" in capsys.readouterr().out
    with pytest.raises(CommandError, match="--profile 999999: no client profile with that id"):
        call_command("generate", "course", profile=[999999], sessions=3)


def test_a_profile_is_edited_by_curators_only(curator, counselor):
    from django.core.exceptions import PermissionDenied

    profile = profile_save(user=curator, data={"name": "Ana", "background": "A nurse.", "language": "en"})
    assert ClientProfile.objects.get(pk=profile.pk).background == "A nurse."
    with pytest.raises(PermissionDenied):
        profile_save(user=counselor, profile=profile, data={"name": "Changed"})
    assert ClientProfile.objects.get(pk=profile.pk).name == "Ana"


# --- The bundled model -----------------------------------------------------------------------------------------


class RecordingBackend:
    """The real backend, keeping every prompt it was given."""

    def __init__(self, backend):
        self.backend = backend
        self.name = backend.name
        self.prompts: list[list[dict]] = []

    def generate(self, prompts, params):
        self.prompts.extend(prompts)
        return self.backend.generate(prompts, params)


@pytest.mark.e2e
def test_bundled_model_writes_a_three_session_course_whose_memories_reach_the_next_session():
    from generation.backends.loading import backend_for

    profile = _profile()
    run = run_create(kind="course", profiles=[profile], sessions=3, count=1, turns=2, parameters={"max_new_tokens": 32})
    recorder = RecordingBackend(backend_for(modelspec_get_default()))
    run = run_execute(run_id=run.pk, backend=recorder)
    assert run.status == GenerationRun.Status.SUCCEEDED, (run.error, run.errors)
    course = run.candidates.get()
    sessions = list(course_sessions(course=course))
    assert [s.sequence for s in sessions] == [1, 2, 3]
    assert run.stats.get("memory_parsed", 0) + run.stats.get("memory_unparsed", 0) == 3
    saved = sessions[0].content["memory"]["summary"]
    assert saved.strip()
    session2 = [p for p in recorder.prompts if "session 2 of 3" in p[0]["content"]]
    assert session2, "no prompt of session 2 was recorded"
    assert any(saved in p[0]["content"] for p in session2)


def test_a_nul_an_empty_file_a_repeated_card_field_and_a_file_over_the_limit_are_refused(tmp_path, settings):
    text = MEMORIES.read_text(encoding="utf-8").split("\n")
    nul = _write(tmp_path, "memories.txt", "\n".join([*text[:2], text[2] + "\x00", *text[3:]]))
    with pytest.raises(ImportFormatError, match=rf"^{nul}:3: a NUL character \(U\+0000\), which can't be stored"):
        profile_import_muspsy(memories=nul)

    empty = _write(tmp_path, "dialogues.txt", "")
    with pytest.raises(ImportFormatError, match=rf"^{empty}: no dialogue found"):
        course_import_muspsy(dialogues=empty, memories=MEMORIES)

    lines = CARDS.read_text(encoding="utf-8").split("\n")
    at = next(n for n, line in enumerate(lines) if line.startswith("[Basic Info]"))
    twice = _write(tmp_path, "cards.txt", "\n".join([*lines[: at + 1], lines[at], *lines[at + 1 :]]))
    with pytest.raises(ImportFormatError, match=rf"^{twice}:{at + 2}: \[Basic Info\] given twice in the card of sess"):
        profile_import_muspsy(memories=MEMORIES, cards=twice)

    settings.PSYROOM_IMPORT_MAX_RECORD_BYTES = 1024
    with pytest.raises(
        ImportFormatError, match=r"memories_1000.txt: more than 1,024 bytes, the most a file read whole"
    ):
        profile_import_muspsy(memories=MEMORIES)
    assert ClientProfile.objects.count() == 0 and Candidate.objects.count() == 0


def test_a_card_without_goals_after_a_separator_is_named(tmp_path):
    lines = CARDS.read_text(encoding="utf-8").splitlines()
    start = lines.index("Counseling Goals:")
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("===="))
    bad = _write(tmp_path, "cards.txt", "\n".join(lines[:start] + lines[end:]))
    with pytest.raises(ImportFormatError, match="cards.txt:1: the card of session 1 has no Counseling Goals"):
        profile_import_muspsy(memories=MEMORIES, cards=bad)
    assert ClientProfile.objects.count() == 0
