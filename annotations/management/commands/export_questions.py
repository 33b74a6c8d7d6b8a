from pathlib import Path

from django.core.management.base import BaseCommand

from annotations.exports.questions import questions_export


class Command(BaseCommand):
    help = "Write approved hard questions to grpo.jsonl and approved easy ones, with their rationale, to sft.jsonl."

    def add_arguments(self, parser):
        parser.add_argument("--out-dir", required=True, type=Path, help="the folder to write the two files into")

    def handle(self, *args, **options):
        result = questions_export(out_dir=options["out_dir"])
        self.stdout.write(
            f"Exported {result.grpo_count} questions to {result.grpo} and {result.sft_count} to {result.sft} "
            f"({result.skipped} left out: no difficulty, or no correct rationale)."
        )
