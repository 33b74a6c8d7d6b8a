"""Writes to the generation app. Every change of a candidate goes through here, annotations included."""

import hashlib
import json
import logging
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connections, router, transaction
from django.db.models import DateTimeField, F, Q, Value
from django.db.models.functions import Coalesce
from django.dispatch import Signal
from django.utils import timezone

from psyroom_admin import roles

from .models import (
    Candidate,
    CandidateKind,
    EmotionCategory,
    GenerationRun,
    ModelSpec,
    Revision,
    RiskFlag,
    Scenario,
    SubEmotion,
)
from .risk import screen
from .runwatch import RunClosed, RunWatch
from .schemas import ContentError, validate_content

logger = logging.getLogger(__name__)

TAXONOMY_FILE = Path(__file__).resolve().parent / "data" / "taxonomy.json"
BUNDLED_MODEL = "smollm2-135m-instruct"


class StaleVersion(Exception):
    """A save based on a version of a candidate that someone else has changed since."""

    def __init__(self, candidate: Candidate):
        super().__init__(f"{candidate} changed since (now version {candidate.version})")
        self.candidate = candidate


def content_hash(content: dict) -> str:
    canonical = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- Taxonomy and model specs ----------------------------------------------------------------------------------


def taxonomy_load(*, path: Path = TAXONOMY_FILE) -> tuple[int, int]:
    """Load (or update in place) the EmoPsy categories and sub-emotions. Returns (categories, sub-emotions) created.

    A handful of queries whatever the taxonomy's size: the rows are read once, then created or updated in bulk.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    with transaction.atomic():
        categories = {category.key: category for category in EmotionCategory.objects.select_for_update()}
        created_categories = _rows_upsert(
            EmotionCategory,
            categories,
            {cat["key"]: {"label_zh": cat["zh"], "label_en": cat["en"]} for cat in data["categories"]},
        )
        subs = {sub.key: sub for sub in SubEmotion.objects.select_for_update()}
        created_subs = _rows_upsert(
            SubEmotion,
            subs,
            {
                sub["key"]: {"category": categories[cat["key"]], "label_zh": sub["zh"], "label_en": sub["en"]}
                for cat in data["categories"]
                for sub in cat["sub_emotions"]
            },
        )
    return created_categories, created_subs


def _rows_upsert(model, existing: dict, wanted: dict[str, dict]) -> int:
    """Create the rows of ``wanted`` (key -> field values) missing from ``existing`` (key -> row) and update the
    changed ones; ``existing`` gains the created rows. Returns how many were created."""
    created, changed = [], []
    for key, values in wanted.items():
        row = existing.get(key)
        if row is None:
            created.append(model(key=key, **values))
        elif any(getattr(row, field) != value for field, value in values.items()):
            for field, value in values.items():
                setattr(row, field, value)
            changed.append(row)
    model.objects.bulk_create(created)
    if changed:
        model.objects.bulk_update(changed, fields=list(next(iter(wanted.values()))))
    existing.update({row.key: row for row in model.objects.filter(key__in=[row.key for row in created])})
    return len(created)


def modelspec_get_default() -> ModelSpec:
    """The spec named by ``PSYROOM_MODEL``; the bundled model's spec is created on first use."""
    name = settings.PSYROOM_MODEL
    if name == BUNDLED_MODEL:
        spec, _ = ModelSpec.objects.get_or_create(
            name=BUNDLED_MODEL,
            defaults={
                "backend": ModelSpec.Backend.TRANSFORMERS,
                "path": f"bundled:{BUNDLED_MODEL}",
                "batch_size": 8,
                "parameters": {"max_new_tokens": 96, "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.2},
            },
        )
        return spec
    try:
        return ModelSpec.objects.get(name=name)
    except ModelSpec.DoesNotExist:
        raise ValidationError(f"PSYROOM_MODEL={name!r}: no model spec of that name") from None


def modelspec_save(*, spec: ModelSpec, user=None) -> ModelSpec:
    """Create or change a model spec; ``user`` is who asks (None from the command line): admins only.

    The spec is validated in full first: an HTTP spec's ``base_url`` must lie under ``PSYROOM_MODEL_SERVERS`` and
    its credential (``api_key_env``) be a name in ``PSYROOM_MODEL_CREDENTIALS`` (``generation.validators``).
    """
    if user is not None and not roles.user_can_edit_model_specs(user):
        raise PermissionDenied("Only admins may add or change model specs.")
    spec.full_clean()
    with transaction.atomic():
        spec.save()
    return spec


# --- Candidates ------------------------------------------------------------------------------------------------


def _screen(kind: str, content: dict) -> list[dict]:
    """What the automatic screen finds in a content of any kind: ``[{"code", "detail"}]``.

    A plan also carries its own judgement: a moderate or high risk level is a flag for a senior clinician.
    """
    flags = screen(kind, content)
    if kind == CandidateKind.PLAN and content.get("risk_assessment", {}).get("level") in {"moderate", "high"}:
        level = content["risk_assessment"]["level"]
        flags.append({"code": "risk_assessment", "detail": f"the plan assesses risk as {level}"})
    return flags


def candidate_build(
    *,
    kind: str,
    content: dict,
    language: str = "en",
    sub_emotion: SubEmotion | None = None,
    scenario: Scenario | None = None,
    run: GenerationRun | None = None,
    run_index: int | None = None,
    lineage: dict | None = None,
    source: dict | None = None,
    source_hash: str | None = None,
    extra_flags: list[dict] | None = None,
) -> Candidate:
    """An unsaved, validated candidate (for bulk creation); ``candidates_save_new`` saves it with its revision 0 and
    the risk flags the screen (and ``extra_flags``, e.g. the risk agent's) found in it."""
    validate_content(kind, content)
    candidate = Candidate(
        kind=kind,
        content=content,
        language=language,
        sub_emotion=sub_emotion,
        scenario=scenario,
        run=run,
        run_index=run_index,
        lineage=lineage or {},
        source=source or {},
        source_hash=source_hash,
    )
    candidate.new_flags = [
        *({**f, "source": RiskFlag.Source.SCREEN} for f in _screen(kind, content)),
        *({"source": RiskFlag.Source.AGENT, **f} for f in extra_flags or ()),
    ]
    return candidate


# Sent with the list of candidates ``candidates_save_new`` has just saved (inside its transaction).
candidates_created = Signal()


def _inherited_flags(candidates: list[Candidate]) -> dict[int, list[dict]]:
    """A plan or session derived from an item with an open flag starts with an open flag of its own."""
    parents = {c.parent_id for c in candidates if c.parent_id}
    flagged = set(
        RiskFlag.objects.filter(candidate_id__in=parents, signed_off_at__isnull=True).values_list(
            "candidate_id", flat=True
        )
    )
    return {
        c.pk: [{"code": "inherited", "detail": f"derived from #{c.parent_id}, which has an open risk flag",
                "source": RiskFlag.Source.INHERITED}]
        for c in candidates
        if c.parent_id in flagged
    }  # fmt: skip


# From this many rows, PostgreSQL gets them by COPY (see ``_insert``).
_COPY_FROM_ROWS = 100


def _insert(objs: list) -> list:
    """``bulk_create`` for new rows of one model, with their primary keys set; on PostgreSQL, many rows go by COPY.

    Django's bulk insert on PostgreSQL binds every column as an array that psycopg quotes in Python, which made
    inserting slower than everything else an import does; COPY takes the same values (each field's own
    ``pre_save`` and ``get_db_prep_save``, as Django's insert does) with the keys drawn from the table's sequence.
    """
    if not objs:
        return objs
    model = type(objs[0])
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql" or len(objs) < _COPY_FROM_ROWS:
        return model.objects.bulk_create(objs, batch_size=500)
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(column) for column in [meta.pk.column, *(f.column for f in fields)])
    for obj in objs:
        obj._prepare_related_fields_for_save(operation_name="bulk_create")
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, len(objs)],
        )
        keys = [row[0] for row in cursor.fetchall()]
        with cursor.cursor.copy(f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN") as copy:
            for obj, key in zip(objs, keys, strict=True):
                obj.pk = key
                copy.write_row([key, *(f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields)])
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias
    return objs


def candidates_save_new(*, candidates: list[Candidate]) -> list[Candidate]:
    """Save new candidates, their revision 0 and their risk flags together. Call inside a transaction."""
    saved = _insert(candidates)
    revisions = _insert(
        [Revision(candidate=c, number=0, content=c.content, category=Revision.Category.ORIGINAL) for c in saved]
    )
    inherited = _inherited_flags(saved)
    _insert(
        [
            RiskFlag(candidate=c, revision=r, **flag)
            for c, r in zip(saved, revisions, strict=True)
            for flag in [*getattr(c, "new_flags", ()), *inherited.get(c.pk, ())]
        ]
    )
    # A course's sessions (``new_children``, parent set) are saved with it, in the same transaction.
    children = [child for c in saved for child in getattr(c, "new_children", ())]
    if children:
        candidates_save_new(candidates=children)
    # bulk_create sends no post_save: other apps (annotations) learn of new candidates through this signal.
    candidates_created.send(sender=Candidate, candidates=saved)
    return saved


def candidate_create(**fields) -> Candidate:
    """Create one candidate with its revision 0 and risk flags (see ``candidate_build`` for the fields)."""
    parent = fields.pop("parent", None)
    candidate = candidate_build(**fields)
    candidate.parent = parent
    with transaction.atomic():
        candidates_save_new(candidates=[candidate])
    return candidate


def candidate_revise(
    *, candidate: Candidate, author, content: dict, base_version: int, category: str, reason: str = ""
) -> Revision:
    """Save a new revision of a candidate's content, based on ``base_version``.

    Every edit is screened: what the screen finds in the new text that it did not find in the old opens a new flag,
    whatever was signed off before. An edit of an approved candidate sends it back to review (``in_review``): its
    approval covered the revision people read, not this one, and exports keep taking ``approved_revision`` only
    while the candidate is approved.

    Raises ``StaleVersion`` when the candidate changed since that version (nothing is written), and
    ``ContentError`` when the new content does not fit the kind's schema.
    """
    if category not in Revision.Category.values or category == Revision.Category.ORIGINAL:
        raise ValidationError({"category": f"must be one of wording, clinical, safety, not {category!r}"})
    validate_content(candidate.kind, content)
    with transaction.atomic():
        locked = Candidate.objects.select_for_update().filter(pk=candidate.pk).first()
        if locked is None or locked.version != base_version:
            candidate.refresh_from_db()
            raise StaleVersion(candidate)
        before = {f["detail"] for f in _screen(locked.kind, locked.content)}
        last = locked.revisions.order_by("-number").values_list("number", flat=True).first()
        locked.content = content
        locked.version = base_version + 1
        fields = ["content", "version", "updated_at"]
        if locked.status == Candidate.Status.APPROVED:
            locked.status = Candidate.Status.IN_REVIEW
            fields.append("status")
        locked.save(update_fields=fields)
        revision = Revision.objects.create(
            candidate=locked,
            number=(last or 0) + 1,
            content=content,
            author=author,
            category=category,
            reason=reason,
            base_number=last,
        )
        RiskFlag.objects.bulk_create(
            [
                RiskFlag(candidate=locked, revision=revision, source=RiskFlag.Source.SCREEN, raised_by=author, **f)
                for f in _screen(locked.kind, content)
                if f["detail"] not in before
            ]
        )
    candidate.refresh_from_db()
    return revision


def candidate_set_status(*, candidate: Candidate, status: str, revision: Revision | None = None) -> Candidate:
    """Move a candidate to a new status.

    An approval names the ``revision`` people judged: it must be the latest (else ``StaleVersion``), and no risk flag
    may be open. An approved scenario candidate becomes a ``Scenario`` that generation may use.
    """
    if status not in Candidate.Status.values:
        raise ValidationError({"status": f"unknown status {status!r}"})
    with transaction.atomic():
        locked = Candidate.objects.select_for_update().get(pk=candidate.pk)
        fields = ["status", "updated_at"]
        if status == Candidate.Status.APPROVED:
            latest = locked.revisions.order_by("-number").first()
            if revision is None or revision.pk != latest.pk:
                raise StaleVersion(locked)
            if locked.open_risk_flags().exists():
                raise ValidationError(
                    {"decision": "This item is flagged for risk: a senior clinician must sign it off before approval."}
                )
            locked.approved_revision = latest
            fields.append("approved_revision")
        locked.status = status
        locked.save(update_fields=fields)
        if status == Candidate.Status.APPROVED and locked.kind == CandidateKind.SCENARIO:
            content = locked.approved_revision.content
            Scenario.objects.get_or_create(
                sub_emotion=locked.sub_emotion,
                title=content["title"],
                defaults={"description": content["description"], "source": Scenario.Source.GENERATED},
            )
    candidate.refresh_from_db()
    return candidate


def candidate_flag_risk(
    *, candidate: Candidate, flags: list[dict], raised_by=None, review_id: int | None = None
) -> list[RiskFlag]:
    """Open risk flags (``[{"code", "detail"}]``) raised by a reviewer on the candidate's latest revision."""
    revision = candidate.revisions.order_by("-number").first()
    return RiskFlag.objects.bulk_create(
        [
            RiskFlag(
                candidate=candidate,
                revision=revision,
                source=RiskFlag.Source.REVIEW,
                raised_by=raised_by,
                review_id=review_id,
                code=f["code"],
                detail=f.get("detail", ""),
            )
            for f in flags
        ]
    )


def candidate_sign_off_risk(
    *, candidate: Candidate, clinician, flag_ids: list[int], base_version: int, note: str
) -> list[RiskFlag]:
    """Sign off the open flags ``flag_ids`` that a senior clinician read on version ``base_version``.

    A sign-off covers only what its signer saw: a stale version is ``StaleVersion`` (409); a flag that is not this
    candidate's, or no longer open, is refused. Flags not named stay open. The caller checks the clinician's role.
    """
    if not flag_ids:
        raise ValidationError({"flags": "name the risk flags you sign off (their ids, as shown)"})
    with transaction.atomic():
        locked = Candidate.objects.select_for_update().get(pk=candidate.pk)
        if locked.version != base_version:
            raise StaleVersion(locked)
        flags = list(locked.risk_flags_in_scope().select_for_update().filter(pk__in=flag_ids))
        unknown = sorted(set(flag_ids) - {f.pk for f in flags})
        if unknown:
            raise ValidationError({"flags": f"{locked} has no risk flag {', '.join(map(str, unknown))}"})
        closed = [f.pk for f in flags if not f.is_open]
        if closed:
            raise ValidationError({"flags": f"flag(s) {', '.join(map(str, closed))} are already signed off"})
        now = timezone.now()
        RiskFlag.objects.filter(pk__in=flag_ids).update(signed_off_by=clinician, signed_off_at=now, note=note)
        locked.save(update_fields=["updated_at"])
    return list(RiskFlag.objects.filter(pk__in=flag_ids))


# --- Generation runs -------------------------------------------------------------------------------------------


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
RUN_KINDS = (
    CandidateKind.DIALOGUE, CandidateKind.PLAN, CandidateKind.SCENARIO, CandidateKind.QUESTION, CandidateKind.COURSE,
)  # fmt: skip


def _validate_parameters(parameters: dict) -> dict:
    clean = {}
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


def _targets(
    *,
    kind: str,
    sub_emotions: list[SubEmotion],
    scenarios: list[Scenario],
    dialogues: list[Candidate],
    questions: list[Candidate] = (),
    profiles: list = (),
) -> list[dict]:
    if kind == CandidateKind.COURSE:
        from .courses import course_targets

        return course_targets(profiles=list(profiles))
    if kind == CandidateKind.QUESTION:
        from .questions import question_targets

        return question_targets(questions=list(questions))
    if kind == CandidateKind.SCENARIO:
        if not sub_emotions or scenarios or dialogues:
            raise ValidationError("sub_emotions: a scenario run needs sub-emotions (and no scenarios or dialogues)")
        return [{"sub_emotion": sub.key} for sub in sub_emotions]
    if kind == CandidateKind.PLAN and not dialogues:
        raise ValidationError("dialogues: a plan run needs at least one dialogue")
    if dialogues:
        # A plan run writes a plan for each dialogue; a dialogue run with dialogues reconstructs them.
        wrong = [d.pk for d in dialogues if d.kind != CandidateKind.DIALOGUE]
        if wrong:
            raise ValidationError(f"dialogues: candidate(s) {wrong} are not dialogues")
        if sub_emotions or scenarios:
            raise ValidationError("dialogues: give either source dialogues or sub-emotions and scenarios, not both")
        return [{"dialogue": d.pk} for d in dialogues]
    if scenarios:
        return [{"sub_emotion": sc.sub_emotion.key, "scenario": sc.pk} for sc in scenarios]
    if not sub_emotions:
        raise ValidationError("sub_emotions: choose at least one sub-emotion or scenario")
    return [{"sub_emotion": sub.key, "scenario": None} for sub in sub_emotions]


def _critique_targets(*, kind: str, critiques: list[dict]) -> list[dict]:
    """Targets that regenerate a dialogue with a reviewer's feedback (generation never imports annotations)."""
    if kind != CandidateKind.DIALOGUE:
        raise ValidationError(f"critiques: only dialogue runs regenerate with feedback, not {kind}")
    targets = []
    for critique in critiques:
        parent = critique["parent"]
        feedback = str(critique.get("feedback") or "").strip()
        if parent.kind != CandidateKind.DIALOGUE or parent.sub_emotion_id is None:
            raise ValidationError(f"critiques: candidate {parent.pk} is not a dialogue with a sub-emotion")
        if not feedback:
            raise ValidationError(f"critiques: the feedback for candidate {parent.pk} is empty")
        extra = {k: v for k, v in critique.items() if k not in ("parent", "feedback")}
        targets.append({**extra, "sub_emotion": parent.sub_emotion.key, "scenario": parent.scenario_id,
                        "feedback": feedback[:4000], "parent": parent.pk})  # fmt: skip
    return targets


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
    profiles: list | None = None,
    sessions: int = 3,
    model_spec: ModelSpec | None = None,
    turns: int = 6,
    seed: int = 0,
    parameters: dict | None = None,
    created_by=None,
    critiques: list[dict] | None = None,
) -> GenerationRun:
    """Create a run and queue its task once the run's row is committed.

    ``critiques`` (a dialogue run): ``[{"parent": candidate, "feedback": str, ...}]`` rewrites each parent dialogue
    told what a reviewer found wrong with it; the new candidate has ``parent`` set. Extra keys ride in the target
    untouched (annotations uses one to put the new candidate in the parent's campaign).

    A dialogue run makes ``count`` dialogues, cycling through its sub-emotions (or scenarios), or, given
    ``dialogues``, reconstructs each of them (reconstruction mode: real client turns kept, counselor turns
    rewritten and labelled); a plan run makes one plan for each of its dialogues; a scenario run writes ``count``
    new scenarios, cycling through its sub-emotions, for review; a question run has each of its K models answer
    each of ``questions`` (``generation/questions.py``); a course run writes ``count`` courses of ``sessions``
    sessions, cycling through its ``profiles`` (``generation/courses.py``).
    """
    from .pipelines import course as course_pipeline
    from .pipelines import dialogue as dialogue_pipeline
    from .pipelines import plan as plan_pipeline
    from .pipelines import question as question_pipeline
    from .pipelines import scenario as scenario_pipeline

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
    targets = _critique_targets(kind=kind, critiques=critiques) if critiques else _targets(
        kind=kind, sub_emotions=sub_emotions, scenarios=scenarios, dialogues=list(dialogues or []),
        questions=list(questions or []), profiles=list(profiles or []),
    )  # fmt: skip
    if dialogues or questions or critiques:
        count = len(targets)
    if count is None or not 1 <= count <= 10_000:
        raise ValidationError(f"count: must be between 1 and 10000, not {count}")
    if not 2 <= turns <= 40:
        raise ValidationError(f"turns: must be between 2 and 40, not {turns}")
    question_params: dict = {}
    if kind == CandidateKind.QUESTION:
        # K model specs answer each question; the run's model spec is the first of them (generation/questions.py).
        from .questions import question_run_setup

        parameters, model_spec, question_params = question_run_setup(parameters=parameters or {}, model_spec=model_spec)
    model_spec = model_spec or modelspec_get_default()
    params = {**model_spec.parameters, **_validate_parameters(parameters or {})}
    if kind == CandidateKind.DIALOGUE:
        params["turns"] = turns
    if kind == CandidateKind.COURSE:
        from .courses import course_run_parameters

        params.update(course_run_parameters(sessions=sessions, turns=turns))
    params.update(question_params)
    first = (
        None if questions or profiles else dialogues[0].sub_emotion if dialogues
        else SubEmotion.objects.get(key=targets[0]["sub_emotion"])
    )  # fmt: skip
    with transaction.atomic():
        if created_by is not None:
            _check_run_limit(created_by)
        run = GenerationRun.objects.create(
            kind=kind,
            sub_emotion=first,
            scenario=scenarios[0] if len(scenarios) == 1 else None,
            targets=targets,
            count=count,
            model_spec=model_spec,
            prompt_version={
                "plan": plan_pipeline,
                "scenario": scenario_pipeline,
                "question": question_pipeline,
                "course": course_pipeline,
            }.get(kind, dialogue_pipeline).PROMPT_VERSION,
            seed=seed,
            parameters=params,
            created_by=created_by,
        )
        transaction.on_commit(lambda: _queue_run(run.pk))
    return run


