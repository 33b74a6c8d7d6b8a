"""Review of Psyche-R1 questions (reference answer, rationale ratings, edits) and the GRPO / SFT export."""

import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from annotations.exports.questions import questions_export
from annotations.models import AuditEvent
from annotations.rubrics import QUESTION_RUBRIC
from annotations.services import audit
from generation.models import Candidate, CandidateKind, Revision
from generation.services.candidates import candidate_create, candidate_flag_risk
from tests import factories

pytestmark = pytest.mark.django_db

OPTIONS = {"A": "Denial", "B": "Projection", "C": "Sublimation", "D": "Regression"}


def make_question(*, answer="B", given=("B", "C"), min_correct=1, status=None, question="Which defence? (1)"):
    """A question as a cross-selection run leaves it: two models' answers, checked, with the difficulty."""
    answers = []
    for model, letter in zip(("model-a", "model-b"), given, strict=True):
        answers.append(
            {
                "model": model,
                "raw": f"<think>Reasoning of {model}.</think>\nAnswer: {letter}",
                "rationale": f"Reasoning of {model}.",
                "answer": letter,
                "correct": letter == answer,
            }
        )
    correct = sum(a["correct"] for a in answers)
    content = {
        "format": "cpsyexam",
        "subject": "心理咨询",
        "question_type": "single",
        "question": question,
        "options": OPTIONS,
        "answer": answer,
        "explanation": "",
        "answers": answers,
        "difficulty": "hard" if correct < min_correct else "easy",
        "selection": {"models": ["model-a", "model-b"], "min_correct": min_correct, "correct": correct},
    }
    candidate = candidate_create(
        kind=CandidateKind.QUESTION,
        content=content,
        language="zh",
        source={"dataset": "CPsyExam", "license": "CC0 1.0", "attribution": "CPsyExam, CC0"},
    )
    return factories.set_status(candidate, status)


def _ratings(*values) -> dict:
    data = {}
    for i, value in enumerate(values):
        for key in ("correct", "clinical", "clear"):
            data[f"rating-{i}-{key}"] = str(value)
    return data


# --- The page and its forms --------------------------------------------------------------------------------------


