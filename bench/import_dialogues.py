"""Time a full CPsyCounD import into a fresh, throwaway database, then a re-import (all duplicates).

    python bench/import_dialogues.py [--cpsycoun ../shared/data/cpsycoun/cpsycound-dialogues.tar.gz]

Without DATABASE_URL it uses a temporary SQLite file. With DATABASE_URL it creates a test database beside that one
(Django's test_<name>) and drops it afterwards, so that a real database is never written to. The last line printed
is one JSON object: dialogues, seconds, dialogues_per_s, reimport_seconds, database.
"""

import argparse
import json
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = ROOT.parent / "shared" / "data" / "cpsycoun" / "cpsycound-dialogues.tar.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpsycoun", type=Path, default=DEFAULT_ARCHIVE, help="CPsyCounD .tar.gz")
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

        from generation.importers import dialogues_import

        if own_database:
            call_command("migrate", verbosity=0)
        else:
            old_name = connection.settings_dict["NAME"]
            connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        try:
            data = Path(tmp) / "data"
            with tarfile.open(args.cpsycoun) as archive:
                archive.extractall(data, filter="data")

            started = time.perf_counter()
            first = dialogues_import(path=data, format="cpsycoun")
            seconds = time.perf_counter() - started

            started = time.perf_counter()
            again = dialogues_import(path=data, format="cpsycoun")
            reimport_seconds = time.perf_counter() - started
            if again.created or again.duplicates != first.created + first.duplicates:
                raise SystemExit(f"the re-import should have found only duplicates: {again}")
        finally:
            if not own_database:
                connection.creation.destroy_test_db(old_name, verbosity=0)

    print(f"{first.files} files: {first.created} created, {first.duplicates} duplicates within the set")
    print(
        json.dumps(
            {
                "dialogues": first.created,
                "seconds": round(seconds, 3),
                "dialogues_per_s": round(first.created / seconds, 1),
                "reimport_seconds": round(reimport_seconds, 3),
                "database": connection.vendor,
            }
        )
    )


if __name__ == "__main__":
    main()
