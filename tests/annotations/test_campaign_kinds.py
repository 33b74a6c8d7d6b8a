"""Course and question campaigns: the review screen, its preview and the adjudication page show what is rated (a
course's client, sessions and memories; a question's stem, options, key and the models' rationales) with the
campaign's rubric, and a blind campaign still hides other reviews and the AI supervisor."""

import re
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils.html import escape

from annotations.models import Campaign, Review
from annotations.rubrics import COURSE_RUBRIC, QUESTION_RUBRIC, SESSION_RUBRIC
from annotations.services import campaigns
from generation.importers.courses import course_import_muspsy
from generation.models import Candidate
from tests.annotations.test_question_review import OPTIONS, make_question

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "muspsy"
RUBRICS = {"course": COURSE_RUBRIC, "question": QUESTION_RUBRIC}
SUPERVISOR = {
    "supervisor": {
        "threshold": 3.5,
        "attempts": [
            {"scores": {"arc": {"score": 2, "reason": "Supervisor-only reason."}}, "mean": 2.0,
             "feedback": "Supervisor-only feedback."},
        ],
    },
}  # fmt: skip
COMMENT = "Counselor A thinks the third option is a trap."


def _import_course() -> Candidate:
    return course_import_muspsy(
        dialogues=FIXTURES / "dialogues_1000.txt",
        memories=FIXTURES / "memories_1000.txt",
        cards=FIXTURES / "usercards_1000.txt",
    ).course


def _make_item(kind: str) -> Candidate:
    return _import_course() if kind == "course" else make_question(given=("B", "C"))


def _campaign(kind: str, creator, members, candidate, *, blind: bool = True) -> Campaign:
    return campaigns.campaign_create(
        creator=creator, name=f"{kind.title()} campaign", kind=kind, overlap=2, members=members, blind=blind,
        candidate_ids=[candidate.pk],
    )  # fmt: skip


def _open_next(client, campaign) -> str:
    """Claim the next item through the page (a POST), open its review screen and return the HTML."""
    response = client.post(reverse("annotations:campaign_next", args=[campaign.pk]))
    assert response.status_code == 302, response.content[:500]
    response = client.get(response["Location"])
    assert response.status_code == 200
    return response.content.decode()


def _assert_course_shown(html: str) -> None:
    # The client profile the course was written for: name (from the first client card), background, goals.
    assert "李某" in html
    assert "Li is an older gentleman living in a retirement home" in html
    assert "帮助李某识别情绪波动的根源" in html
    # Every session, in order, with its turns and its memory.
    positions = [html.index(f"<h2>Session {n}</h2>") for n in range(1, 7)]
    assert positions == sorted(positions)
    assert "<h2>Session 7</h2>" not in html
    assert escape("Since the memorial at the home I can't stop thinking about dying.") in html
    assert "I started painting with my grandson on Sunday." in html
    assert "Li is assigned to reflect on moments during the week" in html
    assert "Counseling assignments" in html


def _rationale(html: str, model: str) -> str:
    match = re.search(rf'<article class="rationale" data-model="{model}">(.*?)</article>', html, re.S)
    assert match, f"no rationale of {model}"
    return match.group(1)


def _assert_question_shown(html: str) -> None:
    assert "Which defence? (1)" in html
    for letter, text in OPTIONS.items():
        assert f'data-option="{letter}"' in html and text in html
    # The answer key: the letter, and its option marked.
    assert '<span class="reference-answer">B</span>' in html
    assert 'data-option="B" class="in-key"' in html
    assert 'data-option="C" class="in-key"' not in html
    # Each model's answer, rationale and whether it was correct.
    model_a, model_b = _rationale(html, "model-a"), _rationale(html, "model-b")
    assert "Reasoning of model-a." in model_a and "model-a: B" in model_a and ">correct<" in model_a
    assert "Reasoning of model-b." in model_b and "model-b: C" in model_b and ">incorrect<" in model_b


SHOWN = {"course": _assert_course_shown, "question": _assert_question_shown}