def _check_run_limit(user) -> None:
    """Refuse a user's run beyond ``PSYROOM_RUNS_PER_USER`` waiting or running: their row is locked first, so that
    requests at once are counted one after the other. Call inside a transaction."""
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    limit = settings.PSYROOM_RUNS_PER_USER
    waiting = GenerationRun.objects.filter(
        created_by=user, status__in=[GenerationRun.Status.QUEUED, GenerationRun.Status.RUNNING]
    ).count()
    if waiting >= limit:
        raise ValidationError(
            f"{user.get_username()} has {waiting} runs waiting or running (at most {limit}): wait until one is "
            "done, or cancel one"
        )


class QueueUnavailable(Exception):
    """The task queue (the Celery broker) could not be reached: the run was not queued, and not kept."""


def _enqueue(run_id: int):
    """Send a run's task to the broker; returns its AsyncResult."""
    from .tasks import generate_run

    return generate_run.delay(run_id)


def _queue_run(run_id: int) -> None:
    """Queue a committed run's task. A run is kept only with its task: when the broker cannot be reached, the run is
    deleted (nothing was generated) and ``QueueUnavailable`` says so, so that no run waits ``queued`` for a task that
    does not exist."""
    from kombu.exceptions import OperationalError

    try:
        result = _enqueue(run_id)
    except (OperationalError, OSError) as error:
        GenerationRun.objects.filter(pk=run_id).delete()
        logger.warning("run %s not queued, the broker is unreachable: %s", run_id, error)
        raise QueueUnavailable(
            "The task queue is unreachable: the run was not started and nothing was saved. Try again in a minute; "
            "if this persists, an operator should check the broker (CELERY_BROKER_URL)."
        ) from error
    GenerationRun.objects.filter(pk=run_id).update(task_id=result.id)


