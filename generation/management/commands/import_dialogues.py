"""Import counseling dialogues from a dataset file or folder (see ``generation.importers.dialogues``)."""

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from generation.importers.dialogues import FORMATS, dialogues_import
from generation.importers.reading import ImportFormatError


class Command(BaseCommand):
    help = "Import dialogues (psyroom example.json, CPsyCoun case_N.txt files, or messages JSONL) as candidates."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="a file, or a folder searched recursively")
        parser.add_argument("--format", required=True, choices=FORMATS)
        parser.add_argument("--sub-emotion", dest="sub_emotion", default=None, help="taxonomy key, e.g. anxiety.1")

    def handle(self, *args, path: Path, format: str, sub_emotion: str | None, **options):
        try:
            result = dialogues_import(path=Path(path), format=format, sub_emotion_key=sub_emotion)
        except ImportFormatError as error:
            raise CommandError(f"{error} (nothing was imported)") from error
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from error
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {result.created} dialogues ({result.duplicates} duplicates skipped) from {path}"
            )
        )
