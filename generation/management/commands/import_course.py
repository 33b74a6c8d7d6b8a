"""Import a MusPsy course (dialogues and memories, optionally client cards), or only a profile (see
``generation.courses``)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from generation.importers.courses import course_import_muspsy, profile_import_muspsy
from generation.importers.reading import ImportFormatError


class Command(BaseCommand):
    help = (
        "Import a MusPsy course: the client profile, the course and one session candidate per session "
        "(without --dialogues: only the profile and its memories). Re-importing the same files adds nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dialogues", type=Path, help="'Consultant:' / 'User:' lines, sessions split by #######")
        parser.add_argument("--memories", type=Path, required=True, help="MusPsy memories_N.txt")
        parser.add_argument("--cards", type=Path, help="MusPsy usercards_N.txt")

    def handle(self, *args, dialogues: Path | None, memories: Path, cards: Path | None, **options):
        try:
            if dialogues is None:
                profile, created = profile_import_muspsy(memories=memories, cards=cards)
                verb = "Imported" if created else "Already imported:"
                self.stdout.write(self.style.SUCCESS(f"{verb} client profile {profile.pk} ({profile.name})"))
                return
            result = course_import_muspsy(dialogues=dialogues, memories=memories, cards=cards)
        except ImportFormatError as error:
            raise CommandError(f"{error} (nothing was imported)") from error
        course = result.course
        assert course is not None  # only a profile import has no course
        sessions = course.children.count()
        verb = "Imported" if result.created else "Already imported:"
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} course {course.pk} with {sessions} sessions for client profile {result.profile.pk}"
            )
        )
