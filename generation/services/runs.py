"""Generation runs: their creation, queueing, claim, chunks recorded, end, resumption and cancellation.

What a run of each kind does is ``generation/runs/`` (``kinds.KINDS``); this module never names a kind.
"""

import logging

from celery import current_app
from celery.result import AsyncResult
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import DateTimeField, F, Q, Value
from django.db.models.functions import Coalesce
from django.dispatch import Signal
from django.utils import timezone
from django.utils.translation import gettext
from kombu.exceptions import OperationalError

from psyroom_admin import roles

from ..backends.base import Backend
from ..backends.loading import backend_for
from ..models import Candidate, ClientProfile, GenerationRun, ModelSpec, Scenario, SubEmotion
from ..runs.inputs import RunInputs, run_language
from ..runs.kinds import RUN_KINDS, run_kind
from ..runwatch import RunClosed, RunWatch
from ..selectors import runs_waiting, stalled_q
from .candidates import candidates_save_new
from .modelspecs import modelspec_get_default

# Sent with the run ``run_create`` has just made and who made it (None from the command line), inside its
# transaction: annotations writes it into the audit trail.
run_created = Signal()

logger = logging.getLogger(__name__)


# What a run may ask of the sampler and the pipeline, with the bounds that keep a typo from tying up a GPU for hours.
PARAMETER_BOUNDS = {
    "max_new_tokens": (int, 1, 2048),
    "temperature": (float, 0.0, 2.0),
    "top_p": (float, 0.01, 1.0),
    "repetition_penalty": (float, 1.0, 2.0),
    "threshold": (float, 1.0, 5.0),
    "max_attempts": (int, 1, 5),
    "supervisor": (bool, False, True),
    "classify": (bool, False, True),
    "risk_agent": (bool, False, True),
    "strategies": (bool, False, True),
}


def parameters_validate(parameters: dict) -> dict:
    """A run's sampler and pipeline parameters, each known and within its bounds (``PARAMETER_BOUNDS``)."""
    clean: dict[str, int | float | bool] = {}
    for key, value in parameters.items():
        if key not in PARAMETER_BOUNDS:
            raise ValidationError(f"parameters: unknown parameter {key!r} (known: {', '.join(PARAMETER_BOUNDS)})")
        kind, low, high = PARAMETER_BOUNDS[key]
        if kind is bool:
            if not isinstance(value, bool):
                raise ValidationError(f"parameters.{key}: {value!r} is not true or false")
            clean[key] = value
            continue
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ValidationError(f"parameters.{key}: {value!r} is not a number") from None
        if isinstance(value, bool) or not low <= number <= high or (kind is int and number != float(value)):
            raise ValidationError(f"parameters.{key}: {value!r} is outside {low}..{high}")
        clean[key] = number
    return clean


