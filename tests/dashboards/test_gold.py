"""Accuracy on reference items (gold) on the agreement page, its CSV and the API: the numbers against hand-computed
values, who sees whose row, blind names, and gold reviews counted nowhere else."""

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from annotations.models import Review
from annotations.selectors import queues as queue_selectors
from annotations.services import campaigns, gold, queue, reviews
from dashboards import stats
from dashboards.selectors import AgreementFilters, agreement_for
from dashboards.selectors.funnel import FunnelFilters, funnel_compute
from dashboards.selectors.gold import gold_accuracy_for
from psyroom_admin import roles
from tests import factories

pytestmark = pytest.mark.django_db


def _scores(campaign, value):
    return {c["key"]: value for c in campaign.rubric.criteria}


def _review_gold(campaign, user, value, decision):
    assignment = queue.queue_claim_next(campaign=campaign, counselor=user)
    assert assignment.item.state == "gold"
    return reviews.review_submit(
        candidate=assignment.item.candidate,
        assignment=assignment,
        reviewer=user,
        scores=_scores(campaign, value),
        decision=decision,
        base_version=assignment.item.candidate.version,
    )


@pytest.fixture
def gold_world(taxonomy, curator, counselor, other_counselor, monkeypatch):
    """Two reference items (all 4s, approve). The counselor: one matched exactly, one rejected with all 2s; the other
    counselor: one approved with all 5s. Plus one ordinary review by the counselor."""
    roles.roles_ensure()
    counselor.first_name, counselor.last_name = "Ada", "Quill"
    counselor.save()
    other_counselor.first_name, other_counselor.last_name = "Bo", "Stone"
    other_counselor.save()
    plain = [factories.make_candidate(content=factories.dialogue_content(prefix=f"p{i} ")) for i in range(3)]
    campaign = campaigns.campaign_create(
        creator=curator,
        name="gold",
        kind="dialogue",
        overlap=2,
        members=[counselor, other_counselor],
        candidate_ids=[c.pk for c in plain],
        blind=True,
        policy={"gold_rate": 0.5},
    )
    refs = [
        factories.make_candidate(content=factories.dialogue_content(prefix=f"g{i} "), status="approved")
        for i in range(2)
    ]
    for ref in refs:
        gold.gold_mark(campaign=campaign, candidate=ref, user=curator, scores=_scores(campaign, 4), decision="approve")
    monkeypatch.setattr(queue_selectors, "gold_draw", lambda **kwargs: 0.0)
    _review_gold(campaign, counselor, 4, "approve")
    _review_gold(campaign, counselor, 2, "reject")
    _review_gold(campaign, other_counselor, 5, "approve")
    monkeypatch.setattr(queue_selectors, "gold_draw", lambda **kwargs: 0.99)
    assignment = queue.queue_claim_next(campaign=campaign, counselor=counselor)
    assert assignment.item.state == "open"
    reviews.review_submit(
        candidate=assignment.item.candidate,
        assignment=assignment,
        reviewer=counselor,
        scores=_scores(campaign, 3),
        decision="approve",
        base_version=assignment.item.candidate.version,
    )
    # The gold reviews were yesterday's: a counselor sees only reviews of reference items from before today.
    Review.objects.filter(gold=True).update(created_at=timezone.now() - timedelta(days=1))
    return campaign


def _rows_by_rater(accuracy):
    return {row.rater: row for row in accuracy.rows}


@pytest.mark.parametrize("role", ["senior", "curator"])
def test_every_reviewer_with_the_numbers(request, gold_world, role):
    accuracy = gold_accuracy_for(user=request.getfixturevalue(role), campaign=gold_world, filters=AgreementFilters())
    rows = _rows_by_rater(accuracy)
    assert set(rows) == {"Ada Quill", "Bo Stone"} and accuracy.scope == "all"
    ada, bo = rows["Ada Quill"], rows["Bo Stone"]
    assert (ada.items, ada.decision_accuracy.value, ada.mad.value) == (2, 0.5, 1.0)
    assert (bo.items, bo.decision_accuracy.value, bo.mad.value) == (1, 1.0, 1.0)
    expected = stats.wilson_interval(1, 2)
    assert ada.decision_ci.low.value == pytest.approx(expected.low.value)
    assert ada.decision_ci.high.value == pytest.approx(expected.high.value)
    assert 0 < ada.decision_ci.low.value < 0.5 < ada.decision_ci.high.value < 1
    assert [value.value for _, value in ada.criteria] == [1.0] * len(gold_world.rubric.criteria)


