"""Time every dashboard page and API endpoint, cold and warm, on PostgreSQL.

    DATABASE_URL=postgres://... python bench/dashboards.py --reviews 1000000 --candidates 100000

Creates its own throwaway test database (``create_test_db``, dropped at the end unless ``--keepdb``), fills it with
server-side SQL (``generate_series``): ``--candidates`` generated dialogues over the 35 sub-emotions from two runs
(two prompt versions), each with the supervisor's scores and the classifier's label in ``ai_review``; campaigns of
every candidate (the last of the first ones only) with k = 3 reviews of each across 50 counselors (scores near the
supervisor's, a time spent per review) until there are ``--reviews``. Then, signed in
as a curator with Django's test client, it requests each page and endpoint once with an empty cache (cold) and
``--warm`` times more (warm: the p50). The last line printed is one JSON object:
``{"reviews", "pages": {name: {"p50_ms", "cold_ms"}}, "agreement_cold_ms", "peak_rss_mb", ...}``; peak RSS is this
process's, which served every request.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fill(
    *, n_candidates: int, n_reviews: int, k: int, users: list[int], rubric_id: int, runs: list[int], creator_id: int
) -> int:
    from django.db import connection

    content = json.dumps(
        {
            "turns": [
                {"role": "client", "text": "I have been feeling tense before exams."},
                {"role": "counselor", "text": "That sounds hard. What helps you when it starts?"},
            ]
        }
    )
    keys = ["problem_orientation", "expression", "empathy", "interactive_communication", "safety"]
    # The supervisor's score of item i: 1 + (i * 7) % 5, the same on every criterion; the classifier's label: the
    # target four times in five, else the next sub-emotion.
    ai_scores = ", ".join(f"'{key}', jsonb_build_object('score', base, 'reason', '')" for key in keys)
    with connection.cursor() as cursor:
        cursor.execute("SELECT array_agg(id ORDER BY key), array_agg(key ORDER BY key) FROM generation_subemotion")
        sub_ids, sub_keys = cursor.fetchone()
        cursor.execute(
            f"""
            INSERT INTO generation_candidate (kind, status, content, language, version, ai_review, lineage, source,
                                              sub_emotion_id, run_id, run_index, created_at, updated_at)
            SELECT 'dialogue',
                   (ARRAY['generated','in_review','approved','approved','rejected','needs_revision'])[1 + i %% 6],
                   %s::jsonb, 'en', 1,
                   jsonb_build_object(
                       'supervisor', jsonb_build_object('threshold', 3, 'score', base, 'attempts',
                           jsonb_build_array(jsonb_build_object('mean', base, 'feedback', '',
                                                                'scores', jsonb_build_object({ai_scores})))),
                       'emotion', jsonb_build_object(
                           'label', CASE WHEN i %% 5 = 0 THEN (%s::text[])[1 + (i + 1) %% 35]
                                         ELSE (%s::text[])[1 + i %% 35] END,
                           'target', (%s::text[])[1 + i %% 35])),
                   '{{}}', '{{}}', (%s::bigint[])[1 + i %% 35], (%s::bigint[])[1 + i %% 2], i,
                   now() - (i %% 60) * interval '1 day', now()
            FROM (SELECT i, 1 + (i * 7) %% 5 AS base FROM generate_series(1, %s) AS i) AS items
            """,
            [content, sub_keys, sub_keys, sub_keys, sub_ids, runs, n_candidates],
        )
        cursor.execute(
            """
            INSERT INTO generation_revision (candidate_id, number, content, category, reason, created_at)
            SELECT id, 0, content, 'original', '', now() FROM generation_candidate
            """
        )
        # Campaigns of every candidate (the last one of the first items only) until there are ``n_reviews`` (rounded up
        # to k): each
        # candidate is reviewed k times in each campaign it is in, by k counselors that change from one campaign to
        # the next.
        campaign_ids = []
        remaining = n_reviews
        while remaining > 0:
            items = min(n_candidates, -(-remaining // k))
            campaign_ids.append(
                _fill_campaign(
                    cursor,
                    name="bench" if not campaign_ids else f"bench-{len(campaign_ids) + 1}",
                    number=len(campaign_ids),
                    items=items,
                    k=k,
                    users=users,
                    rubric_id=rubric_id,
                    creator_id=creator_id,
                    keys=keys,
                )
            )
            remaining -= items * k
        cursor.execute("ANALYZE")
    return campaign_ids[0]


def _fill_campaign(
    cursor, *, name: str, number: int, items: int, k: int, users: list[int], rubric_id: int, creator_id: int, keys
) -> int:
    """One campaign of the first ``items`` candidates, each reviewed by ``k`` counselors; its id."""
    cursor.execute(
        """
        INSERT INTO annotations_campaign (name, kind, rubric_id, overlap, guidelines, blind, policy,
                                          lease_seconds, selection, status, created_by_id, created_at)
        VALUES (%s, 'dialogue', %s, %s, '', true, '{}'::jsonb, 1800, '{}', 'open', %s, now())
        RETURNING id
        """,
        [name, rubric_id, k, creator_id],
    )
    campaign_id = cursor.fetchone()[0]
    cursor.execute(
        """
        INSERT INTO annotations_campaignitem (campaign_id, candidate_id, state, reviews_done, created_at)
        SELECT %s, id, 'done', %s, now() FROM generation_candidate ORDER BY id LIMIT %s
        """,
        [campaign_id, k, items],
    )
    cursor.execute(
        "INSERT INTO annotations_campaign_members (campaign_id, user_id) SELECT %s, unnest(%s::bigint[])",
        [campaign_id, users],
    )
    # Each clinician's score: the supervisor's, one up or down at random (clamped to 1-5), on every criterion.
    scores = ", ".join(f"'{key}', s" for key in keys)
    cursor.execute(
        f"""
        INSERT INTO annotations_review (candidate_id, revision_id, reviewer_id, rubric_id, scores, decision,
                                        comment, risk_flags, time_spent_s, campaign_id, created_at)
        SELECT c.id, r.id, (%s::bigint[])[1 + ((c.run_index * %s + j + %s) %% %s)], %s,
               jsonb_build_object({scores}),
               CASE WHEN s <= 2 THEN 'reject' WHEN s = 3 THEN 'needs_revision' ELSE 'approve' END,
               '', CASE WHEN random() < 0.01 THEN '["self_harm"]'::jsonb ELSE '[]'::jsonb END,
               (10 + random() * 300)::int, %s, c.created_at + (j + %s) * interval '1 hour'
        FROM annotations_campaignitem i
        JOIN generation_candidate c ON c.id = i.candidate_id
        JOIN generation_revision r ON r.candidate_id = c.id AND r.number = 0
        CROSS JOIN generate_series(0, %s - 1) AS j
        CROSS JOIN LATERAL (
            SELECT LEAST(5, GREATEST(1, (c.ai_review->'supervisor'->>'score')::numeric::int
                                        + (random() * 2.999)::int - 1)) AS s
        ) AS sc
        WHERE i.campaign_id = %s
        """,
        [users, k, number * 7, len(users), rubric_id, campaign_id, number * k, k, campaign_id],
    )
    return campaign_id


def _time(client, url: str, warm: int) -> tuple[float, float]:
    from django.core.cache import cache

    def once() -> float:
        started = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{url}: {response.status_code} {response.content[:300]!r}")
        return elapsed

    cache.clear()
    cold = once()
    return cold, statistics.median(once() for _ in range(warm))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=int, default=1_000_000)
    parser.add_argument("--candidates", type=int, default=100_000, help="generated dialogues (a campaign's items)")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--counselors", type=int, default=50)
    parser.add_argument("--warm", type=int, default=5, help="warm requests per page (their median is p50)")
    parser.add_argument(
        "--keepdb", action="store_true", help="keep the test database, and reuse it (no fill) when it has reviews"
    )
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("DATABASE_URL must name a PostgreSQL server: the fill is server-side SQL")
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("SECRET_KEY", "bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psyroom_admin.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    # Plain HTTP through the test client, as in the test suite (DEBUG is off where DATABASE_URL is set).
    settings.SECURE_SSL_REDIRECT = False
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False, keepdb=args.keepdb)
    try:
        figures = _bench(args, Client)
    finally:
        if not args.keepdb:
            connection.creation.destroy_test_db(old_name, verbosity=0)
    print(json.dumps(figures))


def _setup(args) -> tuple:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection

    from annotations.services.rubrics import rubric_get_default
    from generation.models import GenerationRun
    from generation.services.modelspecs import modelspec_get_default
    from generation.services.taxonomy import taxonomy_load
    from psyroom_admin import roles

    people = get_user_model().objects
    taxonomy_load()
    roles.roles_ensure()
    curator = people.create_user(username="bench-curator", password="x")
    curator.groups.add(Group.objects.get(name=roles.CURATOR))
    counselors = [people.create_user(username=f"bench-counselor-{i}", password="x") for i in range(args.counselors)]
    group = Group.objects.get(name=roles.COUNSELOR)
    for user in counselors:
        user.groups.add(group)
    spec = modelspec_get_default()
    runs = [
        GenerationRun.objects.create(kind="dialogue", count=1, model_spec=spec, prompt_version=version, targets=[])
        for version in ("v1", "v2")
    ]
    rubric = rubric_get_default(kind="dialogue")
    n_candidates = args.candidates
    started = time.perf_counter()
    campaign_id = _fill(
        n_candidates=n_candidates,
        n_reviews=args.reviews,
        k=args.k,
        users=[u.pk for u in counselors],
        rubric_id=rubric.pk,
        runs=[r.pk for r in runs],
        creator_id=curator.pk,
    )
    fill_s = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM annotations_review")
        reviews = cursor.fetchone()[0]
    print(f"filled {n_candidates} candidates, {reviews} reviews in {fill_s:.1f} s", file=sys.stderr)
    return curator, campaign_id, fill_s, reviews, n_candidates


def _bench(args, client_class) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotations.models import Campaign

    people = get_user_model().objects
    reused = args.keepdb and people.filter(username="bench-curator").exists()
    if reused:
        curator = people.get(username="bench-curator")
        campaign_id = Campaign.objects.get(name="bench").pk
        fill_s = 0.0
        n_candidates = args.candidates
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM annotations_review")
            reviews = cursor.fetchone()[0]
    else:
        curator, campaign_id, fill_s, reviews, n_candidates = _setup(args)
    client = client_class()
    client.force_login(curator)
    urls = {
        "index": "/dashboards/",
        "agreement": f"/dashboards/campaigns/{campaign_id}/agreement/",
        "agreement_api": f"/api/dashboards/campaigns/{campaign_id}/agreement/",
        "calibration": "/dashboards/calibration/",
        "calibration_api": "/api/dashboards/calibration/",
        "coverage": "/dashboards/coverage/",
        "coverage_api": "/api/dashboards/coverage/",
        "funnel": "/dashboards/funnel/",
        "funnel_api": "/api/dashboards/funnel/",
    }
    pages = {}
    for name, url in urls.items():
        cold, p50 = _time(client, url, args.warm)
        pages[name] = {"p50_ms": round(p50, 1), "cold_ms": round(cold, 1)}
        print(f"{name}: cold {cold:.0f} ms, warm p50 {p50:.0f} ms", file=sys.stderr)
    return {
        "reviews": reviews,
        "candidates": n_candidates,
        "database": connection.vendor,
        "fill_s": round(fill_s, 1),
        "pages": pages,
        "agreement_cold_ms": pages["agreement_api"]["cold_ms"],
        # ru_maxrss is in kilobytes on Linux.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


if __name__ == "__main__":
    main()