def run_create(
    *,
    kind: str,
    count: int | None = None,
    sub_emotion: SubEmotion | None = None,
    sub_emotions: list[SubEmotion] | None = None,
    scenario: Scenario | None = None,
    scenarios: list[Scenario] | None = None,
    dialogues: list[Candidate] | None = None,
    questions: list[Candidate] | None = None,
    profiles: list[ClientProfile] | None = None,
    sessions: int = 3,
    model_spec: ModelSpec | None = None,
    turns: int = 6,
    seed: int = 0,
    parameters: dict | None = None,
    created_by=None,  # a User (untyped: pages pass request.user, and the role check refuses an anonymous one)
    critiques: list[dict] | None = None,
    language: str | None = None,
) -> GenerationRun:
    """Create a run and queue its task once the run's row is committed.

    ``critiques`` (a dialogue run): ``[{"parent": candidate, "feedback": str, ...}]`` rewrites each parent dialogue
    told what a reviewer found wrong with it; the new candidate has ``parent`` set. Extra keys ride in the target
    untouched (annotations uses one to put the new candidate in the parent's campaign).

    A dialogue run makes ``count`` dialogues, cycling through its sub-emotions (or scenarios), or, given
    ``dialogues``, reconstructs each of them (reconstruction mode: real client turns kept, counselor turns
    rewritten and labelled); a plan run makes one plan for each of its dialogues; a scenario run writes ``count``
    new scenarios, cycling through its sub-emotions, for review; a question run has each of its K models answer
    each of ``questions`` (``generation/runs/question.py``); a course run writes ``count`` courses of ``sessions``
    sessions, cycling through its ``profiles`` (``generation/runs/course.py``).

    ``language`` (``en`` or ``zh``; English when neither it nor the sources say) picks the kind's prompt version of
    that language and is every candidate's language; scenarios, dialogues, questions, profiles and critiqued
    dialogues must all be in it (``runs.inputs.run_language``).
    """
    # A reviewer may start one kind of run: a regeneration of dialogues with their critique.
    if created_by is not None and not (
        roles.user_can_run_generation(created_by) or (critiques and roles.user_can_review(created_by))
    ):
        raise PermissionDenied("Only curators and admins may start generation runs.")
    if kind not in RUN_KINDS:
        raise ValidationError(f"kind: generation of {kind!r} is not available (choose {', '.join(RUN_KINDS)})")
    sub_emotions = [*([sub_emotion] if sub_emotion else []), *(sub_emotions or [])]
    scenarios = [*([scenario] if scenario else []), *(scenarios or [])]
    for sc in scenarios:
        if sub_emotion is not None and sc.sub_emotion_id != sub_emotion.pk:
            raise ValidationError(f"scenario: {sc} is not a scenario of {sub_emotion.key}")
    kind_spec = run_kind(kind)
    language = run_language(
        language=language,
        sources={
            "scenario": scenarios,
            "dialogue": list(dialogues or []),
            "question": list(questions or []),
            "profile": list(profiles or []),
            "critiqued dialogue": [c["parent"] for c in critiques or []],
        },
    )
    if critiques:
        if kind_spec.critiques is None:
            raise ValidationError(f"critiques: only dialogue runs regenerate with feedback, not {kind}")
        targets = kind_spec.critiques(critiques=critiques)
    else:
        targets = kind_spec.targets(
            RunInputs(
                sub_emotions=sub_emotions,
                scenarios=scenarios,
                dialogues=list(dialogues or []),
                questions=list(questions or []),
                profiles=list(profiles or []),
            )
        )
    if dialogues or questions or critiques:
        count = len(targets)
    if count is None or not 1 <= count <= 10_000:
        raise ValidationError(f"count: must be between 1 and 10000, not {count}")
    if not 2 <= turns <= 40:
        raise ValidationError(f"turns: must be between 2 and 40, not {turns}")
    # A question run's K model specs answer each question; its model spec is the first of them (runs/question.py).
    parameters, model_spec, kind_params = kind_spec.setup(parameters=parameters or {}, model_spec=model_spec)
    model_spec = model_spec or modelspec_get_default()
    params = {**model_spec.parameters, **parameters_validate(parameters or {})}
    params.update(kind_spec.parameters(turns=turns, sessions=sessions))
    params.update(kind_params)
    first = (
        None if questions or profiles else dialogues[0].sub_emotion if dialogues
        else SubEmotion.objects.get(key=targets[0]["sub_emotion"])
    )  # fmt: skip
    with transaction.atomic():
        if created_by is not None:
            run_limit_check(user=created_by)
        run = GenerationRun.objects.create(
            kind=kind,
            sub_emotion=first,
            scenario=scenarios[0] if len(scenarios) == 1 else None,
            targets=targets,
            count=count,
            model_spec=model_spec,
            prompt_version=kind_spec.prompt_versions[language],
            language=language,
            seed=seed,
            parameters=params,
            created_by=created_by,
        )
        run_created.send(sender=GenerationRun, run=run, actor=created_by)
        transaction.on_commit(lambda: run_queue(run.pk))
    return run


def runs_waiting_lock_count(*, user: User) -> int:
    """How many of ``user``'s runs wait or run, counted under a lock of the user's row, so that requests at once
    are counted one after the other (each limit on a user's runs counts here). Call inside a transaction."""
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    return runs_waiting(user=user).count()


def run_limit_check(*, user: User) -> None:
    """Refuse a user's run beyond ``PSYROOM_RUNS_PER_USER`` waiting or running. Call inside a transaction."""
    limit = settings.PSYROOM_RUNS_PER_USER
    waiting = runs_waiting_lock_count(user=user)
    if waiting >= limit:
        raise ValidationError(
            f"{user.get_username()} has {waiting} runs waiting or running (at most {limit}): wait until one is "
            "done, or cancel one"
        )


