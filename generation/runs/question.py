"""The ``question`` run kind (Psyche-R1 cross-selection): each question answered by K models.

A question run gives each of its questions to K models (``parameters["models"]``); the run writes one new
question candidate per source question (its ``parent``) holding every model's rationale and answer, whether each
is correct, and the difficulty: ``hard`` when fewer than ``min_correct`` models answered correctly.
"""

import copy

from django.core.exceptions import ValidationError

from ..backends.base import Backend, SamplingParams
from ..backends.loading import backend_for
from ..models import Candidate, CandidateKind, GenerationRun, ModelSpec
from ..pipelines.question import QuestionItem, cross_select, difficulty_of
from ..schemas import ContentError
from ..services.candidates import candidate_build, content_hash
from ..services.modelspecs import modelspec_get_default
from .inputs import RunInputs
from .sampling import Chunks, chunk_seed

MAX_MODELS = 8
# Kept from a question's content when a run copies it; a run's own answers replace any earlier ones.
_QUESTION_KEYS = ("format", "subject", "question_type", "question_kind", "question", "options", "answer", "explanation")


def question_setup(*, parameters: dict, model_spec: ModelSpec | None) -> tuple[dict, ModelSpec, dict]:
    """Split a question run's own parameters from the sampler's.

    ``parameters["models"]`` names the K model specs (a list or a comma-separated string; each at most once);
    ``parameters["min_correct"]`` is M, 1..K (default K: a question is easy only when every model gets it right).
    Returns (the other parameters, the first model's spec, {"models", "min_correct"}).
    """
    rest = dict(parameters)
    names = rest.pop("models", None)
    if names is None:
        names = [model_spec.name] if model_spec else [modelspec_get_default().name]
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ValidationError("parameters.models: must name at least one model spec")
    if len(set(names)) != len(names) or len(names) > MAX_MODELS:
        raise ValidationError(f"parameters.models: {len(names)} names with repeats, or more than {MAX_MODELS}")
    specs = ModelSpec.objects.in_bulk(names, field_name="name")
    missing = [n for n in names if n not in specs]
    if missing:
        raise ValidationError(f"parameters.models: no model spec named {', '.join(missing)}")
    if model_spec is not None and model_spec.name != names[0]:
        raise ValidationError(f"model_spec: a question run's model spec is the first of its models ({names[0]})")
    min_correct = rest.pop("min_correct", len(names))
    if isinstance(min_correct, bool) or not isinstance(min_correct, int) or not 1 <= min_correct <= len(names):
        raise ValidationError(
            f"parameters.min_correct: must be a whole number from 1 to {len(names)}, not {min_correct!r}"
        )
    return rest, specs[names[0]], {"models": names, "min_correct": min_correct}


def question_targets(inputs: RunInputs) -> list[dict]:
    """A question run's targets: one per choice question, in the order given."""
    questions = inputs.questions
    if not questions:
        raise ValidationError("questions: a question run needs at least one question")
    wrong = [q.pk for q in questions if q.kind != CandidateKind.QUESTION]
    if wrong:
        raise ValidationError(f"questions: candidate(s) {wrong} are not questions")
    open_ = [q.pk for q in questions if q.content.get("question_type") not in ("single", "multi")]
    if open_:
        raise ValidationError(
            f"questions: candidate(s) {open_} are open questions; answers can only be checked for choice questions"
        )
    return [{"question": q.pk} for q in questions]


def model_backends(run: GenerationRun, backend: Backend | dict[str, Backend] | None) -> list[tuple[str, Backend]]:
    """(name, backend) per model of the run. ``backend`` may map spec names to backends (tests); a single backend
    serves the first model, and the others are loaded from their specs. Specs that load the same weights the same
    way share one loaded backend: the model is held in memory once."""
    names = run.parameters.get("models") or [run.model_spec.name]
    if isinstance(backend, dict):
        return [(name, backend[name]) for name in names]
    # The models loaded here are watched as the first one is (generation/runwatch.py): progress and cancellation.
    watch = getattr(backend, "watch", None)
    specs = ModelSpec.objects.in_bulk(names, field_name="name")
    loaded: dict[tuple, Backend] = {}
    result = []
    for i, name in enumerate(names):
        spec = specs[name]
        key = (spec.backend, spec.path, spec.base_url, spec.api_key_env, spec.dtype, spec.device)
        if key not in loaded:
            loaded[key] = backend if i == 0 and backend is not None else backend_for(spec)
            if watch is not None:
                loaded[key] = watch.wrap(loaded[key])
        result.append((name, loaded[key]))
    return result


def question_chunks(run: GenerationRun, backend: Backend, todo: list[int]) -> Chunks:
    """Answer the questions of ``todo`` with every model, chunk by chunk; yields (candidates, failures, usage)."""
    models = model_backends(run, backend)
    min_correct = int(run.parameters.get("min_correct", len(models)))
    sources = Candidate.objects.in_bulk([t["question"] for t in run.targets])
    params = run.parameters
    size = max(1, run.model_spec.batch_size)
    for start in range(0, len(todo), size):
        chunk = todo[start : start + size]
        items, failures = [], []
        for i in chunk:
            source = sources.get(run.targets[i]["question"])
            if source is None:
                failures.append({"index": i, "reason": "question_missing", "raw": str(run.targets[i])})
                continue
            content = {k: copy.deepcopy(source.content[k]) for k in _QUESTION_KEYS if k in source.content}
            items.append(QuestionItem(index=i, content=content))
        sampling = SamplingParams(
            max_new_tokens=int(params.get("max_new_tokens", 256)),
            temperature=float(params.get("temperature", 0.7)),
            top_p=float(params.get("top_p", 0.9)),
            repetition_penalty=float(params.get("repetition_penalty", 1.0)),
            seed=chunk_seed(run, chunk),
        )
        batch = cross_select(models, items, min_correct=min_correct, sampling=sampling, version=run.prompt_version)
        candidates = []
        for item in batch.items:
            source = sources[run.targets[item.index]["question"]]
            content = {
                **item.content,
                "answers": item.answers,
                "difficulty": difficulty_of(answers=item.answers, min_correct=min_correct),
                "selection": {"models": [n for n, _ in models], "min_correct": min_correct, "correct": item.correct},
            }
            lineage = {
                "model": run.model_spec.name,
                "models": [n for n, _ in models],
                # The device and dtype each in-process model ran in.
                "runtimes": {n: runtime for n, b in models if (runtime := getattr(b, "runtime", None))},
                "min_correct": min_correct,
                "prompt_version": f"question/{run.prompt_version}",
                "language": run.language,
                "seed": run.seed,
                "chunk": chunk,
                "parameters": run.parameters,
                "question": source.pk,
                "input_hash": content_hash({"question": source.content, "models": [n for n, _ in models]}),
            }
            try:
                candidate = candidate_build(
                    kind=CandidateKind.QUESTION,
                    content=content,
                    language=source.language,
                    run=run,
                    run_index=item.index,
                    lineage=lineage,
                    source=source.source,
                )
            except ContentError as error:
                failures.append({"index": item.index, "reason": "invalid_content", "raw": str(error)})
                continue
            candidate.parent = source
            candidates.append(candidate)
        yield candidates, failures, batch
