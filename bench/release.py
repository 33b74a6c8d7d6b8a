"""Time a dataset release build on PostgreSQL: N approved dialogues of 16 turns, sft + dpo + Parquet, grouped
splits, exact and near-duplicate removal, the PII scan (redacting).

    DATABASE_URL=postgres://... python bench/release.py --dialogues 1000000

It creates a test database beside DATABASE_URL's (Django's test_<name>) and drops it afterwards, so that a real
database is never written to. The dialogues are filled by server-side SQL (``generate_series``), so the filling
costs this process nothing: each turn is 12 words drawn from a vocabulary by a hash of the dialogue, turn and word,
every 10th dialogue has a counselor edit (a DPO pair) and a parent (the one before: a group), every 50th (the 25th,
75th, ...) is a near-copy of the one before (one word added) and every 97th an exact copy. Each has one approving
review by one of five reviewers.

The build runs as an operator would run it, ``manage.py release build SPEC.json`` in a child process, and its peak
resident memory is the child's ``ru_maxrss``. The last line printed is one JSON object: dialogues, fill_seconds,
seconds, dialogues_per_s, peak_rss_mb, cpu_seconds (the child's user and system time: others share the machine),
the build's steps as it logs them (pass1_seconds: reading, gates and dedup; splits_seconds; pass2_seconds: the rows
into JSONL and Parquet, and write_dialogues_per_s, the candidates written a second), the load average before and
after, rows per file kind, dropped, bytes.
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = re.compile(r"timings: pass1=([\d.]+)s splits=([\d.]+)s pass2=([\d.]+)s candidates=(\d+)")

WORDS = (  # noqa: SIM905 (a list literal of 140 words would take 140 lines once formatted)
    "i you we they feel think know want need worry sleep work school family friend partner mother father exam "
    "job money week night morning day always never often sometimes again still really very quite so too tired "
    "anxious sad angry alone afraid calm hopeful lost stuck tense heavy light better worse hard easy help talk "
    "listen remember forget start stop try keep leave stay change notice hope fear doubt trust blame shame guilt "
    "home room phone letter message meeting class test deadline boss teacher sister brother child neighbour city "
    "train bus walk run eat cook read write call wait plan decide choose breathe rest cry laugh smile shout argue "
    "because when after before while until since although if unless whether maybe perhaps probably certainly "
    "what how why where who which that this those these something nothing everything anyone someone nobody"
).split()


def fill(count: int) -> None:
    """N approved dialogues, their revisions and reviews, written by the database itself."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from annotations.services.rubrics import rubric_get_default
    from generation.models import SubEmotion

    rubric = rubric_get_default(kind="dialogue")
    scores = json.dumps({c["key"]: 4 for c in rubric.criteria})
    reviewers = [get_user_model().objects.create_user(username=f"bench-reviewer-{i}").pk for i in range(5)]
    sub_emotions = list(SubEmotion.objects.order_by("key").values_list("pk", flat=True))
    sentence = (
        "(SELECT string_agg((%(words)s::text[])[1 + abs(hashtext(m || ':' || t || ':' || k)) %% %(nwords)s], ' ')"
        " FROM generate_series(1, 12) k)"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO generation_candidate (kind, status, content, language, version, ai_review, lineage, source,
                                              sub_emotion_id, created_at, updated_at)
            SELECT 'dialogue', 'approved',
                   jsonb_build_object('turns', (
                       SELECT jsonb_agg(jsonb_build_object(
                           'role', CASE WHEN t %% 2 = 0 THEN 'client' ELSE 'counselor' END,
                           'text', {sentence} || CASE WHEN n %% 50 = 25 AND t = 15 THEN ' indeed' ELSE '' END
                       ) ORDER BY t)
                       FROM generate_series(0, 15) t)),
                   'en', 1, '{{}}', '{{}}', '{{}}', (%(subs)s::bigint[])[1 + n %% %(nsubs)s], now(), now()
            FROM (SELECT n, CASE WHEN n %% 50 = 25 OR n %% 97 = 0 THEN n - 1 ELSE n END AS m
                  FROM generate_series(1, %(count)s) n) s
            ORDER BY n
            """,
            {"words": WORDS, "nwords": len(WORDS), "subs": sub_emotions, "nsubs": len(sub_emotions), "count": count},
        )
        cursor.execute(
            """
            INSERT INTO generation_revision (candidate_id, number, content, category, reason, created_at)
            SELECT id, 0, content, 'original', '', now() FROM generation_candidate
            """
        )
        # Every 10th dialogue: a counselor edit of turn 1, approved (a DPO pair), and a parent (a group of two).
        cursor.execute(
            """
            INSERT INTO generation_revision (candidate_id, number, content, category, reason, created_at)
            SELECT id, 1,
                   jsonb_set(content, '{turns,1,text}',
                             to_jsonb('It sounds like this has weighed on you for a while. What helps, even a little?'
                                      || ' (' || id || ')')),
                   'clinical', 'bench', now()
            FROM generation_candidate WHERE id % 10 = 0
            """
        )
        cursor.execute(
            """
            UPDATE generation_candidate c SET approved_revision_id = r.id, version = r.number + 1,
                   content = r.content, parent_id = CASE WHEN c.id % 10 = 0 THEN c.id - 1 END
            FROM generation_revision r
            WHERE r.candidate_id = c.id AND r.number = CASE WHEN c.id % 10 = 0 THEN 1 ELSE 0 END
            """
        )
        cursor.execute(
            """
            INSERT INTO annotations_review (candidate_id, revision_id, reviewer_id, rubric_id, scores, decision,
                                            comment, risk_flags, time_spent_s, created_at)
            SELECT c.id, c.approved_revision_id, (%(reviewers)s::bigint[])[1 + c.id %% 5], %(rubric)s,
                   %(scores)s::jsonb, 'approve', '', '[]', 60, now()
            FROM generation_candidate c
            """,
            {"reviewers": reviewers, "rubric": rubric.pk, "scores": scores},
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=int, default=1_000_000)
    parser.add_argument("--near", type=float, default=0.9, help="near-duplicate threshold (MinHash Jaccard)")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        raise SystemExit("set DATABASE_URL to a PostgreSQL server: the benchmark fills its data with server-side SQL")

    with tempfile.TemporaryDirectory(prefix="psyroom-bench-") as tmp:
        os.environ["PSYROOM_RELEASES_DIR"] = f"{tmp}/releases"
        sys.path.insert(0, str(ROOT))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psyroom_admin.settings")
        import django

        django.setup()
        from django.db import connection

        from generation.services.taxonomy import taxonomy_load

        old_name = connection.settings_dict["NAME"]
        test_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        os.environ["DATABASE_URL"] = urlparse(os.environ["DATABASE_URL"])._replace(path=f"/{test_name}").geturl()
        try:
            taxonomy_load()
            started = time.perf_counter()
            fill(args.dialogues)
            fill_seconds = time.perf_counter() - started
            print(f"filled {args.dialogues:,} dialogues in {fill_seconds:.1f} s", flush=True)
            connection.close()
            spec = {
                "formats": ["sft", "dpo"],
                "splits": {"train": 0.8, "validation": 0.1, "test": 0.1, "seed": 0},
                "dedup": {"exact": True, "near": args.near},
                "pii": {"action": "redact"},
                "parquet": True,
            }
            spec_path = Path(tmp) / "bench.json"
            spec_path.write_text(json.dumps(spec))
            load_before = os.getloadavg()[0]
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, str(ROOT / "manage.py"), "release", "build", str(spec_path)],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            seconds = time.perf_counter() - started
            if done.returncode:
                raise SystemExit(f"the build failed: {done.stderr.strip()[-2000:]}")
            print(done.stdout.strip(), f"in {seconds:.1f} s", flush=True)
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            peak_rss_mb = usage.ru_maxrss / 1024
            cpu_seconds = usage.ru_utime + usage.ru_stime
            load_after = os.getloadavg()[0]
            steps = TIMINGS.search(done.stderr)
            if steps is None:
                raise SystemExit(f"the build logged no timings: {done.stderr.strip()[-2000:]}")
            pass1, split_seconds, pass2 = (float(steps.group(i)) for i in (1, 2, 3))
            manifest = json.loads(next(Path(tmp, "releases").glob("*/manifest.json")).read_text())
        finally:
            connection.close()
            connection.creation.destroy_test_db(old_name, verbosity=0)

    rows: dict[str, int] = {}
    for entry in manifest["files"]:
        if entry["name"].endswith(".jsonl"):
            fmt = entry["name"].split("/")[0]
            rows[fmt] = rows.get(fmt, 0) + entry["rows"]
    figures = {
        "dialogues": args.dialogues,
        "fill_seconds": round(fill_seconds, 1),
        "seconds": round(seconds, 2),
        "dialogues_per_s": round(args.dialogues / seconds, 1),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "pass1_seconds": pass1,
        "splits_seconds": split_seconds,
        "pass2_seconds": pass2,
        "write_dialogues_per_s": round(int(steps.group(4)) / pass2, 1),
        "load_before": round(load_before, 2),
        "load_after": round(load_after, 2),
        "candidates": manifest["candidates"],
        "rows": rows,
        "dropped": manifest["dropped"],
        "bytes": sum(f["bytes"] for f in manifest["files"]),
        "database": "postgresql",
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
