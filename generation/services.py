"""Writes to the generation app. Every change of a candidate goes through here, annotations included."""

import hashlib
import json
import logging
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .models import (
    Candidate,
    CandidateKind,
    EmotionCategory,
    GenerationRun,
    ModelSpec,
    Revision,
    Scenario,
    SubEmotion,
)
from .risk import screen_dialogue
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
    """Load (or update in place) the EmoPsy categories and sub-emotions. Returns (categories, sub-emotions) created."""
    data = json.loads(path.read_text(encoding="utf-8"))
    created_categories = created_subs = 0
    with transaction.atomic():
        for cat in data["categories"]:
            category, created = EmotionCategory.objects.update_or_create(
                key=cat["key"], defaults={"label_zh": cat["zh"], "label_en": cat["en"]}
            )
            created_categories += created
            for sub in cat["sub_emotions"]:
                _, created = SubEmotion.objects.update_or_create(
                    key=sub["key"], defaults={"category": category, "label_zh": sub["zh"], "label_en": sub["en"]}
                )
                created_subs += created
    return created_categories, created_subs


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


# --- Candidates ------------------------------------------------------------------------------------------------


def _risk_flags_for(kind: str, content: dict) -> list[dict]:
    if kind != CandidateKind.DIALOGUE:
        return []
    now = timezone.now().isoformat()
    return [{"by": "screen", "at": now, **flag} for flag in screen_dialogue(content)]


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
) -> Candidate:
    """An unsaved, validated candidate with its automatic risk flags (for bulk creation)."""
    validate_content(kind, content)
    return Candidate(
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
        risk_flags=_risk_flags_for(kind, content),
    )


def candidates_save_new(*, candidates: list[Candidate]) -> list[Candidate]:
    """Save new candidates and their revision 0 together. Call inside a transaction."""
    saved = Candidate.objects.bulk_create(candidates, batch_size=500)
    Revision.objects.bulk_create(
        [Revision(candidate=c, number=0, content=c.content, category=Revision.Category.ORIGINAL) for c in saved],
        batch_size=500,
    )
    return saved


def candidate_create(**fields) -> Candidate:
    """Create one candidate with its revision 0 (see ``candidate_build`` for the fields)."""
    candidate = candidate_build(**fields)
    with transaction.atomic():
        candidate.save()
        Revision.objects.create(candidate=candidate, number=0, content=candidate.content)
    return candidate


def candidate_revise(
    *, candidate: Candidate, author, content: dict, base_version: int, category: str, reason: str = ""
) -> Revision:
    """Save a new revision of a candidate's content, based on ``base_version``.

    Raises ``StaleVersion`` when the candidate changed since that version (nothing is written), and
    ``ContentError`` when the new content does not fit the kind's schema.
    """
    if category not in Revision.Category.values or category == Revision.Category.ORIGINAL:
        raise ValidationError(f"category: must be one of wording, clinical, safety, not {category!r}")
    validate_content(candidate.kind, content)
    with transaction.atomic():
        # The version check and the bump are one conditional UPDATE: two editors can't both win.
        updated = Candidate.objects.filter(pk=candidate.pk, version=base_version).update(
            content=content, version=F("version") + 1, updated_at=timezone.now()
        )
        if updated != 1:
            candidate.refresh_from_db()
            raise StaleVersion(candidate)
        last = candidate.revisions.order_by("-number").values_list("number", flat=True).first()
        revision = Revision.objects.create(
            candidate=candidate,
            number=(last or 0) + 1,
            content=content,
            author=author,
            category=category,
            reason=reason,
            base_number=last,
        )
        new_flags = _risk_flags_for(candidate.kind, content)
        candidate.refresh_from_db()
        if new_flags and not candidate.risk_flags:
            # An edit that introduces risk content needs a sign-off as much as generated text does.
            candidate.risk_flags = new_flags
            candidate.risk_signed_off_at = None
            candidate.risk_signed_off_by = None
            candidate.save(update_fields=["risk_flags", "risk_signed_off_at", "risk_signed_off_by"])
    return revision


def candidate_set_status(*, candidate: Candidate, status: str) -> Candidate:
    """Move a candidate to a new status. An approval is refused while a risk flag is open."""
    if status not in Candidate.Status.values:
        raise ValidationError(f"status: unknown status {status!r}")
    with transaction.atomic():
        locked = Candidate.objects.select_for_update().get(pk=candidate.pk)
        if status == Candidate.Status.APPROVED and locked.has_open_risk:
            raise ValidationError("This item is flagged for risk: a senior clinician must sign it off before approval.")
        locked.status = status
        locked.save(update_fields=["status", "updated_at"])
    candidate.refresh_from_db()
    return candidate