def test_gold_reviews_count_nowhere_else(gold_world, senior):
    agreement = agreement_for(user=senior, campaign=gold_world, filters=AgreementFilters())
    assert agreement.reviews == 1
    funnel = funnel_compute(user=senior, filters=FunnelFilters(campaign=gold_world), everything=True)
    assert sum(row.reviews for row in funnel.throughput) == 1
    # The campaign's own 3 items, not the 2 reference items (approved elsewhere).
    assert sum(row.counts["total"] for row in funnel.stages) == 3
    assert sum(row.counts["approved"] for row in funnel.stages) == 0


def test_a_counselor_sees_only_their_own_row_from_before_today(gold_world, counselor, other_counselor):
    mine = gold_accuracy_for(user=counselor, campaign=gold_world, filters=AgreementFilters())
    assert mine.scope == "own" and [(r.rater, r.own, r.items) for r in mine.rows] == [("Ada Quill", True, 2)]
    # A review of a reference item today is not counted for its author yet.
    Review.objects.filter(gold=True, reviewer=other_counselor).update(created_at=timezone.now())
    assert gold_accuracy_for(user=other_counselor, campaign=gold_world, filters=AgreementFilters()).rows == []


def _client(user):
    api = APIClient()
    api.force_login(user)
    return api


def test_page_and_csv(gold_world, curator, counselor):
    url = reverse("dashboards:agreement", args=[gold_world.pk])
    page = _client(curator).get(url).content.decode()
    assert 'id="table-gold"' in page and "Ada Quill" in page and "Bo Stone" in page
    download = _client(curator).get(url, {"format": "csv", "table": "gold"})
    assert download.status_code == 200 and download["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(download.content.decode())))
    assert rows[0][:3] == ["Rater", "Reference items", "Decision accuracy"]
    assert sorted(r[0] for r in rows[1:]) == ["Ada Quill", "Bo Stone"]
    ada = next(r for r in rows[1:] if r[0] == "Ada Quill")
    assert ada[1:3] == ["2", "0.5000"] and ada[5] == "1.0000"
    own = _client(counselor).get(url).content.decode()
    assert 'id="table-gold"' in own and "Ada Quill" in own and "Bo Stone" not in own
    own_csv = _client(counselor).get(url, {"format": "csv", "table": "gold"}).content.decode()
    assert "Bo Stone" not in own_csv and "Rater " not in own_csv.split("\n", 1)[1]


def test_api_for_every_role(gold_world, curator, senior, counselor, other_counselor, outsider):
    url = f"/api/dashboards/campaigns/{gold_world.pk}/reference-accuracy/"
    for user in (curator, senior):
        body = _client(user).get(url)
        assert body.status_code == 200 and body.data["scope"] == "all"
        assert {row["rater"] for row in body.data["rows"]} == {"Ada Quill", "Bo Stone"}
    mine = _client(counselor).get(url)
    assert mine.status_code == 200 and [r["rater"] for r in mine.data["rows"]] == ["Ada Quill"]
    assert mine.data["rows"][0]["decision_accuracy"] == {"value": 0.5, "reason": ""}
    assert "Bo Stone" not in mine.content.decode()
    assert _client(outsider).get(url).status_code == 403
    assert _client(counselor).get(url, {"since": "yesterday"}).status_code == 400
    assert "colour" in _client(counselor).get(url, {"colour": "red"}).data
    assert (
        _client(counselor).get(f"/api/dashboards/campaigns/{gold_world.pk + 99}/reference-accuracy/").status_code == 404
    )


def test_blind_names_for_a_counselor_without_gold_reviews(gold_world, counselor, other_counselor, taxonomy):
    # A third member with no reviews of reference items: an empty table, no one else's name.
    third = factories.make_user(roles.COUNSELOR)
    gold_world.members.add(third)
    page = _client(third).get(reverse("dashboards:agreement", args=[gold_world.pk])).content.decode()
    assert "Ada Quill" not in page and "Bo Stone" not in page
    assert gold_accuracy_for(user=third, campaign=gold_world, filters=AgreementFilters()).rows == []
