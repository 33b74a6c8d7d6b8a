import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from generation import selectors
from generation.models import (
    Candidate,
    CandidateKind,
    ClientProfile,
    GenerationRun,
    Language,
    ModelSpec,
    Scenario,
    SubEmotion,
)
from generation.services.runs import run_create


class Command(BaseCommand):
    help = "Queue a generation run for the Celery workers (queue 'generation'); --wait follows it to the end."

    def add_arguments(self, parser):
        parser.add_argument(
            "kind",
            choices=[
                CandidateKind.DIALOGUE, CandidateKind.PLAN, CandidateKind.SCENARIO, CandidateKind.QUESTION,
                CandidateKind.COURSE,
            ],
        )  # fmt: skip
        parser.add_argument(
            "--sub-emotion", action="append", default=[], help="a sub-emotion key, e.g. anxiety.1 (repeatable)"
        )
        parser.add_argument("--scenario", action="append", type=int, default=[], help="a scenario id (repeatable)")
        parser.add_argument(
            "--dialogue", action="append", type=int, default=[], help="plans: a dialogue candidate id (repeatable)"
        )
        # Questions (Psyche-R1 cross-selection), see generation/runs/question.py.
        parser.add_argument("--question", action="append", type=int, default=[], help="a question id (repeatable)")
        parser.add_argument(
            "--questions-from-import", action="store_true", help="every imported single or multiple choice question"
        )
        parser.add_argument("--models", help="questions: the K model spec names, comma-separated")
        parser.add_argument("--min-correct", type=int, help="questions: M; hard when fewer than M models are right")
        # Courses (MusPsy), see generation/runs/course.py.
        parser.add_argument("--profile", action="append", type=int, default=[], help="courses: a client profile id")
        parser.add_argument("--sessions", type=int, default=3, help="courses: sessions per course (2 to 10)")
        parser.add_argument("--count", type=int, default=1, help="dialogues: how many (plans: one per dialogue)")
        parser.add_argument("--turns", type=int, default=6, help="turns per dialogue, client first")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--language",
            choices=Language.values,
            help="what the run writes in: its prompts, labels and scenarios (default: the sources', else en)",
        )
        parser.add_argument("--model", help="a model spec name (default: PSYROOM_MODEL)")
        for name, kind, help_text in (
            ("max-new-tokens", int, "tokens per model answer at most"),
            ("temperature", float, "sampling temperature"),
            ("top-p", float, "nucleus sampling"),
            ("threshold", float, "supervisor: regenerate a dialogue whose mean score is below this"),
            ("max-attempts", int, "supervisor: attempts per dialogue in all, the first included"),
        ):
            parser.add_argument(f"--{name}", type=kind, help=help_text)
        parser.add_argument("--no-supervisor", action="store_true", help="skip the supervisor agent")
        parser.add_argument("--no-classify", action="store_true", help="skip the emotion classifier agent")
        parser.add_argument("--strategies", action="store_true", help="label each counselor turn's support strategy")
        parser.add_argument("--wait", action="store_true", help="wait until the run has finished")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait at most with --wait")

    def handle(self, *args, **options):
        sub_emotions = []
        for key in options["sub_emotion"]:
            try:
                sub_emotions.append(selectors.sub_emotion_get(key=key))
            except SubEmotion.DoesNotExist:
                raise CommandError(
                    f"--sub-emotion {key!r}: no such sub-emotion "
                    "(keys look like anxiety.1; has load_taxonomy been run?)"
                ) from None
        scenarios = self._rows(Scenario.objects.all(), options["scenario"], "--scenario", "scenario")
        dialogues = self._rows(
            Candidate.objects.filter(kind=CandidateKind.DIALOGUE), options["dialogue"], "--dialogue", "dialogue"
        )
        questions = self._rows(
            Candidate.objects.filter(kind=CandidateKind.QUESTION), options["question"], "--question", "question"
        )
        if options["questions_from_import"]:
            questions += list(
                Candidate.objects.filter(
                    kind=CandidateKind.QUESTION,
                    source_hash__isnull=False,
                    content__question_type__in=["single", "multi"],
                ).order_by("id")
            )
        profiles = self._rows(ClientProfile.objects.all(), options["profile"], "--profile", "client profile")
        model_spec = None
        if options["model"]:
            try:
                model_spec = ModelSpec.objects.get(name=options["model"])
            except ModelSpec.DoesNotExist:
                raise CommandError(f"--model {options['model']!r}: no model spec of that name") from None
        parameters = {
            key: options[key]
            for key in ("max_new_tokens", "temperature", "top_p", "threshold", "max_attempts")
            if options[key] is not None
        }
        if options["models"]:
            parameters["models"] = options["models"]
        if options["min_correct"] is not None:
            parameters["min_correct"] = options["min_correct"]
        if options["no_supervisor"]:
            parameters["supervisor"] = False
        if options["no_classify"]:
            parameters["classify"] = False
        if options["strategies"]:
            parameters["strategies"] = True
        try:
            run = run_create(
                kind=options["kind"],
                sub_emotions=sub_emotions,
                scenarios=scenarios,
                dialogues=dialogues,
                questions=questions,
                profiles=profiles,
                sessions=options["sessions"],
                count=options["count"],
                turns=options["turns"],
                seed=options["seed"],
                model_spec=model_spec,
                parameters=parameters,
                language=options["language"],
            )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        self.stdout.write(f"Run {run.pk} queued: {run.count} {run.kind}(s) in {run.language} with {run.model_spec}.")
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

    @staticmethod
    def _rows(queryset, ids: list[int], option: str, what: str) -> list:
        rows = queryset.in_bulk(ids)
        missing = [i for i in ids if i not in rows]
        if missing:
            raise CommandError(f"{option} {missing[0]}: no {what} with that id")
        return [rows[i] for i in ids]
