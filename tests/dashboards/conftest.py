"""A campaign with reviews written straight into the table, so that every number is known beforehand."""

import math
from datetime import timedelta

import pytest
from django.utils import timezone

from annotations.models import Campaign, Review
from annotations.services import campaigns
from tests import factories

from .test_stats import KRIPPENDORFF_2011


def decision_of(score: int) -> str:
    return "reject" if score <= 2 else ("needs_revision" if score == 3 else "approve")


def add_review(campaign: Campaign, candidate, reviewer, score: int, *, first: int | None = None, flags=(), days_ago=0):
    """A review giving ``score`` on every criterion (``first`` on the first one, if given)."""
    keys = [c["key"] for c in campaign.rubric.criteria]
    scores = {key: score for key in keys}
    if first is not None:
        scores[keys[0]] = first
    review = Review.objects.create(
        candidate=candidate,
        revision=candidate.revisions.get(number=0),
        reviewer=reviewer,
        rubric=campaign.rubric,
        scores=scores,
        decision=decision_of(score),
        risk_flags=list(flags),
        campaign=campaign,
    )
    if days_ago:
        Review.objects.filter(pk=review.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
    return review


def make_campaign(creator, members, n_items: int, *, blind: bool = True) -> tuple[Campaign, list]:
    dialogues = [factories.make_candidate(content=factories.dialogue_content(prefix=f"{i} ")) for i in range(n_items)]
    campaign = campaigns.campaign_create(
        creator=creator,
        name="agreement",
        kind="dialogue",
        overlap=2,
        members=members,
        candidate_ids=[d.pk for d in dialogues],
        blind=blind,
    )
    return campaign, dialogues


@pytest.fixture
def krippendorff_campaign(taxonomy, curator):
    """Krippendorff's 2011 example as a campaign: 4 counselors, 12 items, every score the example's value; the
    fourth counselor flags item 6 for self-harm."""
    raters = [factories.counselor(first_name=name, last_name="Example") for name in ("Ann", "Ben", "Cai", "Dee")]
    campaign, dialogues = make_campaign(curator, raters, 12)
    for rater, values in zip(raters, KRIPPENDORFF_2011, strict=True):
        for unit, value in enumerate(values):
            if not math.isnan(value):
                flags = ["self_harm"] if (rater == raters[3] and unit == 5) else []
                add_review(campaign, dialogues[unit], rater, int(value), flags=flags)
    return campaign, raters


# Two raters, 24 items: the quadratic-kappa example of test_stats four times over (kappa 0.75), scores 1-3.
PAIR_A = [1, 1, 2, 2, 3, 3] * 4
PAIR_B = [1, 2, 2, 3, 3, 3] * 4


@pytest.fixture
def pair_campaign(taxonomy, curator, counselor, other_counselor):
    campaign, dialogues = make_campaign(curator, [counselor, other_counselor], 24)
    for i, (a, b) in enumerate(zip(PAIR_A, PAIR_B, strict=True)):
        # The first 12 items a week earlier than the rest.
        days = 7 if i < 12 else 0
        add_review(campaign, dialogues[i], counselor, a, days_ago=days)
        add_review(campaign, dialogues[i], other_counselor, b, days_ago=days)
    return campaign


@pytest.fixture
def small_campaign(taxonomy, curator, counselor, other_counselor):
    """Two items, each rated by both counselors: rows for a filter to reach, at a twelfth of ``pair_campaign``'s cost
    (for the many cases that only check how a filter value is answered)."""
    campaign, dialogues = make_campaign(curator, [counselor, other_counselor], 2)
    for dialogue, (a, b) in zip(dialogues, [(1, 2), (3, 3)], strict=True):
        add_review(campaign, dialogue, counselor, a)
        add_review(campaign, dialogue, other_counselor, b)
    return campaign


# --- AI against clinicians ----------------------------------------------------------------------------------------

SUPERVISOR_KEYS = ["problem_orientation", "expression", "empathy", "interactive_communication", "safety"]
# Five generated dialogues: the supervisor's kept score (every criterion), the two counselors' scores, the
# classifier's label (None: unreadable; "-": never classified). Spearman of AI [1..5] against the clinicians' means
# [2, 1.5, 4, 3, 5] is 1 - 6 * 4 / (5 * 24) = 0.8; the mean bias is (-1 + 0.5 - 1 + 1 + 0) / 5 = -0.1.
CALIBRATION_ITEMS = [
    (1, 2, 2, "anxiety.1"),
    (2, 1, 2, "anxiety.2"),
    (3, 4, 4, "fear.0"),
    (4, 3, 3, None),
    (5, 5, 5, "-"),
]


def _attempt(score: int) -> dict:
    return {"turns": [], "mean": float(score), "scores": {k: {"score": score, "reason": ""} for k in SUPERVISOR_KEYS}}


@pytest.fixture
def calibration_world(taxonomy, curator, counselor, other_counselor):
    from generation.models import Candidate, GenerationRun, SubEmotion
    from generation.services.modelspecs import modelspec_get_default

    run = GenerationRun.objects.create(
        kind="dialogue",
        count=5,
        model_spec=modelspec_get_default(),
        prompt_version="v1",
        sub_emotion=SubEmotion.objects.get(key="anxiety.1"),
        targets=[{"sub_emotion": "anxiety.1", "scenario": None}],
    )
    campaign, dialogues = make_campaign(curator, [counselor, other_counselor], len(CALIBRATION_ITEMS))
    for i, (dialogue, (ai, a, b, label)) in enumerate(zip(dialogues, CALIBRATION_ITEMS, strict=True)):
        # The last item's kept attempt is its second (a better mean than the first).
        attempts = [_attempt(2), _attempt(ai)] if i == 4 else [_attempt(ai)]
        ai_review = {"supervisor": {"threshold": 3, "attempts": attempts, "score": float(ai)}}
        if label != "-":
            ai_review["emotion"] = {"label": label, "target": "anxiety.1"}
        Candidate.objects.filter(pk=dialogue.pk).update(run=run, run_index=i, ai_review=ai_review)
        add_review(campaign, dialogue, counselor, a)
        add_review(campaign, dialogue, other_counselor, b)
    return {"run": run, "campaign": campaign, "dialogues": dialogues}


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Ids are reused after a rolled-back test on SQLite: no test may read another's cached result."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
