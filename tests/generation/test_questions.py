"""CPsyExam import, Psyche-R1 cross-selection runs and the question answerer's parsing."""

import json
import zipfile
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from generation.agents.question import parse_answer
from generation.importers.questions import questions_import
from generation.importers.reading import ImportFormatError
from generation.models import Candidate, CandidateKind, GenerationRun, ModelSpec, Revision
from generation.services.modelspecs import modelspec_get_default
from generation.services.questions import question_rescore
from generation.services.runs import run_create, run_execute
from tests.generation.scripted import ScriptedBackend

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "cpsyexam"
MCQ = FIXTURES / "cpsyexam"
QA = FIXTURES / "cpsyexam_qa"


# --- Import ----------------------------------------------------------------------------------------------------


def test_import_choice_questions_keeps_answers_and_licence():
    result = questions_import(path=MCQ, format="cpsyexam")
    assert (result.created, result.duplicates, result.files) == (30, 0, 4)
    questions = Candidate.objects.filter(kind=CandidateKind.QUESTION)
    assert questions.count() == 30
    assert Revision.objects.filter(candidate__kind=CandidateKind.QUESTION, number=0).count() == 30
    multi = questions.filter(content__question_type="multi")
    assert multi.count() == 10
    first = questions.get(source__file="dev/CA-心理咨询-多项选择题.json", source__record=0)
    assert first.content["answer"] == "BD"
    assert "E" not in first.content["options"]  # the blank fifth option is dropped
    assert first.source["license"] == "CC0 1.0"
    assert "CPsyExam" in first.source["attribution"]
    assert first.source["split"] == "dev"
    assert first.language == "zh"


def test_import_split_and_limit():
    assert questions_import(path=MCQ, split="train").created == 5
    assert questions_import(path=MCQ, split="dev", limit=7).created == 7
    assert Candidate.objects.filter(kind=CandidateKind.QUESTION).count() == 12


def test_import_open_questions():
    result = questions_import(path=QA, format="cpsyexam_qa")
    assert result.created == 5
    question = Candidate.objects.filter(kind=CandidateKind.QUESTION).first()
    assert question.content["question_type"] == "open"
    assert question.content["options"] == {}
    assert question.content["answer"]
    assert question.source["license"] == "CC0 1.0"


def test_reimport_does_not_duplicate():
    questions_import(path=MCQ)
    again = questions_import(path=MCQ)
    assert (again.created, again.duplicates) == (0, 30)
    assert Candidate.objects.filter(kind=CandidateKind.QUESTION).count() == 30


def _good_record():
    return json.loads((MCQ / "dev" / "CA-心理咨询-单项选择题.json").read_text(encoding="utf-8"))[0]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"answer": "F"}, "answer"),
        ({"answer": "AB"}, "answer"),  # two letters for a single-choice question
        ({"options": None}, "options"),
        ({"question_type": "essay"}, "question_type"),
        ({"answer": None}, "answer"),
    ],
)
def test_malformed_record_leaves_db_unchanged_and_names_record_and_field(tmp_path, change, field):
    questions_import(path=MCQ, split="train")
    before = Candidate.objects.count()
    bad = {**_good_record(), **change}
    if change.get("options", 1) is None:
        del bad["options"]
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "subject.json").write_text(json.dumps([_good_record(), bad], ensure_ascii=False), "utf-8")
    with pytest.raises(ImportFormatError) as error:
        questions_import(path=tmp_path)
    message = str(error.value)
    assert "dev/subject.json: record 1" in message
    assert f"{field}:" in message
    assert Candidate.objects.count() == before


def _write_questions(tmp_path: Path, records: list, name: str = "dev/subject.json") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, ensure_ascii=False), "utf-8")
    return tmp_path


def test_one_id_on_two_different_questions_is_refused_naming_both(tmp_path):
    first, second = json.loads((MCQ / "dev" / "CA-心理咨询-单项选择题.json").read_text(encoding="utf-8"))[:2]
    path = _write_questions(tmp_path, [first, second, {**second, "id": first["id"]}])

    with pytest.raises(ImportFormatError) as error:
        questions_import(path=path)

    assert str(error.value) == (
        "dev/subject.json: record 2: the same id as dev/subject.json: record 0, with different content "
        "(an id names one record in an import)"
    )
    assert not Candidate.objects.exists()