def candidate_flag_risk(*, candidate: Candidate, flags: list[dict]) -> Candidate:
    """Add risk flags (from a reviewer); a new flag re-opens any earlier sign-off."""
    if not flags:
        return candidate
    with transaction.atomic():
        locked = Candidate.objects.select_for_update().get(pk=candidate.pk)
        locked.risk_flags = [*locked.risk_flags, *flags]
        locked.risk_signed_off_at = None
        locked.risk_signed_off_by = None
        locked.save(update_fields=["risk_flags", "risk_signed_off_at", "risk_signed_off_by", "updated_at"])
    candidate.refresh_from_db()
    return candidate


def candidate_sign_off_risk(*, candidate: Candidate, clinician) -> Candidate:
    """A senior clinician's sign-off of every risk flag raised so far. The caller checks the clinician's role."""
    if not candidate.risk_flags:
        raise ValidationError("This item has no risk flag to sign off.")
    with transaction.atomic():
        Candidate.objects.filter(pk=candidate.pk).update(
            risk_signed_off_by=clinician, risk_signed_off_at=timezone.now(), updated_at=timezone.now()
        )
    candidate.refresh_from_db()
    return candidate


# --- Generation runs -------------------------------------------------------------------------------------------


# What a run may ask of the sampler, with the bounds that keep a typo from tying up a GPU for hours.
PARAMETER_BOUNDS = {
    "max_new_tokens": (int, 1, 2048),
    "temperature": (float, 0.0, 2.0),
    "top_p": (float, 0.01, 1.0),
    "repetition_penalty": (float, 1.0, 2.0),
}


def _validate_parameters(parameters: dict) -> dict:
    clean = {}
    for key, value in parameters.items():
        if key not in PARAMETER_BOUNDS:
            raise ValidationError(f"parameters: unknown parameter {key!r} (known: {', '.join(PARAMETER_BOUNDS)})")
        kind, low, high = PARAMETER_BOUNDS[key]
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ValidationError(f"parameters.{key}: {value!r} is not a number") from None
        if isinstance(value, bool) or not low <= number <= high:
            raise ValidationError(f"parameters.{key}: {value!r} is outside {low}..{high}")
        clean[key] = number
    return clean


def run_create(
    *,
    kind: str,
    sub_emotion: SubEmotion,
    count: int,
    model_spec: ModelSpec | None = None,
    scenario: Scenario | None = None,
    turns: int = 6,
    seed: int = 0,
    parameters: dict | None = None,
    created_by=None,
) -> GenerationRun:
    """Create a run and queue its task once the run's row is committed."""
    from .pipelines.dialogue import PROMPT_VERSION

    if kind != CandidateKind.DIALOGUE:
        raise ValidationError(f"kind: generation of {kind!r} is not available yet")
    if not 1 <= count <= 10_000:
        raise ValidationError(f"count: must be between 1 and 10000, not {count}")
    if not 2 <= turns <= 40:
        raise ValidationError(f"turns: must be between 2 and 40, not {turns}")
    if scenario is not None and scenario.sub_emotion_id != sub_emotion.pk:
        raise ValidationError(f"scenario: {scenario} is not a scenario of {sub_emotion.key}")
    model_spec = model_spec or modelspec_get_default()
    params = {**model_spec.parameters, **_validate_parameters(parameters or {}), "turns": turns}
    with transaction.atomic():
        run = GenerationRun.objects.create(
            kind=kind,
            sub_emotion=sub_emotion,
            scenario=scenario,
            count=count,
            model_spec=model_spec,
            prompt_version=PROMPT_VERSION,
            seed=seed,
            parameters=params,
            created_by=created_by,
        )
        transaction.on_commit(lambda: _queue_run(run.pk))
    return run


def _queue_run(run_id: int) -> None:
    from .tasks import generate_run

    result = generate_run.delay(run_id)
    GenerationRun.objects.filter(pk=run_id).update(task_id=result.id)


def run_claim(*, run_id: int) -> GenerationRun | None:
    """Mark a queued (or re-delivered running) run as running; None when it is finished or cancelled."""
    now = timezone.now()
    claimed = GenerationRun.objects.filter(
        pk=run_id, status__in=[GenerationRun.Status.QUEUED, GenerationRun.Status.RUNNING]
    ).update(status=GenerationRun.Status.RUNNING, started_at=now)
    if claimed != 1:
        return None
    return GenerationRun.objects.get(pk=run_id)