def run_claim(*, run_id: int) -> GenerationRun | None:
    """Mark a queued run, or a stalled one (its worker died), as running here; None otherwise.

    A delivery of a run that is running with a live heartbeat is a duplicate (a message the broker delivered again
    while its worker is alive, or a resume that raced a redelivery): it is dropped, so that one worker at a time
    executes a run.
    """
    from .selectors import stalled_q

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


def run_sampling(run: GenerationRun, seed: int):
    from .backends import SamplingParams

    params = run.parameters
    return SamplingParams(
        max_new_tokens=int(params.get("max_new_tokens", 96)),
        temperature=float(params.get("temperature", 0.7)),
        top_p=float(params.get("top_p", 0.9)),
        repetition_penalty=float(params.get("repetition_penalty", 1.0)),
        seed=seed,
    )


def run_lineage(run: GenerationRun, backend, *, pipeline: str, chunk: list[int], extra: dict) -> dict:
    return {
        "model": run.model_spec.name,
        # The device and dtype the model ran in (an in-process model; a server decides its own).
        **({"runtime": backend.runtime} if getattr(backend, "runtime", None) else {}),
        "model_path": run.model_spec.path,
        "backend": run.model_spec.backend,
        "prompt_version": f"{pipeline}/{run.prompt_version}",
        "seed": run.seed,
        "chunk": chunk,
        "parameters": run.parameters,
        **extra,
    }