class QueueUnavailable(Exception):
    """The task queue (the Celery broker) could not be reached: the run was not queued, and not kept."""


# Sent by name: the task module calls these services, so they do not import it. The route (the ``generation``
# queue) is CELERY_TASK_ROUTES'.
GENERATE_TASK = "generation.tasks.generate_run"


def run_task_send(run_id: int) -> AsyncResult:
    """Send a run's task to the broker; returns its AsyncResult."""
    return current_app.send_task(GENERATE_TASK, args=[run_id])


def run_queue(run_id: int) -> None:
    """Queue a committed run's task. A run is kept only with its task: when the broker cannot be reached, the run is
    deleted (nothing was generated) and ``QueueUnavailable`` says so, so that no run waits ``queued`` for a task that
    does not exist."""
    try:
        result = run_task_send(run_id)
    except (OperationalError, OSError) as error:
        GenerationRun.objects.filter(pk=run_id).delete()
        logger.warning("run %s not queued, the broker is unreachable: %s", run_id, error)
        raise QueueUnavailable(
            gettext(
                "The task queue is unreachable: the run was not started and nothing was saved. Try again in a "
                "minute; if this persists, an operator should check the broker (CELERY_BROKER_URL)."
            )
        ) from error
    GenerationRun.objects.filter(pk=run_id).update(task_id=result.id)


def run_claim(*, run_id: int) -> GenerationRun | None:
    """Mark a queued run, or a stalled one (its worker died), as running here; None otherwise.

    A delivery of a run that is running with a live heartbeat is a duplicate (a message the broker delivered again
    while its worker is alive, or a resume that raced a redelivery): it is dropped, so that one worker at a time
    executes a run.
    """
    now = timezone.now()
    claimed = (
        GenerationRun.objects.filter(pk=run_id)
        .filter(Q(status=GenerationRun.Status.QUEUED) | stalled_q(now=now))
        .update(
            status=GenerationRun.Status.RUNNING,
            heartbeat_at=now,
            chunk_progress={},
            started_at=Coalesce(F("started_at"), Value(now, output_field=DateTimeField())),
        )
    )
    if claimed != 1:
        return None
    return GenerationRun.objects.get(pk=run_id)


def run_record_chunk(
    *,
    run: GenerationRun,
    candidates: list[Candidate],
    failures: list[dict],
    prompt_tokens: int,
    completion_tokens: int,
    stats: dict | None = None,
) -> None:
    """Save one chunk's results and progress in one transaction: a killed worker loses at most the chunk in flight.

    Indexes saved meanwhile by another delivery of the same task are skipped, so nothing is ever saved twice. A run
    that was cancelled (or has finished) takes nothing more: ``RunClosed`` is raised and nothing is written; the
    status is read under the run's row lock, which ``run_cancel`` takes too, so a cancel either comes first and
    nothing is saved, or comes after the chunk is saved.
    """
    with transaction.atomic():
        locked = GenerationRun.objects.select_for_update().get(pk=run.pk)
        if locked.is_finished:
            raise RunClosed(f"run {run.pk} is {locked.status}: the chunk in flight is not saved")
        saved = set(locked.candidates.values_list("run_index", flat=True))
        failed_before = {e["index"] for e in locked.errors}
        candidates = [c for c in candidates if c.run_index not in saved]
        failures = [f for f in failures if f["index"] not in saved and f["index"] not in failed_before]
        candidates_save_new(candidates=candidates)
        locked.done += len(candidates)
        locked.failed += len(failures)
        locked.errors = [*locked.errors, *failures]
        locked.prompt_tokens += prompt_tokens
        locked.completion_tokens += completion_tokens
        merged = dict(locked.stats)
        for key, value in (stats or {}).items():
            merged[key] = merged.get(key, 0) + value
        locked.stats = merged
        # The chunk's tokens now count in the totals: the chunk in flight starts again from nothing.
        locked.chunk_progress = {}
        locked.heartbeat_at = timezone.now()
        locked.save(
            update_fields=[
                "done", "failed", "errors", "prompt_tokens", "completion_tokens", "stats", "chunk_progress",
                "heartbeat_at",
            ]
        )  # fmt: skip