def test_candidate_page_shows_question_answers_and_correctness(client, senior):
    candidate = make_question(given=("B", "C"))
    unparsed = {**candidate.content}
    unparsed["answers"][1] = {
        "model": "model-b", "raw": "<think>never closed", "rationale": "", "answer": None, "correct": False,
        "error": "missing_think_close",
    }  # fmt: skip
    Candidate.objects.filter(pk=candidate.pk).update(content=unparsed)
    client.force_login(senior)
    response = client.get(reverse("annotations:candidate", args=[candidate.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Which defence? (1)" in html
    assert "Sublimation" in html
    assert "Reasoning of model-a." in html
    assert "missing_think_close" in html and "&lt;think&gt;never closed" in html
    assert html.count('class="badge ok">correct') == 1
    assert html.count('class="badge warn">incorrect') == 1
    assert reverse("annotations:question_rate", args=[candidate.pk]) in html
    queue = client.get(reverse("annotations:queue"))
    assert queue.status_code == 200
    assert reverse("annotations:candidate", args=[candidate.pk]) in queue.content.decode()


def test_counselor_corrects_the_reference_answer(client, senior):
    candidate = make_question(answer="B", given=("B", "C"), min_correct=2)  # one of two right: hard
    assert candidate.content["difficulty"] == "hard"
    client.force_login(senior)
    url = reverse("annotations:question_answer", args=[candidate.pk])
    response = client.post(url, {"answer": "c", "reason": "Sublimation is the defence here", "version": 1})
    assert response.status_code == 302
    candidate.refresh_from_db()
    assert candidate.content["answer"] == "C"
    assert [a["correct"] for a in candidate.content["answers"]] == [False, True]
    assert candidate.content["difficulty"] == "hard"
    assert candidate.version == 2
    revision = candidate.revisions.get(number=1)
    assert revision.author == senior and revision.category == Revision.Category.CLINICAL
    assert revision.reason == "Sublimation is the defence here"
    event = AuditEvent.objects.get(action="question.correct_answer")
    assert event.data == {
        "from": "B", "to": "C", "revision": 1, "category": "clinical", "reason": "Sublimation is the defence here"
    }  # fmt: skip


def test_confirming_the_answer_writes_no_revision_and_bad_letters_are_refused(client, senior):
    candidate = make_question()
    client.force_login(senior)
    url = reverse("annotations:question_answer", args=[candidate.pk])
    client.post(url, {"answer": "B", "version": 1})
    assert AuditEvent.objects.filter(action="question.confirm_answer").count() == 1
    response = client.post(url, {"answer": "BZ", "version": 1}, follow=True)
    assert "give letters among ABCD" in response.content.decode()
    response = client.post(url, {"answer": "AB", "version": 1}, follow=True)
    assert "exactly one answer letter" in response.content.decode()
    candidate.refresh_from_db()
    assert candidate.content["answer"] == "B" and candidate.revisions.count() == 1


def test_counselor_rates_rationales_and_edits_the_best(client, senior):
    candidate = make_question(given=("B", "B"))
    client.force_login(senior)
    url = reverse("annotations:question_rate", args=[candidate.pk])
    edited = "Projection: the client attributes her own anger to her colleague, so B."
    response = client.post(url, {**_ratings(3, 5), "best": "1", "edited": edited, "version": 1})
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="question.rate")
    assert event.actor == senior
    assert event.data["best"] == 1
    assert event.data["ratings"][1] == {"index": 1, "correct": 5, "clinical": 5, "clear": 5}
    candidate.refresh_from_db()
    assert candidate.content["chosen"] == 1
    assert candidate.content["answers"][1]["rationale"] == edited
    assert candidate.content["answers"][1]["edited"] is True
    assert candidate.revisions.get(number=1).category == Revision.Category.WORDING


def test_ratings_out_of_range_are_refused(client, senior):
    candidate = make_question()
    client.force_login(senior)
    response = client.post(
        reverse("annotations:question_rate", args=[candidate.pk]), {**_ratings(3, 9), "version": 1}, follow=True
    )
    assert "needs a score from 1 to 5" in response.content.decode()
    assert not AuditEvent.objects.filter(action="question.rate").exists()


def test_overall_decision_uses_the_question_rubric(client, senior):
    candidate = make_question()
    client.force_login(senior)
    data = {f"score_{c['key']}": "4" for c in QUESTION_RUBRIC["criteria"]}
    response = client.post(
        reverse("annotations:review", args=[candidate.pk]),
        {**data, "decision": "approve", "comment": "", "version": candidate.version},
    )
    assert response.status_code in (200, 302)
    candidate.refresh_from_db()
    assert candidate.status == Candidate.Status.APPROVED
    assert candidate.reviews.get().rubric.name == QUESTION_RUBRIC["name"]


@pytest.mark.parametrize("name", ["question_answer", "question_rate"])
def test_permissions(client, outsider, curator, name):
    candidate = make_question()
    url = reverse(f"annotations:{name}", args=[candidate.pk])
    data = {"answer": "C", **_ratings(4, 4), "version": 1}
    response = client.post(url, data)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    for user in (outsider, curator):
        client.force_login(user)
        assert client.post(url, data).status_code == 403
    assert client.get(url).status_code in (403, 405)
    candidate.refresh_from_db()
    assert candidate.content["answer"] == "B" and candidate.version == 1
    assert not AuditEvent.objects.filter(action__startswith="question.").exists()


# --- Export -----------------------------------------------------------------------------------------------------


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_splits_hard_to_grpo_and_easy_to_sft(tmp_path, counselor, other_counselor):
    hard = make_question(answer="A", given=("B", "C"), status="approved", question="Hard one")
    easy = make_question(answer="B", given=("B", "B"), status="approved", question="Easy one")
    edited = make_question(answer="B", given=("B", "B"), question="Edited one")
    make_question(answer="B", given=("B", "B"), question="Not approved")
    make_question(answer="A", given=("B", "C"), status="rejected", question="Rejected")
    flagged = make_question(answer="B", given=("B", "B"), status="approved", question="Flagged")
    candidate_flag_risk(candidate=flagged, flags=[{"code": "other", "detail": "x"}])
    # Ratings pick model-b's rationale for the easy question; the edited one uses the reviewer's text.
    audit.audit_record(
        actor=counselor, action="question.rate", candidate=easy,
        data={"ratings": [{"index": 0, "correct": 2, "clinical": 2, "clear": 2},
                          {"index": 1, "correct": 5, "clinical": 4, "clear": 5}], "best": None},
    )  # fmt: skip
    from annotations.services.questions import question_rate_rationales

    question_rate_rationales(
        candidate=edited,
        reviewer=other_counselor,
        ratings=[{"index": i, "correct": 4, "clinical": 4, "clear": 4} for i in range(2)],
        best=0,
        edited="Edited reasoning.",
        base_version=edited.version,
    )
    factories.set_status(edited, "approved")  # the edited revision is the one approved
    call_command("export_questions", "--out-dir", str(tmp_path))
    grpo, sft = _lines(tmp_path / "grpo.jsonl"), _lines(tmp_path / "sft.jsonl")
    assert [line["metadata"]["candidate_id"] for line in grpo] == [hard.pk]
    assert grpo[0]["answer"] == "A"
    assert grpo[0]["prompt"][0]["role"] == "system" and "Hard one" in grpo[0]["prompt"][1]["content"]
    assert "A. Denial" in grpo[0]["prompt"][1]["content"]
    assert grpo[0]["metadata"]["difficulty"] == "hard"
    assert grpo[0]["metadata"]["source"]["license"] == "CC0 1.0"
    assert [line["metadata"]["candidate_id"] for line in sft] == [easy.pk, edited.pk]
    assert sft[0]["messages"][-1] == {
        "role": "assistant",
        "content": "<think>\nReasoning of model-b.\n</think>\nAnswer: B",
    }
    assert sft[0]["metadata"]["rationale_model"] == "model-b"
    assert sft[1]["messages"][-1]["content"] == "<think>\nEdited reasoning.\n</think>\nAnswer: B"
    assert sft[1]["metadata"]["edited"] is True
    exported = " ".join(json.dumps(line, ensure_ascii=False) for line in grpo + sft)
    for left_out in ("Not approved", "Rejected", "Flagged"):
        assert left_out not in exported
    assert AuditEvent.objects.get(action="questions.export").data["grpo"] == 1


def test_easy_question_without_a_correct_rationale_is_left_out(tmp_path):
    candidate = make_question(answer="B", given=("B", "C"), status="approved")
    Revision.objects.filter(candidate=candidate).update(
        content={**candidate.content, "answers": [], "difficulty": "easy"}
    )
    result = questions_export(out_dir=tmp_path)
    assert (result.grpo_count, result.sft_count, result.skipped) == (0, 0, 1)
    assert (tmp_path / "sft.jsonl").read_text() == ""


# --- API ----------------------------------------------------------------------------------------------------------


def test_api_lists_questions_by_difficulty_and_shows_answers(client, senior, outsider):
    hard = make_question(answer="A", given=("B", "C"), question="Hard one")
    easy = make_question(answer="B", given=("B", "B"), question="Easy one")
    url = reverse("api:question-list")
    assert client.get(url).status_code == 401
    client.force_login(outsider)
    assert client.get(url).status_code == 403
    client.force_login(senior)
    body = client.get(url, {"difficulty": "hard"}).json()
    assert body["count"] == 1 and body["results"][0]["id"] == hard.pk
    assert body["results"][0]["answer"] == "A" and body["results"][0]["difficulty"] == "hard"
    assert [r["id"] for r in client.get(url, {"difficulty": "easy"}).json()["results"]] == [easy.pk]
    assert client.get(url, {"difficulty": "medium"}).status_code == 400
    detail = client.get(reverse("api:question-detail", args=[hard.pk])).json()
    assert [(a["model"], a["answer"], a["correct"]) for a in detail["answers"]] == [
        ("model-a", "B", False),
        ("model-b", "C", False),
    ]
    assert detail["source"]["license"] == "CC0 1.0"
    assert client.get(reverse("api:question-detail", args=[hard.pk + 1000])).status_code == 404


def test_counselor_outside_the_question_campaigns_gets_404(client, counselor):
    candidate = make_question()
    client.force_login(counselor)
    url = reverse("annotations:question_answer", args=[candidate.pk])
    assert client.post(url, {"answer": "C", "version": 1}).status_code == 404
    candidate.refresh_from_db()
    assert candidate.content["answer"] == "B"