def test_one_id_on_the_same_question_twice_is_a_duplicate(tmp_path):
    result = questions_import(path=_write_questions(tmp_path, [_good_record(), _good_record()]))

    assert (result.created, result.duplicates) == (1, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "dev/subject.json: an empty file (expected a JSON list of records)"),
        ("[]", "dev/subject.json: an empty list: no records in this file"),
        ('[\n{"question": "a\\u0000b"}]', "dev/subject.json:2: a \\u0000 escape (NUL), which can't be stored"),
        ('[{"question": "\\ud800"}]', "dev/subject.json:1: a lone surrogate escape (\\ud800), which is not text"),
        ("[" * 50_000 + "]" * 50_000, "dev/subject.json:1: JSON nested deeper than 32 levels"),
        ('[{"question": "a\x00b"}]', "dev/subject.json:1: a NUL character (U+0000), which can't be stored"),
    ],
)
def test_empty_nul_surrogate_and_deep_files_are_refused(tmp_path, text, message):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "subject.json").write_text(text, "utf-8")

    with pytest.raises(ImportFormatError) as error:
        questions_import(path=tmp_path)

    assert str(error.value).startswith(message)
    assert not Candidate.objects.exists()


def test_a_zip_is_read_as_a_stream_within_the_limits(tmp_path, settings):
    path = tmp_path / "cpsyexam.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(MCQ.rglob("*.json")):
            archive.write(file, f"cpsyexam/{file.relative_to(MCQ).as_posix()}")

    assert questions_import(path=path, split="dev", limit=3).created == 3
    assert Candidate.objects.filter(source__archive="cpsyexam.zip", source__split="dev").count() == 3

    settings.PSYROOM_IMPORT_MAX_TOTAL_BYTES = 16_000
    with pytest.raises(ImportFormatError, match=r"^cpsyexam.zip/cpsyexam/dev/CA-.*: this import goes on past 16,000 b"):
        questions_import(path=path, split="dev")
    assert Candidate.objects.count() == 3


def test_import_command(capsys):
    call_command("import_questions", str(QA), "--format", "cpsyexam_qa", "--limit", "3")
    assert "Imported 3 questions" in capsys.readouterr().out


# --- Parsing ---------------------------------------------------------------------------------------------------


OPTIONS = {"A": "one", "B": "two", "C": "three", "D": "four"}


@pytest.mark.parametrize(
    ("raw", "qtype", "expected"),
    [
        ("<think>Because of X.</think>\nAnswer: B", "single", "B"),
        ("<think>X and Y.</think>\n**Answer:** A, C", "multi", "AC"),
        ("<think>X.</think>答案：DCA", "multi", "ACD"),
        ("<think>X.</think>\nA", "single", "A"),
        ("<think>unclosed reasoning Answer: B", "single", "missing_think_close"),
        ("<think>X.</think>\nAnswer: I think it is probably B", "single", "no_answer_letter"),
        ("<think>X.</think>\nAnswer: E", "single", "letter_outside_options"),
        ("<think>X.</think>\nAnswer: AB", "single", "several_letters_for_single"),
        ("<think></think>\nAnswer: A", "single", "empty_rationale"),
        ("<think>X.</think>", "multi", "no_answer_letter"),
    ],
)
def test_parse_answer(raw, qtype, expected):
    from generation.agents.psyroom import AgentOutputError

    if expected.isupper():
        parsed = parse_answer(raw, options=OPTIONS, question_type=qtype)
        assert parsed.answer == expected
        assert parsed.rationale
        return
    with pytest.raises(AgentOutputError) as error:
        parse_answer(raw, options=OPTIONS, question_type=qtype)
    assert error.value.reason == expected
    assert error.value.raw == raw


# --- Cross-selection -------------------------------------------------------------------------------------------


def _spec(name: str) -> ModelSpec:
    return ModelSpec.objects.create(name=name, path="scripted", batch_size=8)