def risk_agent_default(spec: ModelSpec) -> bool:
    """Whether a run asks its model's risk agent unless told: yes, except with the bundled 135M model, whose answers
    cannot be read in the agent's format (each would open a flag); the rules screen every item either way."""
    return not spec.path.startswith("bundled:")


def _dialogue_chunks(run: GenerationRun, backend, todo: list[int]):
    """Generate the dialogue items of ``todo``, chunk by chunk; yields (candidates, failures, usage)."""
    from .pipelines.dialogue import DialogueOptions, dialogue_chunk, risk_flags

    params = run.parameters
    options = DialogueOptions(
        turns=int(params.get("turns", 6)),
        supervisor=bool(params.get("supervisor", True)),
        threshold=float(params.get("threshold", 3.0)),
        max_attempts=int(params.get("max_attempts", 2)),
        classify=bool(params.get("classify", True)),
        risk_agent=bool(params.get("risk_agent", risk_agent_default(run.model_spec))),
        strategies=bool(params.get("strategies", False)),
    )
    if "dialogue" in run.targets[0]:
        yield from _reconstruct_chunks(run, backend, todo, options)
        return
    labels = dict(SubEmotion.objects.order_by("key").values_list("key", "label_en"))
    subs = {s.key: s for s in SubEmotion.objects.select_related("category")}
    scenarios = Scenario.objects.in_bulk([t["scenario"] for t in run.targets if t.get("scenario")])
    size = max(1, run.model_spec.batch_size)
    # Prompts differ by target, so a chunk holds items of one target.
    by_target: dict[int, list[int]] = {}
    for i in todo:
        by_target.setdefault(i % len(run.targets), []).append(i)
    for t, indexes in sorted(by_target.items()):
        target = run.targets[t]
        sub = subs[target["sub_emotion"]]
        scenario = scenarios.get(target.get("scenario"))
        situation = f"Your situation: {scenario.description}" if scenario else ""
        if target.get("feedback"):
            # Regeneration with a reviewer's critique: the rewrite is told what was wrong with the earlier version.
            situation = f"{situation}\nA reviewer found this wrong in an earlier version: {target['feedback']}".strip()
        for start in range(0, len(indexes), size):
            chunk = indexes[start : start + size]
            batch = dialogue_chunk(
                backend,
                indexes=chunk,
                options=options,
                emotion=sub.label_en,
                category=sub.category.label_en,
                situation=situation,
                target=sub.key,
                labels=labels,
                sampling=run_sampling(run, run.seed * 100_003 + chunk[0]),
                version=run.prompt_version,
            )
            candidates, failures = [], []
            for state in batch.dialogues:
                if state.failure:
                    failures.append(state.failure)
                    continue
                ai_review = {"supervisor": {"threshold": options.threshold, "attempts": state.attempts}}
                if state.emotion:
                    ai_review["emotion"] = state.emotion
                if state.risk:
                    ai_review["risk_agent"] = state.risk
                best = [a.get("mean") for a in state.attempts if a.get("mean") is not None]
                ai_review["supervisor"]["score"] = max(best) if best else None
                extra = {
                    "repairs": state.repairs,
                    "input_hash": content_hash({"target": target, "index": state.index}),
                }
                try:
                    candidate = candidate_build(
                        kind=CandidateKind.DIALOGUE,
                        content={"turns": state.turns},
                        sub_emotion=sub,
                        scenario=scenario,
                        run=run,
                        run_index=state.index,
                        lineage=run_lineage(run, backend, pipeline="dialogue", chunk=chunk, extra=extra),
                        extra_flags=risk_flags(state.risk),
                    )
                except ContentError as error:
                    failures.append({"index": state.index, "reason": "invalid_content", "raw": str(error)})
                    continue
                candidate.ai_review = ai_review
                if target.get("parent"):
                    candidate.parent_id = target["parent"]
                candidates.append(candidate)
            yield candidates, failures, batch.usage


