"""The queue under concurrency, on PostgreSQL: many counselors claiming at once never give an item more than k live
slots, and nobody is served an item twice. (On SQLite writers are serialized; the plain tests are in
test_campaigns.py.)"""

import os
import threading

import pytest
from django.db import connection, connections
from django.db.models import Count

from annotations.models import Assignment, CampaignItem
from annotations.services import campaigns, queue, reviews
from annotations.services.rubrics import rubric_get_default
from psyroom_admin import roles
from tests import factories

THREADS = 24


def _require_postgresql():
    if connection.vendor != "postgresql":
        if os.environ.get("PSYROOM_REQUIRE_SERVICES") == "1":
            pytest.fail("the concurrent queue test needs PostgreSQL (PSYROOM_REQUIRE_SERVICES=1)")
        pytest.skip("the concurrent queue test needs PostgreSQL (DATABASE_URL=postgres://...)")


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_exceed_k(taxonomy):
    _require_postgresql()
    curator = factories.make_user(roles.CURATOR)
    people = [factories.make_user(roles.COUNSELOR) for _ in range(THREADS)]
    dialogues = [factories.make_candidate() for _ in range(10)]
    k = 3
    campaign = campaigns.campaign_create(
        creator=curator,
        name="race",
        kind="dialogue",
        overlap=k,
        members=people,
        candidate_ids=[d.pk for d in dialogues],
        rubric=rubric_get_default(kind="dialogue"),
    )
    scores = {c["key"]: 4 for c in campaign.rubric.criteria}
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def work(person):
        try:
            barrier.wait()
            for _ in range(6):
                assignment = queue.queue_claim_next(campaign=campaign, counselor=person)
                if assignment is None:
                    break
                if assignment.pk % 3 == 0:
                    queue.assignment_release(assignment=assignment, counselor=person)
                else:
                    reviews.review_submit(
                        candidate=assignment.item.candidate,
                        assignment=assignment,
                        reviewer=person,
                        scores=scores,
                        decision="approve",
                        base_version=assignment.item.candidate.version,
                    )
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(p,)) for p in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    live = (
        Assignment.objects.filter(status__in=[Assignment.Status.SUBMITTED, Assignment.Status.CLAIMED])
        .values("item")
        .annotate(n=Count("id"))
    )
    assert max(row["n"] for row in live) <= k
    twice = Assignment.objects.values("item", "counselor").annotate(n=Count("id")).filter(n__gt=1)
    assert not twice.exists()
    submitted = Assignment.objects.filter(status=Assignment.Status.SUBMITTED).count()
    assert submitted > 0
    # Every item with k submitted reviews left the open state.
    for item in CampaignItem.objects.filter(campaign=campaign):
        if item.assignments.filter(status=Assignment.Status.SUBMITTED).count() >= k:
            assert item.state != CampaignItem.State.OPEN