def _answering(policy):
    """A scripted model: ``policy(content) -> text``, with the question's content found by its text."""

    def reply(prompt, call):
        text = prompt[-1]["content"]
        content = next(c for c in QUESTIONS_BY_TEXT if c["question"] in text)
        return policy(content)

    return ScriptedBackend(reply)


QUESTIONS_BY_TEXT: list[dict] = []


def _wrong(content):
    return next(letter for letter in sorted(content["options"]) if letter not in content["answer"])


@pytest.fixture
def five_questions():
    questions_import(path=MCQ / "dev" / "CA-心理咨询-单项选择题.json")
    questions = list(Candidate.objects.filter(kind=CandidateKind.QUESTION).order_by("id"))
    QUESTIONS_BY_TEXT[:] = [q.content for q in questions]
    return questions


def _model_a(content):
    # Right on every question.
    return f"<think>Recall the definition and rule out the others.</think>\nAnswer: {content['answer']}"


def _model_b(content):
    # Questions 0 and 1 right, 2 wrong, 3 unparseable (no closing tag), 4 a letter outside the options.
    i = [c["question"] for c in QUESTIONS_BY_TEXT].index(content["question"])
    if i in (0, 1):
        return f"<think>It follows from the case.</think>\nAnswer: {content['answer']}"
    if i == 2:
        return f"<think>Guessing.</think>\nAnswer: {_wrong(content)}"
    if i == 3:
        return "<think>I keep thinking and never close the tag"
    return "<think>Hmm.</think>\nAnswer: Z"


@pytest.mark.parametrize(
    ("min_correct", "expected"), [(1, ["easy"] * 5), (2, ["easy", "easy", "hard", "hard", "hard"])]
)
def test_cross_selection_sets_difficulty_from_hand_set_answers(five_questions, min_correct, expected):
    _spec("model-a"), _spec("model-b")
    a, b = _answering(_model_a), _answering(_model_b)
    run = run_create(
        kind="question",
        questions=five_questions,
        parameters={"models": ["model-a", "model-b"], "min_correct": min_correct},
    )
    assert run.targets == [{"question": q.pk} for q in five_questions]
    assert run.model_spec.name == "model-a"
    run_execute(run_id=run.pk, backend={"model-a": a, "model-b": b})
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.SUCCEEDED
    assert (run.done, run.failed) == (5, 0)
    # All five questions answered by each model in one batched call.
    assert len(a.calls) == 1 and len(a.calls[0]) == 5
    assert len(b.calls) == 1 and len(b.calls[0]) == 5
    made = list(run.candidates.order_by("run_index"))
    assert [c.content["difficulty"] for c in made] == expected
    assert [c.parent_id for c in made] == [q.pk for q in five_questions]
    for c in made:
        assert [a["model"] for a in c.content["answers"]] == ["model-a", "model-b"]
        assert c.content["answers"][0]["correct"] is True
        assert c.content["answers"][0]["rationale"] == "Recall the definition and rule out the others."
        assert c.lineage["models"] == ["model-a", "model-b"]
        assert c.lineage["min_correct"] == min_correct
        assert c.source["license"] == "CC0 1.0"
    unclosed = made[3].content["answers"][1]
    assert unclosed == {
        "model": "model-b",
        "raw": "<think>I keep thinking and never close the tag",
        "rationale": "",
        "answer": None,
        "correct": False,
        "error": "missing_think_close",
    }
    assert made[4].content["answers"][1]["error"] == "letter_outside_options"
    assert made[2].content["answers"][1]["correct"] is False
    assert run.stats["answers_unparsed"] == 2
    assert run.stats["answer_missing_think_close"] == 1
    assert run.stats["answer_letter_outside_options"] == 1
    assert run.stats["answers_correct"] == 7
    assert run.stats.get("hard", 0) == expected.count("hard")
    # Re-executing the run changes nothing (idempotent).
    GenerationRun.objects.filter(pk=run.pk).update(status=GenerationRun.Status.QUEUED)
    run_execute(run_id=run.pk, backend={"model-a": a, "model-b": b})
    assert run.candidates.count() == 5