def _reconstruct_chunks(run: GenerationRun, backend, todo: list[int], options):
    """Reconstruction mode: each source dialogue classified, its counselor turns rewritten and labelled."""
    from .pipelines.dialogue import reconstruct_chunk, risk_flags

    labels = dict(SubEmotion.objects.order_by("key").values_list("key", "label_en"))
    subs = SubEmotion.objects.in_bulk(field_name="key")
    sources = Candidate.objects.in_bulk([t["dialogue"] for t in run.targets])
    size = max(1, run.model_spec.batch_size)
    for start in range(0, len(todo), size):
        chunk = todo[start : start + size]
        items, failures = [], []
        for i in chunk:
            source = sources.get(run.targets[i]["dialogue"])
            if source is None:
                failures.append({"index": i, "reason": "dialogue_missing", "raw": str(run.targets[i])})
            else:
                items.append((i, source.content["turns"]))
        batch = reconstruct_chunk(
            backend,
            sources=items,
            options=options,
            labels=labels,
            sampling=run_sampling(run, run.seed * 100_003 + chunk[0]),
            version=run.prompt_version,
        )
        candidates = []
        for state in batch.dialogues:
            if state.failure:
                failures.append(state.failure)
                continue
            source = sources[run.targets[state.index]["dialogue"]]
            ai_review = {"emotion": state.emotion}
            if state.attempts:
                ai_review["supervisor"] = {"threshold": None, "attempts": state.attempts,
                                           "score": state.attempts[0]["mean"]}  # fmt: skip
            if state.risk:
                ai_review["risk_agent"] = state.risk
            extra = {"mode": "reconstruction", "source": source.pk, "repairs": state.repairs}
            try:
                candidate = candidate_build(
                    kind=CandidateKind.DIALOGUE,
                    content={"turns": state.turns},
                    language=source.language,
                    sub_emotion=subs[state.emotion["label"]],
                    run=run,
                    run_index=state.index,
                    lineage=run_lineage(run, backend, pipeline="dialogue", chunk=chunk, extra=extra),
                    extra_flags=risk_flags(state.risk),
                )
            except ContentError as error:
                failures.append({"index": state.index, "reason": "invalid_content", "raw": str(error)})
                continue
            candidate.ai_review = ai_review
            candidate.parent = source
            candidates.append(candidate)
        yield candidates, failures, batch.usage