def run_finish(*, run: GenerationRun, error: str = "") -> GenerationRun:
    """Close a run: succeeded when at least one item was saved, failed otherwise (or on an error)."""
    run.refresh_from_db()
    if run.status == GenerationRun.Status.CANCELLED:
        return run
    run.status = GenerationRun.Status.FAILED if error or run.done == 0 else GenerationRun.Status.SUCCEEDED
    run.error = error
    run.finished_at = timezone.now()
    run.chunk_progress = {}
    run.save(update_fields=["status", "error", "finished_at", "chunk_progress"])
    return run


def run_todo(run: GenerationRun) -> list[int]:
    """The indexes of a run neither saved nor given up yet."""
    saved = set(run.candidates.values_list("run_index", flat=True))
    failed = {e["index"] for e in run.errors}
    return [i for i in range(run.count) if i not in saved and i not in failed]


def run_execute(*, run_id: int, backend: Backend | None = None, max_chunks: int | None = None) -> GenerationRun | None:
    """Generate a run's missing items chunk by chunk; what is already saved is skipped (idempotent).

    The model is called outside any transaction; each chunk's results are saved in one. A bad item is recorded as
    a failure with its raw text and never fails the run. While it works, the run's heartbeat and the chunk's
    progress are written (``generation/runwatch.py``); a cancel stops it within one model call (a decode step in
    process) and the chunk in flight is not saved.

    ``max_chunks`` (the Celery task: 1) stops after that many chunks and queues the run again for the rest
    (``run_requeue``), so that a task, and what the broker delivers again after a worker dies, is one chunk.
    Returns the run, or None when there was nothing to claim (finished, cancelled, or running elsewhere).
    """
    run = run_claim(run_id=run_id)
    if run is None:
        logger.info("run %s is finished, cancelled or running elsewhere: nothing to do", run_id)
        return None
    recorded = 0
    todo: list[int] = []
    try:
        with RunWatch(run.pk, heartbeat_s=settings.PSYROOM_RUN_HEARTBEAT_S) as watch:
            backend = watch.wrap(backend or backend_for(run.model_spec))
            todo = run_todo(run)
            for candidates, failures, usage in run_kind(run.kind).chunks(run, backend, todo):
                run_record_chunk(
                    run=run,
                    candidates=candidates,
                    failures=failures,
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    stats=dict(usage.stats),
                )
                watch.chunk_saved()
                recorded += 1
                if max_chunks is not None and recorded >= max_chunks:
                    break
                watch.check(force=True)  # a cancel between chunks stops here
    except RunClosed as closed:
        logger.info("run %s stopped: %s", run_id, closed)
        run.refresh_from_db()
        return run
    except Exception as error:
        logger.exception("run %s failed", run_id)
        return run_finish(run=run, error=f"{type(error).__name__}: {error}")
    run.refresh_from_db()
    left = run_todo(run)
    if left and max_chunks is not None and recorded >= max_chunks and set(left) != set(todo):
        run_requeue(run=run)
        return run
    if left:
        return run_finish(run=run, error=f"items {left[:20]} were neither saved nor failed")
    return run_finish(run=run)


def run_requeue(*, run: GenerationRun) -> bool:
    """Queue a running run's next chunk: the run waits ``queued`` (its saved items kept) for the next free worker.

    When the broker cannot be reached the run goes back to ``running`` without a task: its heartbeat stops, so it
    shows as stalled and can be resumed (``run_resume``). Returns whether a task was queued.
    """
    waiting = GenerationRun.objects.filter(pk=run.pk, status=GenerationRun.Status.RUNNING).update(
        status=GenerationRun.Status.QUEUED, chunk_progress={}
    )
    if not waiting:
        return False  # cancelled meanwhile
    try:
        result = run_task_send(run.pk)
    except (OperationalError, OSError) as error:
        GenerationRun.objects.filter(pk=run.pk, status=GenerationRun.Status.QUEUED).update(
            status=GenerationRun.Status.RUNNING
        )
        logger.error("run %s: its next chunk was not queued, the broker is unreachable: %s", run.pk, error)
        return False
    GenerationRun.objects.filter(pk=run.pk).update(task_id=result.id)
    run.refresh_from_db()
    return True


