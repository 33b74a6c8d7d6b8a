"""Import CPsyExam questions from the zip archive, a folder or a JSON file (see ``generation.questions``)."""

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from generation.importers.questions import FORMATS, SPLITS, questions_import
from generation.importers.reading import ImportFormatError


class Command(BaseCommand):
    help = "Import CPsyExam choice questions (cpsyexam) or open case questions (cpsyexam_qa) as question candidates."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="cpsyexam.zip / cpsyexam_qa.zip, a folder, or a JSON file")
        parser.add_argument("--format", default="cpsyexam", choices=FORMATS)
        parser.add_argument("--split", choices=SPLITS, help="only files under this train/, dev/ or test/ folder")
        parser.add_argument("--limit", type=int, help="stop after this many records")

    def handle(self, *args, path: Path, format: str, split: str | None, limit: int | None, **options):
        try:
            result = questions_import(path=Path(path), format=format, split=split, limit=limit)
        except ImportFormatError as error:
            raise CommandError(f"{error} (nothing was imported)") from error
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from error
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {result.created} questions ({result.duplicates} duplicates skipped) "
                f"from {result.files} file(s) of {path}"
            )
        )