def _scenario_chunks(run: GenerationRun, backend, todo: list[int]):
    """Write new scenarios for the run's sub-emotions; yields (candidates, failures, usage)."""
    from .pipelines.scenario import generate_scenarios

    subs = {s.key: s for s in SubEmotion.objects.select_related("category")}
    size = max(1, run.model_spec.batch_size)
    by_target: dict[int, list[int]] = {}
    for i in todo:
        by_target.setdefault(i % len(run.targets), []).append(i)
    for t, indexes in sorted(by_target.items()):
        sub = subs[run.targets[t]["sub_emotion"]]
        for start in range(0, len(indexes), size):
            chunk = indexes[start : start + size]
            # Titles in use: approved scenarios, and scenario candidates already written for this sub-emotion.
            existing = [
                *Scenario.objects.filter(sub_emotion=sub).values_list("title", flat=True),
                *(c["title"] for c in Candidate.objects.filter(kind=CandidateKind.SCENARIO, sub_emotion=sub)
                  .values_list("content", flat=True)),
            ]  # fmt: skip
            batch = generate_scenarios(
                backend,
                indexes=chunk,
                emotion=sub.label_en,
                category=sub.category.label_en,
                existing=existing,
                sampling=run_sampling(run, run.seed * 100_003 + chunk[0]),
                version=run.prompt_version,
            )
            candidates = [
                candidate_build(
                    kind=CandidateKind.SCENARIO,
                    content=state.content,
                    sub_emotion=sub,
                    run=run,
                    run_index=state.index,
                    lineage=run_lineage(run, backend, pipeline="scenario", chunk=chunk, extra={}),
                )
                for state in batch.scenarios
                if state.failure is None
            ]
            failures = [state.failure for state in batch.scenarios if state.failure]
            yield candidates, failures, batch.usage