def test_multiple_choice_is_checked_as_a_set():
    questions_import(path=MCQ / "dev" / "CA-心理咨询-多项选择题.json", limit=2)
    questions = list(Candidate.objects.filter(kind=CandidateKind.QUESTION).order_by("id"))
    QUESTIONS_BY_TEXT[:] = [q.content for q in questions]
    _spec("model-a")
    # The reference letters reversed and comma-separated: the same set.
    backend = _answering(lambda c: f"<think>Each applies.</think>\nAnswer: {', '.join(reversed(c['answer']))}")
    run = run_create(kind="question", questions=questions, parameters={"models": ["model-a"]})
    run_execute(run_id=run.pk, backend={"model-a": backend})
    assert [c.content["difficulty"] for c in run.candidates.order_by("run_index")] == ["easy", "easy"]


def test_run_create_refuses_bad_question_runs(five_questions):
    _spec("model-a")
    questions_import(path=QA, format="cpsyexam_qa", limit=1)
    open_question = Candidate.objects.get(content__question_type="open")
    before = GenerationRun.objects.count()
    cases = [
        ({"models": ["model-a", "nobody"]}, five_questions, "no model spec named nobody"),
        ({"models": ["model-a"], "min_correct": 2}, five_questions, "min_correct"),
        ({"models": ["model-a"]}, [open_question], "open questions"),
        ({"models": ["model-a"]}, [], "at least one question"),
    ]
    for parameters, questions, message in cases:
        with pytest.raises(ValidationError, match=message):
            run_create(kind="question", questions=questions, parameters=parameters)
    assert GenerationRun.objects.count() == before


def test_generate_command_queues_a_question_run(five_questions, capsys):
    _spec("model-a"), _spec("model-b")
    call_command("generate", "question", "--questions-from-import", "--models", "model-a,model-b", "--min-correct", "1")
    run = GenerationRun.objects.get()
    assert run.kind == "question" and run.count == 5
    assert run.parameters["models"] == ["model-a", "model-b"] and run.parameters["min_correct"] == 1


def test_rescore_after_a_corrected_reference(five_questions):
    content = {
        **five_questions[0].content,
        "answers": [
            {"model": "a", "raw": "", "rationale": "r", "answer": five_questions[0].content["answer"], "correct": True},
            {"model": "b", "raw": "", "rationale": "r", "answer": "D", "correct": False},
        ],
        "difficulty": "easy",
        "selection": {"models": ["a", "b"], "min_correct": 1, "correct": 1},
    }
    fixed = question_rescore(content={**content, "answer": "D"})
    assert [a["correct"] for a in fixed["answers"]] == [five_questions[0].content["answer"] == "D", True]
    assert fixed["difficulty"] == "easy"


# --- The real model --------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_bundled_model_answers_through_run_execute():
    """Two questions, the bundled model under two names: every answer is stored with its raw text."""
    # Short knowledge questions: the case questions run to 2,600 prompt tokens, slow on a CPU.
    questions_import(path=MCQ / "dev" / "KG-GEE-普通心理学-单项选择题.json", limit=2)
    questions = list(Candidate.objects.filter(kind=CandidateKind.QUESTION).order_by("id"))
    first = modelspec_get_default()
    ModelSpec.objects.create(name="smollm2-twin", path=first.path, backend=first.backend, batch_size=8)
    run = run_create(
        kind="question",
        questions=questions,
        parameters={"models": [first.name, "smollm2-twin"], "min_correct": 1, "max_new_tokens": 48},
    )
    run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == GenerationRun.Status.SUCCEEDED, run.error
    assert run.done == 2
    for candidate in run.candidates.all():
        answers = candidate.content["answers"]
        assert [a["model"] for a in answers] == [first.name, "smollm2-twin"]
        for answer in answers:
            assert isinstance(answer["raw"], str)
            assert answer["correct"] is False or answer["answer"] == candidate.content["answer"]
            assert ("error" in answer) == (answer["answer"] is None)
        assert candidate.content["difficulty"] in ("hard", "easy")
    parsed = run.stats.get("answers_correct", 0) + run.stats.get("answers_incorrect", 0)
    assert parsed + run.stats.get("answers_unparsed", 0) == 4
