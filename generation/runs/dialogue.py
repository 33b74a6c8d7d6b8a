"""The ``dialogue`` run kind (AI PsyRoom, part A): dialogues written for sub-emotions or scenarios, regenerated
with a reviewer's critique, or reconstructed from source dialogues (``generation/pipelines/dialogue.py``)."""

from django.core.exceptions import ValidationError

from ..agents.psyroom import load_prompt
from ..backends.base import Backend
from ..models import Candidate, CandidateKind, GenerationRun, Scenario, SubEmotion
from ..pipelines.dialogue import DialogueOptions, dialogue_chunk, reconstruct_chunk, risk_flags
from ..schemas import ContentError
from ..services.candidates import candidate_build, content_hash
from .inputs import RunInputs
from .sampling import Chunks, chunk_seed, emotion_names, risk_agent_default, run_lineage, run_sampling, taxonomy_labels


def source_dialogue_targets(inputs: RunInputs) -> list[dict]:
    """Targets naming source dialogues: a plan run writes a plan for each, a dialogue run reconstructs each."""
    wrong = [d.pk for d in inputs.dialogues if d.kind != CandidateKind.DIALOGUE]
    if wrong:
        raise ValidationError(f"dialogues: candidate(s) {wrong} are not dialogues")
    if inputs.sub_emotions or inputs.scenarios:
        raise ValidationError("dialogues: give either source dialogues or sub-emotions and scenarios, not both")
    return [{"dialogue": d.pk} for d in inputs.dialogues]


def dialogue_targets(inputs: RunInputs) -> list[dict]:
    """A dialogue run's targets: its source dialogues (reconstruction), else its scenarios, else its sub-emotions."""
    if inputs.dialogues:
        return source_dialogue_targets(inputs)
    if inputs.scenarios:
        return [{"sub_emotion": sc.sub_emotion.key, "scenario": sc.pk} for sc in inputs.scenarios]
    if not inputs.sub_emotions:
        raise ValidationError("sub_emotions: choose at least one sub-emotion or scenario")
    return [{"sub_emotion": sub.key, "scenario": None} for sub in inputs.sub_emotions]


def dialogue_parameters(*, turns: int, sessions: int) -> dict:
    """What a dialogue run adds to its parameters: the number of turns."""
    return {"turns": turns}


def critique_targets(*, critiques: list[dict]) -> list[dict]:
    """Targets that regenerate a dialogue with a reviewer's feedback (generation never imports annotations)."""
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


def dialogue_options(run: GenerationRun) -> DialogueOptions:
    """What a dialogue run asks of the pipeline beyond the sampler: turns, supervisor, classifier, risk agent..."""
    params = run.parameters
    return DialogueOptions(
        turns=int(params.get("turns", 6)),
        supervisor=bool(params.get("supervisor", True)),
        threshold=float(params.get("threshold", 3.0)),
        max_attempts=int(params.get("max_attempts", 2)),
        classify=bool(params.get("classify", True)),
        risk_agent=bool(params.get("risk_agent", risk_agent_default(run.model_spec))),
        strategies=bool(params.get("strategies", False)),
    )


def dialogue_chunks(run: GenerationRun, backend: Backend, todo: list[int]) -> Chunks:
    """Generate the dialogue items of ``todo``, chunk by chunk; yields (candidates, failures, usage).

    A run given source dialogues (their targets name a ``dialogue``) reconstructs them (``reconstruct_chunks``).
    """
    options = dialogue_options(run)
    if "dialogue" in run.targets[0]:
        yield from reconstruct_chunks(run, backend, todo, options)
        return
    labels = taxonomy_labels(run.language)
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
        version = run.prompt_version
        situation = (
            load_prompt("dialogue", version, "situation").format(situation=scenario.description) if scenario else ""
        )
        if target.get("feedback"):
            # Regeneration with a reviewer's critique: the rewrite is told what was wrong with the earlier version.
            critique = load_prompt("dialogue", version, "reviewer_feedback").format(feedback=target["feedback"])
            situation = f"{situation}\n{critique}".strip()
        emotion, category = emotion_names(sub, run.language)
        for start in range(0, len(indexes), size):
            chunk = indexes[start : start + size]
            batch = dialogue_chunk(
                backend,
                indexes=chunk,
                options=options,
                emotion=emotion,
                category=category,
                situation=situation,
                target=sub.key,
                labels=labels,
                sampling=run_sampling(run, chunk_seed(run, chunk)),
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
                best = [mean for a in state.attempts if (mean := a.get("mean")) is not None]
                ai_review["supervisor"]["score"] = max(best) if best else None
                extra = {
                    "repairs": state.repairs,
                    "input_hash": content_hash({"target": target, "index": state.index}),
                }
                try:
                    candidate = candidate_build(
                        kind=CandidateKind.DIALOGUE,
                        content={"turns": state.turns},
                        language=run.language,
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


def reconstruct_chunks(run: GenerationRun, backend: Backend, todo: list[int], options: DialogueOptions) -> Chunks:
    """Reconstruction mode: each source dialogue classified, its counselor turns rewritten and labelled."""
    labels = taxonomy_labels(run.language)
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
            sampling=run_sampling(run, chunk_seed(run, chunk)),
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
            assert state.emotion is not None  # reconstruct_chunk fails every dialogue it could not label
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
