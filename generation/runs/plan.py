"""The ``plan`` run kind (AI PsyRoom, part B): a treatment plan for each source dialogue
(``generation/pipelines/plan.py``)."""

from django.core.exceptions import ValidationError

from ..backends.base import Backend
from ..models import Candidate, CandidateKind, GenerationRun
from ..pipelines.plan import PlanSource, generate_plans
from ..services.candidates import candidate_build
from .dialogue import source_dialogue_targets
from .inputs import RunInputs
from .sampling import Chunks, chunk_seed, emotion_names, run_lineage, run_sampling


def plan_targets(inputs: RunInputs) -> list[dict]:
    """A plan run's targets: one per source dialogue."""
    if not inputs.dialogues:
        raise ValidationError("dialogues: a plan run needs at least one dialogue")
    return source_dialogue_targets(inputs)


def plan_chunks(run: GenerationRun, backend: Backend, todo: list[int]) -> Chunks:
    """Generate the plans of ``todo``, one per source dialogue; yields (candidates, failures, usage)."""
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
            emotion, category = emotion_names(source.sub_emotion, run.language)
            sources.append(PlanSource(index=i, turns=source.content["turns"], emotion=emotion, category=category))
        batch = generate_plans(
            backend,
            sources=sources,
            sampling=run_sampling(run, chunk_seed(run, chunk)),
            version=run.prompt_version,
        )
        candidates, failures = [], list(missing)
        for state in batch.plans:
            if state.failure:
                failures.append(state.failure)
                continue
            assert state.content is not None  # generate_plans gives every plan it did not fail its content
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
