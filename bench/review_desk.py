"""Benchmark the review desk (the campaign review page a counselor works at) on PostgreSQL: its server time, one
counselor, the same claimed item requested again and again, and the queries one request makes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python bench/review_desk.py [--requests 300]

It creates its own database (``psyroom_bench_desk`` on the same server unless ``--database``; dropped at the end
unless ``--keep``) and fills it the way a working day looks: a blind campaign (k = 2) of ``--items`` dialogues of 36
turns in Chinese, each with a sub-emotion and a scenario; on the item timed, a person's edit of one turn (two
revisions and a diff), a saved draft, and the other counselor's review and claims in its history. The page is
requested through Django's test Client (the whole middleware stack, the template rendered; no network), after a
few warm-up requests. The last line printed is one JSON object: the wall time's p50, p95 and max in ms, the p50 of
this process's CPU time per request (what does not grow when other work shares the cores), the database's share of
a request (its queries' round trips), the load average, and the queries one request makes.
"""

import argparse
import cProfile
import json
import os
import pstats
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLIENT_TEXT = "这几天我一直睡不好，一想到考试就心慌，怕自己又让父母失望。"
COUNSELOR_TEXT = "听起来考试给你带来了很大的压力。你愿意多说说让你最担心的是什么吗？"


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=500, help="dialogues in the campaign")
    parser.add_argument("--requests", type=int, default=300, help="timed requests of the page")
    parser.add_argument("--database", default="psyroom_bench_desk")
    parser.add_argument("--keep", action="store_true", help="do not drop the bench database")
    parser.add_argument("--profile", action="store_true", help="print where the timed requests spend their time")
    args = parser.parse_args()

    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    parts = urlparse(base)
    if not parts.scheme.startswith("postgres"):
        sys.exit("bench/review_desk.py needs DATABASE_URL=postgres://...")
    import psycopg

    admin_url = urlunparse(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.database}"')
    os.environ["DATABASE_URL"] = urlunparse(parts._replace(path=f"/{args.database}"))
    os.environ.setdefault("SECRET_KEY", "bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psyroom_admin.settings")
    # Production's settings (HTTPS: the requests are made as secure ones); with DEBUG on, Django would keep every
    # query's SQL.
    os.environ["DEBUG"] = "0"
    try:
        result = _run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    print(json.dumps(result))


def _run(args) -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test import Client
    from django.urls import reverse

    from annotations.rubrics import DIALOGUE_RUBRIC
    from annotations.services import campaigns, drafts, edits, queue, reviews
    from generation.models import Candidate, CandidateKind, Scenario, SubEmotion
    from generation.services.candidates import candidate_build, candidates_save_new
    from generation.services.taxonomy import taxonomy_load
    from psyroom_admin import roles

    call_command("migrate", verbosity=0)
    taxonomy_load()
    roles.roles_ensure()
    User = get_user_model()

    def user(name, role):
        person = User.objects.create_user(username=name, password="bench-only-password")
        person.groups.add(Group.objects.get(name=role))
        return person

    counselor, other, curator = (
        user("desk", roles.COUNSELOR),
        user("other", roles.COUNSELOR),
        user("cur", roles.CURATOR),
    )
    sub_emotion = SubEmotion.objects.get(key="anxiety.1")
    scenario = Scenario.objects.create(
        sub_emotion=sub_emotion, title="期末考试周", description="一名大学生在期末考试前失眠、心慌。", language="zh"
    )
    turns = []
    for i in range(18):
        turns += [{"role": "client", "text": f"{i}. {CLIENT_TEXT}"}, {"role": "counselor", "text": f"{COUNSELOR_TEXT}"}]
    built = [
        candidate_build(
            kind=CandidateKind.DIALOGUE,
            content={"turns": [{**t, "text": f"{n}-{t['text']}"} for t in turns]},
            language="zh",
            sub_emotion=sub_emotion,
            scenario=scenario,
        )
        for n in range(args.items)
    ]
    with transaction.atomic():
        candidates_save_new(candidates=built)

    ids = list(Candidate.objects.order_by("id").values_list("pk", flat=True))
    campaign = campaigns.campaign_create(
        creator=curator,
        name="期末焦虑",
        kind="dialogue",
        overlap=2,
        members=[counselor, other],
        guidelines="逐轮阅读，**每一项**都要评分；发现风险请标记。\n\n" + "- 先读完整段对话\n" * 20,
        candidate_ids=ids,
    )
    keys = [c["key"] for c in DIALOGUE_RUBRIC["criteria"]]
    # The other counselor reviewed the item first (a review, two claims in the history).
    theirs = queue.queue_claim_next(campaign=campaign, counselor=other)
    assert theirs is not None
    reviews.review_submit(
        candidate=theirs.item.candidate,
        assignment=theirs,
        reviewer=other,
        scores=dict.fromkeys(keys, 3),
        decision="needs_revision",
        comment="第二轮共情不足。",
        base_version=theirs.item.candidate.version,
    )
    assignment = queue.queue_claim_next(campaign=campaign, counselor=counselor)
    assert assignment is not None
    candidate = assignment.item.candidate
    edits.turn_edit(
        candidate=candidate, editor=counselor, index=3, text=COUNSELOR_TEXT.replace("很大", "不小"),
        base_version=candidate.version, category="clinical", reason="更贴切",
    )  # fmt: skip
    drafts.draft_save(user=counselor, candidate=candidate, data={"comment": "草稿", "decision": "approve"})

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    client = Client()
    client.force_login(counselor)
    url = reverse("annotations:campaign_item", args=[campaign.pk, candidate.pk])
    for _ in range(5):
        response = client.get(url, secure=True)
        if response.status_code != 200:
            raise RuntimeError(f"review page answered {response.status_code}")
    # Counted as the database is asked (a wrapper on every execute): the query log is emptied by each request.
    queries: list[float] = []

    def timed(execute, sql, *rest):
        started = time.perf_counter()
        try:
            return execute(sql, *rest)
        finally:
            queries.append((time.perf_counter() - started) * 1000)

    db_ms = []
    for _ in range(20):
        queries.clear()
        with connection.execute_wrapper(timed):
            client.get(url, secure=True)
        db_ms.append(sum(queries))
    # Wall time is what a counselor waits for; this process's CPU time (Python: middleware, view, template) is the
    # part that does not grow when other work shares the cores (the load average is printed with it).
    times, cpu = [], []
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    for _ in range(args.requests):
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(url, secure=True)
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"review page answered {response.status_code}")
    if profiler:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    return {
        "page": "campaign review (desk)",
        "items_in_campaign": args.items,
        "turns": len(turns),
        "requests": args.requests,
        "p50_ms": _percentile(times, 0.50),
        "p95_ms": _percentile(times, 0.95),
        "max_ms": round(max(times), 2),
        "cpu_p50_ms": _percentile(cpu, 0.50),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
        "queries": len(queries),
        # The database's share of a request (the 10 queries' round trips, 20 requests' median).
        "db_p50_ms": _percentile(db_ms, 0.50),
        "bytes": len(response.content),
    }


if __name__ == "__main__":
    main()
