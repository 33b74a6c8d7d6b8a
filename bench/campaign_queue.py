"""Benchmark the campaign queue on PostgreSQL: 1,000,000 candidates in a campaign with k = 3, 50 counselors
claiming and submitting at once through ``annotations.services.queue`` (the service itself, one process and connection
per counselor).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python bench/campaign_queue.py --seconds 30

It creates its own database (``psyroom_bench`` on the same server, dropped at the end unless ``--keep``), fills it
with server-side ``INSERT ... SELECT generate_series``, then runs the counselors. By default each claims again as
soon as it has submitted (a saturated queue: on a small machine the figures are then queueing for the CPU); with
``--think-ms`` each starts at a random moment within that time and pauses about that long after every submit, as
people do. Each counselor claims and skips one item before the clock runs, to warm its process. Afterwards it
counts from the database the items with more than k live slots (``over_assigned``) and the (item, person) pairs
served twice (``served_twice``); both must be 0. Then it times the review page (the campaign item view, Django's
test Client, one process per counselor) against the same data. The last line printed is one JSON object.
"""

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=1_000_000)
    parser.add_argument("--counselors", type=int, default=50)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0,
        help="each counselor pauses about this long (0.5x to 1.5x) after each submit; 0: claim again at once",
    )
    parser.add_argument("--page-seconds", type=float, default=15, help="how long to time the review page")
    parser.add_argument("--database", default="psyroom_bench")
    parser.add_argument("--keep", action="store_true", help="do not drop the bench database")
    args = parser.parse_args()

    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    parts = urlparse(base)
    if not parts.scheme.startswith("postgres"):
        sys.exit("bench/campaign_queue.py needs DATABASE_URL=postgres://...")
    import psycopg

    admin_url = urlunparse(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.database}"')
        conn.execute(f'CREATE DATABASE "{args.database}"')
    os.environ["DATABASE_URL"] = urlunparse(parts._replace(path=f"/{args.database}"))
    os.environ.setdefault("SECRET_KEY", "bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psyroom_admin.settings")
    try:
        result = _run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    print(json.dumps(result))


def _fill(args, users, rubric_id, creator_id) -> int:
    from django.db import connection

    turns = json.dumps(
        {
            "turns": [
                {"role": "client", "text": "I have been feeling tense before exams."},
                {"role": "counselor", "text": "That sounds hard. What helps you when it starts?"},
            ]
        }
    )
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO generation_candidate (kind, status, content, language, version, ai_review, lineage, source,
                                              created_at, updated_at)
            SELECT 'dialogue', 'generated', %s::jsonb, 'en', 1, '{}', '{}', '{}', now(), now()
            FROM generate_series(1, %s)
            """,
            [turns, args.candidates],
        )
        cursor.execute(
            """
            INSERT INTO generation_revision (candidate_id, number, content, category, reason, created_at)
            SELECT id, 0, content, 'original', '', now() FROM generation_candidate
            """
        )
        cursor.execute(
            """
            INSERT INTO annotations_campaign (name, kind, rubric_id, overlap, guidelines, blind, policy,
                                              lease_seconds, selection, status, created_by_id, created_at)
            VALUES ('bench', 'dialogue', %s, %s, '', true, %s::jsonb, 1800, '{}', 'open', %s, now())
            RETURNING id
            """,
            [rubric_id, args.k, json.dumps({"min_approvals": args.k, "min_mean": 3.0, "no_risk": True}), creator_id],
        )
        campaign_id = cursor.fetchone()[0]
        cursor.execute(
            """
            INSERT INTO annotations_campaignitem (campaign_id, candidate_id, state, reviews_done, created_at)
            SELECT %s, id, 'open', 0, now() FROM generation_candidate ORDER BY id
            """,
            [campaign_id],
        )
        cursor.execute(
            "INSERT INTO annotations_campaign_members (campaign_id, user_id) SELECT %s, unnest(%s::bigint[])",
            [campaign_id, [u.pk for u in users]],
        )
        cursor.execute("ANALYZE")
    print(f"filled {args.candidates} candidates in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return campaign_id


def _run(args) -> dict:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from annotations.models import Campaign
    from annotations.services.rubrics import rubric_get_default
    from psyroom_admin import roles
    from tests import factories

    roles.roles_ensure()
    rubric = rubric_get_default(kind="dialogue")
    creator = factories.make_user(roles.CURATOR)
    users = [factories.make_user(roles.COUNSELOR) for _ in range(args.counselors)]
    campaign = Campaign.objects.get(pk=_fill(args, users, rubric.pk, creator.pk))
    scores = {c["key"]: 4 for c in rubric.criteria}
    stop = time.time() + args.seconds
    started = time.perf_counter()
    results = _in_processes(_counselor, [(user.pk, campaign.pk, scores, args, stop) for user in users])
    elapsed = time.perf_counter() - started
    claim_ms = [ms for times, _ in results for ms in times]
    errors = [error for _, error in results if error]

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM (
                SELECT item_id FROM annotations_assignment
                WHERE status = 'submitted' OR (status = 'claimed' AND lease_expires_at > now())
                GROUP BY item_id HAVING count(*) > %s) over
            """,
            [args.k],
        )
        over_assigned = cursor.fetchone()[0]
        cursor.execute(
            """SELECT count(*) FROM (SELECT 1 FROM annotations_assignment GROUP BY item_id, counselor_id
                                      HAVING count(*) > 1) twice"""
        )
        served_twice = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM annotations_review")
        reviews = cursor.fetchone()[0]

    page = _time_review_page(args, campaign, users)
    return {
        "candidates": args.candidates,
        "k": args.k,
        "counselors": args.counselors,
        "think_ms": args.think_ms,
        "seconds": round(elapsed, 1),
        "claims": len(claim_ms),
        "reviews": reviews,
        "claims_per_s": round(len(claim_ms) / elapsed, 1),
        "p50_ms": _percentile(claim_ms, 0.50),
        "p95_ms": _percentile(claim_ms, 0.95),
        "over_assigned": over_assigned,
        "served_twice": served_twice,
        "errors": len(errors),
        "page_p50_ms": page["p50"],
        "page_p95_ms": page["p95"],
        "page_requests": page["n"],
    }


