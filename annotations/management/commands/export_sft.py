from pathlib import Path

from django.core.management.base import BaseCommand

from annotations.exports.sft import sft_export


class Command(BaseCommand):
    help = "Write approved dialogues (latest revision) as chat-format JSONL for supervised fine-tuning."

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, type=Path, help="the JSONL file to write")

    def handle(self, *args, **options):
        result = sft_export(out=options["out"])
        self.stdout.write(f"Exported {result.count} dialogues to {result.path} (sha256 {result.sha256}).")
