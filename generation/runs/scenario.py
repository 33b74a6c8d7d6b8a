"""The ``scenario`` run kind: new scenarios for sub-emotions, written as candidates for review
(``generation/pipelines/scenario.py``); an approved one becomes a ``Scenario`` (``candidate_set_status``)."""

from django.core.exceptions import ValidationError

from ..backends.base import Backend
from ..models import Candidate, CandidateKind, GenerationRun, Scenario, SubEmotion
from ..pipelines.scenario import generate_scenarios
from ..services.candidates import candidate_build
from .inputs import RunInputs
from .sampling import Chunks, chunk_seed, emotion_names, run_lineage, run_sampling


def scenario_targets(inputs: RunInputs) -> list[dict]:
    """A scenario run's targets: one per sub-emotion (and no scenarios or dialogues)."""
    if not inputs.sub_emotions or inputs.scenarios or inputs.dialogues:
        raise ValidationError("sub_emotions: a scenario run needs sub-emotions (and no scenarios or dialogues)")
    return [{"sub_emotion": sub.key} for sub in inputs.sub_emotions]


def scenario_chunks(run: GenerationRun, backend: Backend, todo: list[int]) -> Chunks:
    """Write new scenarios for the run's sub-emotions; yields (candidates, failures, usage)."""
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
            emotion, category = emotion_names(sub, run.language)
            batch = generate_scenarios(
                backend,
                indexes=chunk,
                emotion=emotion,
                category=category,
                existing=existing,
                sampling=run_sampling(run, chunk_seed(run, chunk)),
                version=run.prompt_version,
            )
            candidates = [
                candidate_build(
                    kind=CandidateKind.SCENARIO,
                    content=state.content,
                    language=run.language,
                    sub_emotion=sub,
                    run=run,
                    run_index=state.index,
                    lineage=run_lineage(run, backend, pipeline="scenario", chunk=chunk, extra={}),
                )
                for state in batch.scenarios
                if state.failure is None and state.content is not None
            ]
            failures = [state.failure for state in batch.scenarios if state.failure]
            yield candidates, failures, batch.usage