def _plan_chunks(run: GenerationRun, backend, todo: list[int]):
    """Generate the plans of ``todo``, one per source dialogue; yields (candidates, failures, usage)."""
    from .pipelines.plan import PlanSource, generate_plans

    dialogues = Candidate.objects.select_related("sub_emotion__category").in_bulk([t["dialogue"] for t in run.targets])
    size = max(1, run.model_spec.batch_size)
    for start in range(0, len(todo), size):
        chunk = todo[start : start + size]
        sources, missing = [], []
        for i in chunk:
            source = dialogues.get(run.targets[i]["dialogue"])
            if source is None:
                missing.append({"index": i, "reason": "dialogue_missing", "raw": str(run.targets[i])})
                continue
            sub = source.sub_emotion
            sources.append(
                PlanSource(
                    index=i,
                    turns=source.content["turns"],
                    emotion=sub.label_en if sub else "unspecified",
                    category=sub.category.label_en if sub else "unspecified",
                )
            )
        batch = generate_plans(
            backend,
            sources=sources,
            sampling=run_sampling(run, run.seed * 100_003 + chunk[0]),
            version=run.prompt_version,
        )
        candidates, failures = [], list(missing)
        for state in batch.plans:
            if state.failure:
                failures.append(state.failure)
                continue
            source = dialogues[run.targets[state.index]["dialogue"]]
            candidate = candidate_build(
                kind=CandidateKind.PLAN,
                content=state.content,
                language=source.language,
                sub_emotion=source.sub_emotion,
                run=run,
                run_index=state.index,
                lineage=run_lineage(run, backend, pipeline="plan", chunk=chunk, extra={"dialogue": source.pk}),
            )
            candidate.parent = source
            candidates.append(candidate)
        yield candidates, failures, batch.usage


