"""Time a Psyche-R1 cross-selection run: N CPsyExam questions, K=2 (the bundled model under two names).

    python bench/question_run.py [--questions 20] [--split dev] [--max-new-tokens N] [--archive PATH/cpsyexam.zip]

Uses a temporary SQLite database (never a real one). The two model specs load the same weights, so the model is
held once and answers every question twice (one batched call per model and chunk). The last line printed is one
JSON object: questions, models, seconds (run_execute alone, model load included), seconds_per_question, stats.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = ROOT.parent / "shared" / "data" / "cpsyexam" / "cpsyexam.zip"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE, help="cpsyexam.zip")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--max-new-tokens", type=int, help="default: the bundled model spec's")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="psyroom-bench-") as tmp:
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/bench.sqlite3"
        sys.path.insert(0, str(ROOT))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psyroom_admin.settings")
        import django

        django.setup()
        from django.core.management import call_command

        from generation.importers.questions import questions_import
        from generation.models import Candidate, CandidateKind, ModelSpec
        from generation.services.modelspecs import modelspec_get_default
        from generation.services.runs import run_create, run_execute

        call_command("migrate", verbosity=0)
        questions_import(path=args.archive, split=args.split, limit=args.questions)
        questions = list(Candidate.objects.filter(kind=CandidateKind.QUESTION).order_by("id"))
        first = modelspec_get_default()
        ModelSpec.objects.create(
            name=f"{first.name}-twin", path=first.path, backend=first.backend, batch_size=first.batch_size
        )
        parameters = {"models": [first.name, f"{first.name}-twin"], "min_correct": 1}
        if args.max_new_tokens:
            parameters["max_new_tokens"] = args.max_new_tokens
        run = run_create(kind="question", questions=questions, parameters=parameters)
        started = time.perf_counter()
        run_execute(run_id=run.pk)
        seconds = time.perf_counter() - started
        run.refresh_from_db()
        print(
            json.dumps(
                {
                    "questions": len(questions),
                    "models": 2,
                    "status": run.status,
                    "done": run.done,
                    "max_new_tokens": run.parameters.get("max_new_tokens"),
                    "seconds": round(seconds, 1),
                    "seconds_per_question": round(seconds / max(1, len(questions)), 2),
                    "completion_tokens": run.completion_tokens,
                    "stats": run.stats,
                }
            )
        )


if __name__ == "__main__":
    main()
