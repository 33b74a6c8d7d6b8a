"""Blindness, as a permission matrix: every read page and endpoint x every role x blind and not blind.

Counselor A edits a turn and reviews an item with a comment and a risk flag; the AI supervisor scored it. Then
every page and endpoint that shows the item is read by everyone. Where the campaign is blind, counselor B must not
find A's name, comment, edit reason or flag detail, nor the AI supervisor's feedback; A finds their own; senior
clinicians and curators find everything (they settle disagreements); without blindness B finds A's work too.
"""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotations.rubrics import DIALOGUE_RUBRIC
from annotations.services import campaigns, edits, queue, reviews
from generation.models import Candidate
from psyroom_admin import roles
from tests import factories

pytestmark = pytest.mark.django_db

NAME = "rater_alpha_7731"
COMMENT = "COMMENT-ALPHA-7731 misses the disclosure"
REASON = "REASON-ALPHA-7731"
AI = "AI-FEEDBACK-7731"
SECRETS = {"name": NAME, "comment": COMMENT, "edit reason": REASON, "AI feedback": AI}


@pytest.fixture(params=[True, False], ids=["blind", "open"])
def scene(request, curator, taxonomy):
    blind = request.param
    rater_a = factories.make_user(roles.COUNSELOR, username=NAME)
    rater_b = factories.make_user(roles.COUNSELOR)
    candidate = factories.make_candidate()
    Candidate.objects.filter(pk=candidate.pk).update(
        ai_review={"supervisor": {"threshold": 3.5, "score": 4.0, "attempts": [
            {"turns": candidate.content["turns"], "scores": {"empathy": {"score": 4, "reason": AI}}, "mean": 4.0,
             "feedback": AI}]}},
    )  # fmt: skip
    campaign = campaigns.campaign_create(
        creator=curator, name="Matrix", kind="dialogue", overlap=3, members=[rater_a, rater_b], blind=blind,
        candidate_ids=[candidate.pk],
    )  # fmt: skip
    held = queue.queue_claim_next(campaign=campaign, counselor=rater_a)
    edits.turn_edit(
        candidate=candidate, editor=rater_a, index=1, text="A warmer reflection of what she said.",
        base_version=candidate.version, category="wording", reason=REASON,
    )  # fmt: skip
    candidate.refresh_from_db()
    scores = {c["key"]: 3 for c in DIALOGUE_RUBRIC["criteria"]}
    reviews.review_submit(
        candidate=candidate, reviewer=rater_a, assignment=held, scores=scores,
        decision="needs_revision", comment=COMMENT, risk_flags=["self_harm"], base_version=candidate.version,
    )  # fmt: skip
    queue.queue_claim_next(campaign=campaign, counselor=rater_b)  # B has the item open on the review screen
    item = campaign.items.get()
    return {
        "blind": blind,
        "campaign": campaign,
        "candidate": candidate,
        "item": item,
        "users": {
            "rater_a": rater_a,
            "rater_b": rater_b,
            "senior": factories.make_user(roles.SENIOR_CLINICIAN),
            "curator": curator,
        },
    }


def _reads(scene, who: str) -> dict[str, str]:
    """Every page and endpoint that shows the item, as this user gets it (status 200 only)."""
    user, campaign, candidate, item = scene["users"][who], scene["campaign"], scene["candidate"], scene["item"]
    pages = {
        "candidate page": reverse("annotations:candidate", args=[candidate.pk]),
        "queue": reverse("annotations:queue"),
        "campaign list": reverse("annotations:campaign_list"),
        "campaign preview": reverse("annotations:campaign_item_preview", args=[campaign.pk, candidate.pk]),
    }
    if who in ("rater_a", "rater_b"):
        pages["review screen"] = reverse("annotations:campaign_item", args=[campaign.pk, candidate.pk])
    if who == "senior":
        pages["adjudication"] = reverse("annotations:adjudication_item", args=[item.pk])
    endpoints = {
        "api candidate": reverse("api:candidate-detail", args=[candidate.pk]),
        "api candidates": reverse("api:candidate-list"),
        "api campaign": reverse("api:campaign-detail", args=[campaign.pk]),
        "api draft": reverse("api:candidate-draft", args=[candidate.pk]),
    }
    from django.test import Client

    browser = Client()
    browser.force_login(user)
    api = APIClient()
    api.force_authenticate(user)
    bodies = {}
    for name, url in pages.items():
        response = browser.get(url)
        if response.status_code == 200:
            bodies[name] = response.content.decode()
        else:
            assert response.status_code in (302, 403, 404), (name, response.status_code)
    for name, url in endpoints.items():
        response = api.get(url)
        if response.status_code == 200:
            bodies[name] = response.content.decode()
        else:
            assert response.status_code in (403, 404), (name, response.status_code)
    return bodies


def test_rater_b_finds_nothing_of_rater_a_where_the_campaign_is_blind(scene):
    bodies = _reads(scene, "rater_b")
    assert {"candidate page", "review screen", "api candidate"} <= set(bodies)
    leaks = [(secret, where) for where, body in bodies.items() for secret, text in SECRETS.items() if text in body]
    if scene["blind"]:
        assert leaks == []
    else:
        found = {secret for secret, where in leaks if where in ("candidate page", "api candidate")}
        assert found >= {"name", "comment", "edit reason", "AI feedback"}, leaks


def test_rater_a_finds_their_own_work(scene):
    bodies = _reads(scene, "rater_a")
    for where in ("candidate page", "api candidate"):
        assert COMMENT in bodies[where] and REASON in bodies[where], where
    # Their own review does not lift the blind for the AI supervisor's scores.
    assert (AI in bodies["candidate page"]) is not scene["blind"]
    assert (AI in bodies["api candidate"]) is not scene["blind"]


@pytest.mark.parametrize("who", ["senior", "curator"])
def test_senior_clinicians_and_curators_see_everything(scene, who):
    bodies = _reads(scene, who)
    for where in ("candidate page", "api candidate"):
        for secret, text in SECRETS.items():
            assert text in bodies[where], (secret, where)
    if who == "senior":
        assert COMMENT in bodies["adjudication"] and NAME in bodies["adjudication"]


def test_a_counselor_outside_the_campaign_reads_nothing(scene):
    stranger = factories.make_user(roles.COUNSELOR)
    scene["users"]["stranger"] = stranger
    bodies = _reads(scene, "stranger")
    for where, body in bodies.items():
        assert not any(text in body for text in SECRETS.values()), where
        assert f"/candidates/{scene['candidate'].pk}/" not in body, where