def _run_todo(run: GenerationRun) -> list[int]:
    """The indexes of a run neither saved nor given up yet."""
    saved = set(run.candidates.values_list("run_index", flat=True))
    failed = {e["index"] for e in run.errors}
    return [i for i in range(run.count) if i not in saved and i not in failed]


def run_execute(*, run_id: int, backend=None, max_chunks: int | None = None) -> GenerationRun | None:
    """Generate a run's missing items chunk by chunk; what is already saved is skipped (idempotent).

    The model is called outside any transaction; each chunk's results are saved in one. A bad item is recorded as
    a failure with its raw text and never fails the run. While it works, the run's heartbeat and the chunk's
    progress are written (``generation/runwatch.py``); a cancel stops it within one model call (a decode step in
    process) and the chunk in flight is not saved.

    ``max_chunks`` (the Celery task: 1) stops after that many chunks and queues the run again for the rest
    (``run_requeue``), so that a task, and what the broker delivers again after a worker dies, is one chunk.
    Returns the run, or None when there was nothing to claim (finished, cancelled, or running elsewhere).
    """
    from .backends import backend_for

    run = run_claim(run_id=run_id)
    if run is None:
        logger.info("run %s is finished, cancelled or running elsewhere: nothing to do", run_id)
        return None
    recorded = 0
    todo: list[int] = []
    try:
        with RunWatch(run.pk, heartbeat_s=settings.PSYROOM_RUN_HEARTBEAT_S) as watch:
            backend = watch.wrap(backend or backend_for(run.model_spec))
            todo = _run_todo(run)
            from .courses import course_chunks
            from .questions import question_chunks

            chunks = {
                CandidateKind.PLAN: _plan_chunks,
                CandidateKind.SCENARIO: _scenario_chunks,
                CandidateKind.QUESTION: question_chunks,
                CandidateKind.COURSE: course_chunks,
            }.get(run.kind, _dialogue_chunks)
            for candidates, failures, usage in chunks(run, backend, todo):
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
    left = _run_todo(run)
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
    from kombu.exceptions import OperationalError

    waiting = GenerationRun.objects.filter(pk=run.pk, status=GenerationRun.Status.RUNNING).update(
        status=GenerationRun.Status.QUEUED, chunk_progress={}
    )
    if not waiting:
        return False  # cancelled meanwhile
    try:
        result = _enqueue(run.pk)
    except (OperationalError, OSError) as error:
        GenerationRun.objects.filter(pk=run.pk, status=GenerationRun.Status.QUEUED).update(
            status=GenerationRun.Status.RUNNING
        )
        logger.error("run %s: its next chunk was not queued, the broker is unreachable: %s", run.pk, error)
        return False
    GenerationRun.objects.filter(pk=run.pk).update(task_id=result.id)
    run.refresh_from_db()
    return True


def run_resume(*, run: GenerationRun, user=None, automatic: bool = False) -> GenerationRun:
    """Queue a stalled run again (its worker died): saved items are kept, the rest is generated.

    ``user`` is who asks (None from a worker or the command line): only curators and admins may resume.
    ``automatic`` (a worker's sweep) resumes a run at most ``PSYROOM_RUN_AUTO_RESUMES`` times, so that a run that
    kills its worker (out of memory) is not resumed for ever. Raises ``ValidationError`` when the run is not
    stalled, ``QueueUnavailable`` when the broker cannot be reached (the run stays stalled).
    """
    from kombu.exceptions import OperationalError

    from .selectors import stalled_q

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
        result = _enqueue(run.pk)
    except (OperationalError, OSError) as error:
        GenerationRun.objects.filter(pk=run.pk, status=GenerationRun.Status.QUEUED).update(
            status=GenerationRun.Status.RUNNING, heartbeat_at=None
        )
        raise QueueUnavailable(
            "The task queue is unreachable: the run was not resumed. Try again in a minute; if this persists, an "
            "operator should check the broker (CELERY_BROKER_URL)."
        ) from error
    GenerationRun.objects.filter(pk=run.pk).update(task_id=result.id)
    logger.info("run %s resumed (%s)", run.pk, "automatically" if automatic else f"by {user or 'command line'}")
    run.refresh_from_db()
    return run


def runs_resume_stalled() -> list[int]:
    """Resume every stalled run that may still be resumed automatically; returns their ids. A worker does this when
    it starts (``generation.tasks``); a periodic task may too."""
    from .selectors import stalled_q

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


def run_cancel(*, run: GenerationRun, user=None) -> GenerationRun:
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


__all__ = [
    "ContentError",
    "RunClosed",
    "StaleVersion",
    "candidate_build",
    "candidate_create",
    "candidate_flag_risk",
    "candidate_revise",
    "candidate_set_status",
    "candidate_sign_off_risk",
    "candidates_save_new",
    "content_hash",
    "modelspec_get_default",
    "modelspec_save",
    "run_cancel",
    "run_claim",
    "run_create",
    "run_execute",
    "run_finish",
    "run_record_chunk",
    "run_requeue",
    "run_resume",
    "runs_resume_stalled",
    "taxonomy_load",
]
