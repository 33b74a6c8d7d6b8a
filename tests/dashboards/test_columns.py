"""dashboards.columns: integer columns read as arrays (on PostgreSQL a binary array the database builds), and the
codes the agreement reads with it, the same on SQLite and PostgreSQL whatever a review's JSON holds."""

import numpy as np
import pytest
from django.db.models import F, Value

from annotations.models import Review
from dashboards import selectors
from dashboards.columns import int_columns
from dashboards.selectors import AgreementFilters

from .conftest import add_review, make_campaign

pytestmark = pytest.mark.django_db


def test_columns_in_the_order_of_the_first(taxonomy, curator, counselor, other_counselor):
    campaign, dialogues = make_campaign(curator, [counselor, other_counselor], 3)
    made = [add_review(campaign, d, r, 3) for d in reversed(dialogues) for r in (other_counselor, counselor)]
    ids, candidates, reviewers, doubled = int_columns(
        Review.objects.filter(campaign=campaign).order_by("-id"), "id", "candidate_id", "reviewer_id", F("id") * 2
    )
    expected = sorted(made, key=lambda r: r.pk)
    assert ids.dtype == np.int64 and ids.tolist() == [r.pk for r in expected]
    assert candidates.tolist() == [r.candidate_id for r in expected]
    assert reviewers.tolist() == [r.reviewer_id for r in expected]
    assert doubled.tolist() == [2 * r.pk for r in expected]


def test_no_rows_are_empty_columns(taxonomy):
    columns = int_columns(Review.objects.filter(pk=-1), "id", "reviewer_id")
    assert [c.tolist() for c in columns] == [[], []]


def test_a_null_is_an_error_not_a_missing_row(taxonomy, curator, counselor, other_counselor):
    campaign, dialogues = make_campaign(curator, [counselor, other_counselor], 2)
    for d in dialogues:
        add_review(campaign, d, counselor, 3)
    with pytest.raises(ValueError, match="NULL"):
        int_columns(Review.objects.filter(campaign=campaign), "id", Value(None))


# What a review's JSON may hold for one criterion (review_submit stores whole scores only; the rows here are written
# straight into the table) and the code it counts as: a JSON number equal to a score of the scale, nothing else.
HOSTILE_SCORES = [
    (1, 0),
    (5, 4),
    (3.0, 2),
    ("3", -1),
    (3.5, -1),
    (0, -1),
    (6, -1),
    (-1, -1),
    (None, -1),
    (True, -1),
    ([3], -1),
    ({"score": 3}, -1),
    ("x" * 10_000, -1),
]


def test_score_codes_of_hostile_json(taxonomy, curator, counselor, other_counselor, senior):
    campaign, dialogues = make_campaign(curator, [counselor, other_counselor], len(HOSTILE_SCORES) + 1)
    first = campaign.rubric.criteria[0]["key"]
    for dialogue, (value, _) in zip(dialogues, HOSTILE_SCORES, strict=False):
        review = add_review(campaign, dialogue, counselor, 2)
        scores = dict(review.scores)
        scores[first] = value
        Review.objects.filter(pk=review.pk).update(scores=scores)
    # A review with the criterion missing altogether.
    review = add_review(campaign, dialogues[-1], counselor, 2)
    Review.objects.filter(pk=review.pk).update(scores={k: v for k, v in review.scores.items() if k != first})
    data = selectors._read(campaign, AgreementFilters())
    assert data is not None
    criterion = data.criteria[0]
    coded = dict(zip(criterion.review.tolist(), criterion.codes.tolist(), strict=True))
    # Units are dialogues in id order; one review each, so a unit's index is its review's.
    expected = {i: code for i, (_, code) in enumerate(HOSTILE_SCORES) if code >= 0}
    assert coded == expected
    # The other criteria kept their 2 (code 1) everywhere except where the key was dropped.
    assert data.criteria[1].codes.tolist() == [1] * (len(HOSTILE_SCORES) + 1)
    assert data.decision.codes.tolist() == [selectors.DECISIONS.index("reject")] * (len(HOSTILE_SCORES) + 1)


def test_flags_are_read_for_the_flagged_reviews_only(taxonomy, curator, counselor, other_counselor):
    campaign, dialogues = make_campaign(curator, [counselor, other_counselor], 4)
    for i, d in enumerate(dialogues):
        add_review(campaign, d, counselor, 3, flags=["self_harm"] if i == 1 else [])
        add_review(campaign, d, other_counselor, 3, flags=["self_harm", "other"] if i in (1, 2) else [])
    data = selectors._read(campaign, AgreementFilters())
    assert data is not None
    flags = {dim.key: dim.codes.tolist() for dim in data.flags}
    # Reviews in id order: (unit 0: counselor, other), (unit 1: ...), ...
    assert flags[selectors.ANY_FLAG] == [0, 0, 1, 1, 0, 1, 0, 0]
    assert flags["self_harm"] == [0, 0, 1, 1, 0, 1, 0, 0]
    assert flags["other"] == [0, 0, 0, 1, 0, 1, 0, 0]
