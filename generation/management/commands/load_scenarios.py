"""Load written scenarios (``generation/data/scenarios.json`` unless a file is given); see ``generation.scenarios``."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from generation.services.scenarios import SCENARIOS_FILE, ScenarioLoadError, scenarios_load


class Command(BaseCommand):
    help = (
        "Load written scenarios (by default the shipped ones, at least two in each language for each of the 35 "
        "sub-emotions). "
        "Needs the taxonomy (load_taxonomy). Running it again changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "path", nargs="?", type=Path, default=SCENARIOS_FILE, help="a JSON list of scenarios (default: shipped)"
        )

    def handle(self, *args, path: Path, **options):
        try:
            created, unchanged = scenarios_load(path=path)
        except ScenarioLoadError as error:
            raise CommandError(f"{error} (nothing was loaded)") from error
        self.stdout.write(
            self.style.SUCCESS(f"Scenarios loaded from {path}: {created} created, {unchanged} already there.")
        )
