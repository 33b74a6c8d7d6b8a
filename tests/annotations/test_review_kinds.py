"""Plans and scenarios are reviewed on their own rubrics; an approved scenario becomes usable for generation."""

import pytest
from django.core.exceptions import ValidationError

from annotations.rubrics import PLAN_RUBRIC, SCENARIO_RUBRIC
from annotations.services import reviews
from generation.models import Candidate, CandidateKind, Scenario, SubEmotion
from generation.services.candidates import candidate_create

SCENARIO = {
    "title": "A first year far from home",
    "description": "A 19-year-old student moved abroad for university and, two months in, cannot sleep for worry.",
}


def scores(rubric: dict, value: int = 4) -> dict:
    return {c["key"]: value for c in rubric["criteria"]}


def test_an_approved_scenario_candidate_becomes_a_scenario(taxonomy, senior):
    candidate = candidate_create(
        kind=CandidateKind.SCENARIO, content=SCENARIO, sub_emotion=SubEmotion.objects.get(key="anxiety.0")
    )
    assert not Scenario.objects.filter(title=SCENARIO["title"]).exists()
    review = reviews.review_submit(
        candidate=candidate, reviewer=senior, scores=scores(SCENARIO_RUBRIC), decision="approve",
        base_version=candidate.version,
    )  # fmt: skip
    assert review.rubric.kind == "scenario"
    scenario = Scenario.objects.get(title=SCENARIO["title"])
    assert (scenario.sub_emotion.key, scenario.source) == ("anxiety.0", "generated")


def test_a_rejected_scenario_candidate_does_not(taxonomy, counselor):
    candidate = candidate_create(
        kind=CandidateKind.SCENARIO, content=SCENARIO, sub_emotion=SubEmotion.objects.get(key="anxiety.0")
    )
    reviews.review_submit(
        candidate=candidate, reviewer=counselor, scores=scores(SCENARIO_RUBRIC, 2), decision="reject",
        comment="Too vague.", base_version=candidate.version,
    )  # fmt: skip
    assert not Scenario.objects.exists()


def test_a_plan_is_scored_on_the_plan_rubric(taxonomy, senior, candidate):
    plan = candidate_create(
        kind=CandidateKind.PLAN,
        content={
            "case_formulation": "The client pressures herself before exams; perfectionism keeps it going.",
            "goals": ["Reduce exam anxiety"],
            "interventions": [{"technique": "Cognitive restructuring", "rationale": "Her beliefs drive it."}],
            "homework": ["Thought record"],
            "session_schedule": ["Session 1: assessment"],
            "risk_assessment": {"level": "low", "rationale": "No thoughts of harm."},
            "safety_plan": ["Call a friend"],
            "referral_criteria": ["Panic attacks"],
        },
        sub_emotion=candidate.sub_emotion,
    )
    with pytest.raises(ValidationError, match="unknown criteria: empathy"):
        reviews.review_submit(
            candidate=plan, reviewer=senior, scores={"empathy": 4}, decision="approve", base_version=plan.version
        )
    assert not plan.reviews.exists()
    reviews.review_submit(
        candidate=plan, reviewer=senior, scores=scores(PLAN_RUBRIC), decision="approve", base_version=plan.version
    )
    plan.refresh_from_db()
    assert plan.status == Candidate.Status.APPROVED
