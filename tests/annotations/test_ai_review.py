"""The candidate page shows the AI supervisor's attempts, the emotion label and lineage, and plans and scenarios."""

import pytest
from django.urls import reverse

from annotations.rubrics import PLAN_RUBRIC
from generation.models import Candidate, CandidateKind, Scenario
from generation.services.candidates import candidate_create
from tests import factories

from . import scoping

pytestmark = pytest.mark.django_db


@pytest.fixture
def counselor(db):
    """A counselor sees only their campaigns' candidates: this one's campaign takes every candidate."""
    yield from scoping.counselor_in_campaign()


PLAN = {
    "case_formulation": "The client pressures herself before exams; perfectionism keeps it going.",
    "goals": ["Reduce exam anxiety"],
    "interventions": [{"technique": "Cognitive restructuring", "rationale": "Her beliefs about failure drive it."}],
    "homework": ["Keep a thought record"],
    "session_schedule": ["Session 1: assessment"],
    "risk_assessment": {"level": "low", "rationale": "No thoughts of harming herself."},
    "safety_plan": ["Call a friend"],
    "referral_criteria": ["Panic attacks that do not ease"],
}


def test_the_supervisor_attempts_and_the_emotion_label_are_shown(client, counselor, candidate):
    kept = candidate.content["turns"]
    Candidate.objects.filter(pk=candidate.pk).update(
        ai_review={
            "supervisor": {
                "threshold": 3.5,
                "score": 4.0,
                "attempts": [
                    {"turns": [{"role": "client", "text": "x"}], "scores": {"empathy": {"score": 2, "reason": "Cold."}},
                     "mean": 2.0, "feedback": "Reflect <b>feelings</b> first."},
                    {"turns": kept, "scores": {"empathy": {"score": 4, "reason": "Warm."}}, "mean": 4.0,
                     "feedback": ""},
                ],
            },
            "emotion": {"label": "anxiety.2", "reason": "Worry about health.", "target": "anxiety.1", "agrees": False},
        },
        lineage={"model": "smollm2-135m-instruct", "backend": "transformers", "prompt_version": "dialogue/v1",
                 "seed": 7},
    )  # fmt: skip
    client.force_login(counselor)
    page = client.get(reverse("annotations:candidate", args=[candidate.pk])).content.decode()
    assert "Supervisor scores (regenerated below 3.5)" in page
    assert "Cold." in page and "Warm." in page
    assert "Reflect &lt;b&gt;feelings&lt;/b&gt; first." in page
    assert page.count('class="kept"') == 1
    assert "differs from the target anxiety.1" in page
    assert "dialogue/v1" in page and "smollm2-135m-instruct" in page


def test_a_plan_is_shown_by_section_with_its_dialogue_and_reviewed_on_the_plan_rubric(client, senior, candidate):
    plan = candidate_create(kind=CandidateKind.PLAN, content=PLAN, sub_emotion=candidate.sub_emotion)
    Candidate.objects.filter(pk=plan.pk).update(parent=candidate)
    client.force_login(senior)
    page = client.get(reverse("annotations:candidate", args=[plan.pk])).content.decode()
    assert "Treatment plan" in page and "Cognitive restructuring" in page and "Panic attacks that do not ease" in page
    assert reverse("annotations:candidate", args=[candidate.pk]) in page
    for criterion in PLAN_RUBRIC["criteria"]:
        assert f'name="score_{criterion["key"]}"' in page
    data = {f"score_{c['key']}": "4" for c in PLAN_RUBRIC["criteria"]}
    response = client.post(
        reverse("annotations:review", args=[plan.pk]), {**data, "decision": "approve", "version": plan.version}
    )
    assert response.status_code in (200, 302)
    plan.refresh_from_db()
    assert plan.status == "approved"


def test_a_scenario_candidate_is_shown_and_approving_it_makes_a_scenario(client, senior, taxonomy):
    scenario = candidate_create(
        kind=CandidateKind.SCENARIO,
        content={"title": "Night shifts", "description": "A nurse on night shifts fears every call about her mother."},
        sub_emotion=factories.SubEmotion.objects.get(key="fear.1"),
    )
    client.force_login(senior)
    page = client.get(reverse("annotations:candidate", args=[scenario.pk])).content.decode()
    assert "Scenario: Night shifts" in page
    from annotations.rubrics import SCENARIO_RUBRIC

    data = {f"score_{c['key']}": "5" for c in SCENARIO_RUBRIC["criteria"]}
    client.post(
        reverse("annotations:review", args=[scenario.pk]), {**data, "decision": "approve", "version": scenario.version}
    )
    assert Scenario.objects.filter(title="Night shifts", sub_emotion__key="fear.1", source="generated").exists()