def run_record_chunk(
    *, run: GenerationRun, candidates: list[Candidate], failures: list[dict], prompt_tokens: int, completion_tokens: int
) -> None:
    """Save one chunk's results and progress in one transaction: a killed worker loses at most the chunk in flight."""
    with transaction.atomic():
        candidates_save_new(candidates=candidates)
        locked = GenerationRun.objects.select_for_update().get(pk=run.pk)
        locked.done += len(candidates)
        locked.failed += len(failures)
        locked.errors = [*locked.errors, *failures]
        locked.prompt_tokens += prompt_tokens
        locked.completion_tokens += completion_tokens
        locked.save(update_fields=["done", "failed", "errors", "prompt_tokens", "completion_tokens"])


def run_finish(*, run: GenerationRun, error: str = "") -> GenerationRun:
    """Close a run: succeeded when at least one item was saved, failed otherwise (or on an error)."""
    run.refresh_from_db()
    if run.status == GenerationRun.Status.CANCELLED:
        return run
    run.status = GenerationRun.Status.FAILED if error or run.done == 0 else GenerationRun.Status.SUCCEEDED
    run.error = error
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])
    return run


def run_execute(*, run_id: int, backend=None) -> GenerationRun | None:
    """Generate a run's missing items chunk by chunk; what is already saved is skipped (idempotent).

    The model is called outside any transaction; each chunk's results are saved in one. A bad item is recorded as
    a failure with its raw text and never fails the run.
    """
    from .backends import SamplingParams, backend_for
    from .pipelines.dialogue import generate_dialogues

    run = run_claim(run_id=run_id)
    if run is None:
        logger.info("run %s is finished or cancelled: nothing to do", run_id)
        return None
    try:
        backend = backend or backend_for(run.model_spec)
        saved = set(run.candidates.values_list("run_index", flat=True))
        failed = {e["index"] for e in run.errors}
        todo = [i for i in range(run.count) if i not in saved and i not in failed]
        params = run.parameters
        sub = run.sub_emotion
        situation = f"Your situation: {run.scenario.description}" if run.scenario else ""
        size = max(1, run.model_spec.batch_size)
        for start in range(0, len(todo), size):
            if GenerationRun.objects.filter(pk=run.pk, status=GenerationRun.Status.CANCELLED).exists():
                return run_finish(run=run)
            chunk = todo[start : start + size]
            batch = generate_dialogues(
                backend,
                indexes=chunk,
                turns=params["turns"],
                emotion=sub.label_en,
                category=sub.category.label_en,
                situation=situation,
                sampling=SamplingParams(
                    max_new_tokens=int(params.get("max_new_tokens", 96)),
                    temperature=float(params.get("temperature", 0.7)),
                    top_p=float(params.get("top_p", 0.9)),
                    repetition_penalty=float(params.get("repetition_penalty", 1.0)),
                    seed=run.seed * 100_003 + chunk[0],
                ),
                version=run.prompt_version,
            )
            candidates, failures = [], []
            for state in batch.dialogues:
                if state.failure:
                    failures.append(state.failure)
                    continue
                lineage = {
                    "model": run.model_spec.name,
                    "model_path": run.model_spec.path,
                    "prompt_version": f"dialogue/{run.prompt_version}",
                    "seed": run.seed,
                    "chunk": chunk,
                    "parameters": params,
                    "repairs": state.repairs,
                    "input_hash": content_hash(
                        {"sub_emotion": sub.key, "scenario": run.scenario_id, "index": state.index}
                    ),
                }
                try:
                    candidates.append(
                        candidate_build(
                            kind=CandidateKind.DIALOGUE,
                            content={"turns": state.turns},
                            sub_emotion=sub,
                            scenario=run.scenario,
                            run=run,
                            run_index=state.index,
                            lineage=lineage,
                        )
                    )
                except ContentError as error:
                    failures.append({"index": state.index, "reason": "invalid_content", "raw": str(error)})
            run_record_chunk(
                run=run,
                candidates=candidates,
                failures=failures,
                prompt_tokens=batch.prompt_tokens,
                completion_tokens=batch.completion_tokens,
            )
    except Exception as error:
        logger.exception("run %s failed", run_id)
        return run_finish(run=run, error=f"{type(error).__name__}: {error}")
    return run_finish(run=run)


def run_cancel(*, run: GenerationRun) -> GenerationRun:
    """Cancel a run that has not finished; the worker stops after the chunk in flight."""
    updated = GenerationRun.objects.filter(
        pk=run.pk, status__in=[GenerationRun.Status.QUEUED, GenerationRun.Status.RUNNING]
    ).update(status=GenerationRun.Status.CANCELLED, finished_at=timezone.now())
    run.refresh_from_db()
    if updated != 1:
        raise ValidationError(f"{run} has already finished.")
    return run


__all__ = [
    "ContentError",
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
    "run_cancel",
    "run_claim",
    "run_create",
    "run_execute",
    "run_finish",
    "run_record_chunk",
    "taxonomy_load",
]