def _in_processes(function, jobs: list[tuple]) -> list:
    """Run ``function(*job)`` for every job at once, each in a process of its own (forked: Django is set up, and
    each opens its own connection), so that one interpreter's lock is not part of the figures."""
    import multiprocessing

    from django.db import connections

    import annotations.services.queue  # noqa: F401 - imported once here, not in every process
    import annotations.views.campaigns  # noqa: F401

    connections.close_all()
    with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
        return pool.starmap(function, jobs, chunksize=1)


def _counselor(user_pk: int, campaign_pk: int, scores: dict, args, stop: float) -> tuple[list[float], str]:
    """One counselor: claim, submit, (pause), until ``stop``; returns the claims' times in ms and an error, if any."""
    from django.contrib.auth import get_user_model
    from django.db import connections

    from annotations.models import Campaign
    from annotations.services import queue, reviews

    mine: list[float] = []
    pace = random.Random(user_pk)
    try:
        user = get_user_model().objects.get(pk=user_pk)
        campaign = Campaign.objects.get(pk=campaign_pk)
        # A server process has served requests before: one claim, given back, opens the connection and warms the
        # process's caches before the clock runs (a first claim in a new process takes about three times as long).
        warm = queue.queue_claim_next(campaign=campaign, counselor=user)
        if warm is not None:
            queue.assignment_release(assignment=warm, counselor=user)
        if args.think_ms:  # people do not all start in the same millisecond
            time.sleep(args.think_ms * pace.random() / 1000)
        while time.time() < stop:
            t = time.perf_counter()
            assignment = queue.queue_claim_next(campaign=campaign, counselor=user)
            mine.append((time.perf_counter() - t) * 1000)
            if assignment is None:
                break
            reviews.review_submit(
                candidate=assignment.item.candidate,
                assignment=assignment,
                reviewer=user,
                scores=scores,
                decision="approve",
                base_version=assignment.item.candidate.version,
            )
            if args.think_ms:
                time.sleep(args.think_ms * pace.uniform(0.5, 1.5) / 1000)
    except Exception as error:  # noqa: BLE001 - counted and reported
        return mine, repr(error)
    finally:
        connections.close_all()
    return mine, ""


def _time_review_page(args, campaign, users) -> dict:
    """Server time of the review page (the campaign item a counselor claimed), the counselors at once."""
    stop = time.time() + args.page_seconds
    results = _in_processes(_page_user, [(user.pk, campaign.pk, args, stop) for user in users])
    times = [ms for mine in results for ms in mine]
    return {"p50": _percentile(times, 0.5), "p95": _percentile(times, 0.95), "n": len(times)}


def _page_user(user_pk: int, campaign_pk: int, args, stop: float) -> list[float]:
    """One counselor's claimed item page, loaded again and again (with pauses under ``--think-ms``) until ``stop``."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connections
    from django.test import Client
    from django.urls import reverse

    from annotations.models import Campaign
    from annotations.services import queue

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]  # the test client's host
    mine: list[float] = []
    pace = random.Random(user_pk)
    try:
        user = get_user_model().objects.get(pk=user_pk)
        campaign = Campaign.objects.get(pk=campaign_pk)
        client = Client()
        client.force_login(user)
        assignment = queue.queue_claim_next(campaign=campaign, counselor=user)
        if assignment is None:
            return mine
        url = reverse("annotations:campaign_item", args=[campaign.pk, assignment.item.candidate_id])
        client.get(url)  # warms the process (templates, caches) before the clock runs
        if args.think_ms:
            time.sleep(args.think_ms * pace.random() / 1000)
        while time.time() < stop:
            t = time.perf_counter()
            response = client.get(url)
            mine.append((time.perf_counter() - t) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"review page answered {response.status_code}")
            if args.think_ms:
                time.sleep(args.think_ms * pace.uniform(0.5, 1.5) / 1000)
    finally:
        connections.close_all()
    return mine


if __name__ == "__main__":
    main()