def run_resume(
    *, run: GenerationRun, user: User | AnonymousUser | None = None, automatic: bool = False
) -> GenerationRun:
    """Queue a stalled run again (its worker died): saved items are kept, the rest is generated.

    ``user`` is who asks (None from a worker or the command line): only curators and admins may resume.
    ``automatic`` (a worker's sweep) resumes a run at most ``PSYROOM_RUN_AUTO_RESUMES`` times, so that a run that
    kills its worker (out of memory) is not resumed for ever. Raises ``ValidationError`` when the run is not
    stalled, ``QueueUnavailable`` when the broker cannot be reached (the run stays stalled).
    """
    if user is not None and not roles.user_can_run_generation(user):
        raise PermissionDenied("Only curators and admins may resume generation runs.")
    now = timezone.now()
    stalled = GenerationRun.objects.filter(stalled_q(now=now), pk=run.pk)
    if automatic:
        stalled = stalled.filter(resumes__lt=settings.PSYROOM_RUN_AUTO_RESUMES)
    # Queued under the stalled condition: two resumes at once, or a resume and a dying worker's last beat, cannot
    # both win. The heartbeat is set now so that the run is not stalled while it waits for a worker.
    resumed = stalled.update(
        status=GenerationRun.Status.QUEUED, chunk_progress={}, heartbeat_at=now, resumes=F("resumes") + 1
    )
    run.refresh_from_db()
    if resumed != 1:
        raise ValidationError(f"{run} is not stalled: only a running run whose worker stopped can be resumed.")
    try:
        result = run_task_send(run.pk)
    except (OperationalError, OSError) as error:
        GenerationRun.objects.filter(pk=run.pk, status=GenerationRun.Status.QUEUED).update(
            status=GenerationRun.Status.RUNNING, heartbeat_at=None
        )
        raise QueueUnavailable(
            gettext(
                "The task queue is unreachable: the run was not resumed. Try again in a minute; if this persists, "
                "an operator should check the broker (CELERY_BROKER_URL)."
            )
        ) from error
    GenerationRun.objects.filter(pk=run.pk).update(task_id=result.id)
    logger.info("run %s resumed (%s)", run.pk, "automatically" if automatic else f"by {user or 'command line'}")
    run.refresh_from_db()
    return run


def runs_resume_stalled() -> list[int]:
    """Resume every stalled run that may still be resumed automatically; returns their ids. A worker does this when
    it starts (``generation.tasks``); a periodic task may too."""
    resumed = []
    ids = GenerationRun.objects.filter(stalled_q(), resumes__lt=settings.PSYROOM_RUN_AUTO_RESUMES).values_list(
        "pk", flat=True
    )
    for run in GenerationRun.objects.filter(pk__in=list(ids)):
        try:
            run_resume(run=run, automatic=True)
        except ValidationError:
            continue  # resumed by someone else meanwhile, or beating again
        except QueueUnavailable:
            logger.warning("stalled runs not resumed: the broker is unreachable")
            break
        resumed.append(run.pk)
    return resumed


def run_cancel(*, run: GenerationRun, user: User | AnonymousUser | None = None) -> GenerationRun:
    """Cancel a run that has not finished; the worker stops within one model call and saves nothing more.

    ``user`` is who asks (None from the command line): only curators and admins may cancel. The run's row is
    locked, as ``run_record_chunk`` locks it, so that a chunk is either saved before the cancel or not at all.
    """
    if user is not None and not roles.user_can_run_generation(user):
        raise PermissionDenied("Only curators and admins may cancel generation runs.")
    with transaction.atomic():
        locked = GenerationRun.objects.select_for_update().get(pk=run.pk)
        updated = 0
        if not locked.is_finished:
            locked.status = GenerationRun.Status.CANCELLED
            locked.finished_at = timezone.now()
            locked.chunk_progress = {}
            locked.save(update_fields=["status", "finished_at", "chunk_progress"])
            updated = 1
    run.refresh_from_db()
    if updated != 1:
        raise ValidationError(f"{run} has already finished.")
    return run