def _assert_rubric_shown(html: str, kind: str) -> None:
    for criterion in RUBRICS[kind]["criteria"]:
        assert f'data-criterion="{criterion["key"]}"' in html


# --- The review screen -------------------------------------------------------------------------------------------


def test_a_course_item_shows_the_client_every_session_with_its_memory_and_the_course_rubric(client, curator, counselor):
    campaign = _campaign("course", curator, [counselor], _import_course())
    client.force_login(counselor)
    html = _open_next(client, campaign)
    _assert_course_shown(html)
    _assert_rubric_shown(html, "course")
    # The campaign rates the course as a whole: the session rubric's own criteria are not on the form.
    assert 'data-criterion="continuity"' not in html
    assert SESSION_RUBRIC["name"] not in html
    # Nothing hides the content: the course carries no risk flag of its own.
    assert 'id="item-content" class="item-content">' in html


def test_a_question_item_shows_the_stem_options_key_and_each_rationale_with_the_question_rubric(
    client, curator, counselor
):
    campaign = _campaign("question", curator, [counselor], make_question(given=("B", "C")))
    client.force_login(counselor)
    html = _open_next(client, campaign)
    _assert_question_shown(html)
    _assert_rubric_shown(html, "question")
    # Read-only here: the question page's own forms (correct the key, rate the rationales) are not on this screen.
    assert reverse("annotations:question_rate", args=[campaign.items.get().candidate_id]) not in html


# --- The preview and the adjudication page -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["course", "question"])
def test_the_preview_shows_the_same_content_and_rubric(client, curator, counselor, kind):
    candidate = _make_item(kind)
    campaign = _campaign(kind, curator, [counselor], candidate)
    client.force_login(counselor)
    response = client.get(reverse("annotations:campaign_item_preview", args=[campaign.pk, candidate.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    SHOWN[kind](html)
    _assert_rubric_shown(html, kind)


@pytest.mark.parametrize("kind", ["course", "question"])
def test_the_adjudication_page_shows_the_same_content_and_rubric(client, curator, counselor, senior, kind):
    candidate = _make_item(kind)
    campaign = _campaign(kind, curator, [counselor], candidate)
    client.force_login(senior)
    response = client.get(reverse("annotations:adjudication_item", args=[campaign.items.get().pk]))
    assert response.status_code == 200
    html = response.content.decode()
    SHOWN[kind](html)
    _assert_rubric_shown(html, kind)


# --- Blindness ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["course", "question"])
def test_a_blind_campaign_hides_the_supervisor_and_another_counselors_comment_but_not_the_content(
    client, curator, counselor, other_counselor, senior, kind
):
    candidate = _make_item(kind)
    Candidate.objects.filter(pk=candidate.pk).update(ai_review=SUPERVISOR)
    campaign = _campaign(kind, curator, [counselor, other_counselor], candidate, blind=True)

    client.force_login(counselor)
    _open_next(client, campaign)
    data = {f"score_{c['key']}": "4" for c in RUBRICS[kind]["criteria"]}
    response = client.post(
        reverse("annotations:campaign_submit", args=[campaign.pk, candidate.pk]),
        {**data, "decision": "needs_revision", "comment": COMMENT, "version": candidate.version},
    )
    assert response.status_code == 302, response.content[:1000]
    assert Review.objects.get(candidate=candidate, reviewer=counselor).comment == COMMENT

    client.force_login(other_counselor)
    html = _open_next(client, campaign)
    SHOWN[kind](html)
    assert escape(COMMENT) not in html
    assert "Supervisor-only" not in html and "Supervisor scores" not in html
    preview = client.get(reverse("annotations:campaign_item_preview", args=[campaign.pk, candidate.pk]))
    assert escape(COMMENT) not in preview.content.decode()
    assert "Supervisor-only" not in preview.content.decode()

    # Not vacuous: the senior clinician, who sees everything, is shown both on the adjudication page.
    client.force_login(senior)
    html = client.get(reverse("annotations:adjudication_item", args=[campaign.items.get().pk])).content.decode()
    assert escape(COMMENT) in html
    assert "Supervisor-only feedback." in html
    SHOWN[kind](html)
