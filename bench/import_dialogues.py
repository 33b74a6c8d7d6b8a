"""Time dialogue imports into a fresh, throwaway database, then a re-import (all duplicates).

    python bench/import_dialogues.py [--cpsycoun ../shared/data/cpsycoun/cpsycound-dialogues.tar.gz]
    python bench/import_dialogues.py --messages 1000000

The first imports the CPsyCounD archive as it is shipped (read as a stream, never unpacked to disk), in this
process. The second writes a messages JSONL file of N short dialogues (a third in Chinese; ids, some sub-emotion
labels, system prompts and risk phrases, as exports carry them) to a temporary file, then runs
``manage.py import_dialogues FILE --format messages`` in a child process, as an operator would, and reports its
peak resident memory (the child's ``ru_maxrss``): the import's own, not this script's.

Without DATABASE_URL it uses a temporary SQLite file. With DATABASE_URL it creates a test database beside that one
(Django's test_<name>) and drops it afterwards, so that a real database is never written to. The last line printed
is one JSON object: dialogues, seconds, dialogues_per_s, reimport_seconds, database; with --messages also
file_mb and peak_rss_mb (``seconds`` is then the whole command's, its start included).
"""

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = ROOT.parent / "shared" / "data" / "cpsycoun" / "cpsycound-dialogues.tar.gz"

_CLIENT_EN = [
    "I keep lying awake before exams, going over everything I might get wrong.",
    "My manager criticised my report in front of the whole team.",
    "Since my dog died the house feels empty and I don't want to see anyone.",
    "My partner and I argue about money almost every week.",
    "I feel like nobody at school notices me.",
    "My mother calls me every day and I feel smothered.",
]
_COUNSELOR_EN = [
    "That sounds exhausting. What goes through your mind when it happens?",
    "How did you respond in that moment?",
    "It makes sense that you feel that way. Can you tell me more?",
    "What would help you feel a little safer right now?",
    "When did you first notice this?",
]
_CLIENT_ZH = [
    "我最近压力很大，晚上总是睡不着。",
    "我和男朋友总是吵架，不知道该怎么办。",
    "工作上的事情让我很焦虑，每天都提心吊胆。",
    "我觉得自己什么都做不好。",
    "父母总是拿我和别人比较。",
]
_COUNSELOR_ZH = [
    "能具体说说是什么让你感到压力吗？",
    "听起来你很委屈，这种感觉持续多久了？",
    "我能理解你的感受，你愿意多讲一点吗？",
    "当时发生了什么？",
    "我们一起来看看有什么办法。",
]
_RISK = {"en": "Some nights I don't want to live like this.", "zh": "有时候我觉得不想活了。"}


def messages_lines(count: int, seed: int = 14):
    """``count`` JSONL lines of short, distinct dialogues (one to three exchanges)."""
    rng = random.Random(seed)
    for n in range(count):
        zh = rng.random() < 0.33
        clients, counselors = (_CLIENT_ZH, _COUNSELOR_ZH) if zh else (_CLIENT_EN, _COUNSELOR_EN)
        messages = []
        if rng.random() < 0.2:
            messages.append({"role": "system", "content": "You are a warm, careful counselor."})
        for turn in range(rng.randint(1, 3)):
            text = rng.choice(clients)
            if turn == 0:
                # Every dialogue is its own: the week it began and the case number make it so.
                weeks = rng.randint(1, 52)
                text += f"（{weeks}周前开始，个案{n}）" if zh else f" It began {weeks} weeks ago (case {n})."
            elif rng.random() < 0.01:
                text = _RISK["zh" if zh else "en"]
            messages += [{"role": "user", "content": text}, {"role": "assistant", "content": rng.choice(counselors)}]
        record = {"id": f"chat-{n:07d}", "messages": messages}
        if rng.random() < 0.3:
            record["sub_emotion"] = rng.choice(["anxiety.1", "anxiety.2", "depression.1"])
        yield json.dumps(record, ensure_ascii=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpsycoun", type=Path, default=DEFAULT_ARCHIVE, help="CPsyCounD .tar.gz (or a folder)")
    parser.add_argument("--messages", type=int, metavar="N", help="import a generated messages JSONL of N dialogues")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="psyroom-bench-") as tmp:
        own_database = "DATABASE_URL" not in os.environ
        if own_database:
            os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/bench.sqlite3"
        sys.path.insert(0, str(ROOT))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psyroom_admin.settings")
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        from generation.importers.dialogues import dialogues_import
        from generation.services.taxonomy import taxonomy_load

        if own_database:
            call_command("migrate", verbosity=0)
        else:
            old_name = connection.settings_dict["NAME"]
            test_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
            # The child process must write to the throwaway database too.
            os.environ["DATABASE_URL"] = urlparse(os.environ["DATABASE_URL"])._replace(path=f"/{test_name}").geturl()
        taxonomy_load()
        connection.close()
        try:
            if args.messages:
                figures = _messages(args.messages, Path(tmp))
            else:
                started = time.perf_counter()
                first = dialogues_import(path=args.cpsycoun, format="cpsycoun")
                seconds = time.perf_counter() - started
                started = time.perf_counter()
                again = dialogues_import(path=args.cpsycoun, format="cpsycoun")
                reimport_seconds = time.perf_counter() - started
                if again.created or again.duplicates != first.created + first.duplicates:
                    raise SystemExit(f"the re-import should have found only duplicates: {again}")
                print(f"{first.files} files: {first.created} created, {first.duplicates} duplicates within the set")
                figures = {"dialogues": first.created, "seconds": round(seconds, 3),
                           "dialogues_per_s": round(first.created / seconds, 1),
                           "reimport_seconds": round(reimport_seconds, 3)}  # fmt: skip
        finally:
            if not own_database:
                connection.creation.destroy_test_db(old_name, verbosity=0)

    print(json.dumps({**figures, "database": connection.vendor}))


def _messages(count: int, tmp: Path) -> dict:
    path = tmp / "messages.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for line in messages_lines(count):
            out.write(line + "\n")
    file_mb = path.stat().st_size / 2**20
    print(f"wrote {count:,} dialogues, {file_mb:.1f} MB, to {path}", flush=True)

    def run() -> tuple[float, int, int]:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "import_dialogues", str(path), "--format", "messages"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        seconds = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(f"the import failed: {done.stderr.strip()[-2000:]}")
        created, duplicates = map(int, re.search(r"Imported (\d+) dialogues \((\d+) duplicates", done.stdout).groups())
        print(done.stdout.strip(), f"in {seconds:.1f} s", flush=True)
        return seconds, created, duplicates

    seconds, created, duplicates = run()
    # ru_maxrss of the children waited for (kilobytes on Linux): the import command's own peak.
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    reimport_seconds, again, repeated = run()
    if again or repeated != count:
        raise SystemExit(f"the re-import should have found only duplicates: {again} created, {repeated} skipped")
    return {
        "dialogues": created,
        "duplicates": duplicates,
        "file_mb": round(file_mb, 1),
        "seconds": round(seconds, 2),
        "dialogues_per_s": round(created / seconds, 1),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "reimport_seconds": round(reimport_seconds, 2),
    }


if __name__ == "__main__":
    main()
