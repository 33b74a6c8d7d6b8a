import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from generation import selectors, services
from generation.models import CandidateKind, GenerationRun, ModelSpec, SubEmotion


class Command(BaseCommand):
    help = "Queue a generation run for the Celery workers (queue 'generation'); --wait follows it to the end."

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=[CandidateKind.DIALOGUE])
        parser.add_argument("--sub-emotion", required=True, help="a sub-emotion key, e.g. anxiety.1")
        parser.add_argument("--count", type=int, default=1)
        parser.add_argument("--turns", type=int, default=6, help="turns per dialogue, client first")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--model", help="a model spec name (default: PSYROOM_MODEL)")
        parser.add_argument("--max-new-tokens", type=int)
        parser.add_argument("--temperature", type=float)
        parser.add_argument("--wait", action="store_true", help="wait until the run has finished")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait at most with --wait")

    def handle(self, *args, **options):
        try:
            sub_emotion = selectors.sub_emotion_get(key=options["sub_emotion"])
        except SubEmotion.DoesNotExist:
            raise CommandError(
                f"--sub-emotion {options['sub_emotion']!r}: no such sub-emotion "
                "(keys look like anxiety.1; has load_taxonomy been run?)"
            ) from None
        model_spec = None
        if options["model"]:
            try:
                model_spec = ModelSpec.objects.get(name=options["model"])
            except ModelSpec.DoesNotExist:
                raise CommandError(f"--model {options['model']!r}: no model spec of that name") from None
        parameters = {
            key: options[opt]
            for key, opt in (("max_new_tokens", "max_new_tokens"), ("temperature", "temperature"))
            if options[opt] is not None
        }
        try:
            run = services.run_create(
                kind=options["kind"],
                sub_emotion=sub_emotion,
                count=options["count"],
                turns=options["turns"],
                seed=options["seed"],
                model_spec=model_spec,
                parameters=parameters,
            )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        self.stdout.write(
            f"Run {run.pk} queued: {run.count} {run.kind}(s) for {sub_emotion.key} with {run.model_spec}."
        )
        if not options["wait"]:
            return
        deadline = time.monotonic() + options["timeout"]
        last = None
        while True:
            run.refresh_from_db()
            progress = (run.status, run.done, run.failed)
            if progress != last:
                self.stdout.write(f"  {run.status}: {run.done} done, {run.failed} failed of {run.count}")
                last = progress
            if run.is_finished:
                break
            if time.monotonic() > deadline:
                raise CommandError(
                    f"run {run.pk} has not finished after {options['timeout']:.0f} s (is a worker running?)"
                )
            time.sleep(1)
        for failure in run.errors:
            self.stdout.write(
                f"  item {failure['index']} failed: {failure['reason']}: {failure.get('raw', '')[:120]!r}"
            )
        if run.status != GenerationRun.Status.SUCCEEDED:
            raise CommandError(f"run {run.pk} {run.status}: {run.error or 'no item could be generated'}")
        ids = list(run.candidates.values_list("pk", flat=True))
        self.stdout.write(self.style.SUCCESS(f"Run {run.pk} succeeded: candidates {ids}"))
