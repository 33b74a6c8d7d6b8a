"""Psychology questions (Psyche-R1): the CPsyExam importer, cross-selection runs and the services around them.

An import reads and checks every record before it writes anything, then saves all new questions in one
transaction: a malformed record anywhere stops the import with an error naming the file, the record and the field,
and nothing is kept. Each question remembers its source (dataset, CC0 licence, attribution, file, record, id) and the
sha256 of its content, so that importing the same data again adds nothing.

A ``question`` run gives each of its questions to K models (``parameters["models"]``); the run writes one new
question candidate per source question (its ``parent``) holding every model's rationale and answer, whether each
is correct, and the difficulty: ``hard`` when fewer than ``min_correct`` models answered correctly.
"""

import copy
import re
from pathlib import Path, PurePosixPath

from django.core.exceptions import ValidationError

from . import services
from .importers import ImportResult, candidates_save_unique
from .importing import IdLedger, ImportFormatError, Limits, read_json_list, sources
from .models import Candidate, CandidateKind, GenerationRun, Language, ModelSpec
from .schemas import ContentError

FORMATS = ("cpsyexam", "cpsyexam_qa")
SPLITS = ("train", "dev", "test")
MAX_MODELS = 8
SOURCE = {
    "dataset": "CPsyExam",
    "license": "CC0 1.0",
    "attribution": "CPsyExam (Zhao et al. 2024), dedicated to the public domain under CC0 1.0 Universal",
}
# Kept from a question's content when a run copies it; a run's own answers replace any earlier ones.
_QUESTION_KEYS = ("format", "subject", "question_type", "question_kind", "question", "options", "answer", "explanation")
_SEPARATED_LETTERS = re.compile(r"^[A-Z](?:\s*[,，、]\s*[A-Z])+$")


# --- Import ----------------------------------------------------------------------------------------------------


def _split_of(name: str) -> str | None:
    return next((part for part in PurePosixPath(name).parts if part in SPLITS), None)


def _text_field(item: dict, key: str, where: str, *, required: bool = True) -> str:
    value = item.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ImportFormatError(f"{where}: {key}: must be non-empty text, not {value!r}"[:300])
    return value.strip()


def _choice_content(item: dict, where: str) -> dict:
    qtype = item.get("question_type")
    if qtype not in ("single", "multi"):
        raise ImportFormatError(f"{where}: question_type: must be single or multi, not {qtype!r}")
    options = item.get("options")
    if not isinstance(options, dict) or not options:
        raise ImportFormatError(f"{where}: options: missing (expected an object of letter: text)")
    clean = {}
    for letter, text in options.items():
        if not isinstance(text, str):
            raise ImportFormatError(f"{where}: options.{letter}: must be text, not {type(text).__name__}")
        if text.strip():
            # CPsyExam lists five letters for every question; an empty one is not an option.
            clean[letter.strip()] = text.strip()
    if len(clean) < 2:
        raise ImportFormatError(f"{where}: options: fewer than two non-empty options")
    answer = item.get("answer")
    if answer is None:
        raise ImportFormatError(f"{where}: answer: missing (the CPsyExam test split carries no answers)")
    if not isinstance(answer, str) or not answer.strip():
        raise ImportFormatError(f"{where}: answer: must be the answer letter(s), not {answer!r}")
    answer = answer.strip()
    if _SEPARATED_LETTERS.match(answer):
        # Some CPsyExam files write multiple answers as "A,B,C".
        answer = re.sub(r"[\s,，、]", "", answer)
    outside = sorted(set(answer) - set(clean))
    if outside:
        raise ImportFormatError(
            f"{where}: answer: {answer!r} names {', '.join(outside)}, not among the options {''.join(sorted(clean))}"
        )
    if qtype == "single" and len(answer) != 1:
        raise ImportFormatError(f"{where}: answer: a single-choice question has one letter, not {answer!r}")
    return {
        "format": "cpsyexam",
        "subject": _text_field(item, "subject_name", where),
        "question_type": qtype,
        "question_kind": _text_field(item, "kind", where, required=False),
        "question": _text_field(item, "question", where),
        "options": clean,
        "answer": "".join(sorted(set(answer))),
        "explanation": _text_field(item, "explanation", where, required=False),
    }


def _open_content(item: dict, where: str) -> dict:
    qtype = item.get("question_type")
    if not isinstance(qtype, str) or not qtype.strip():
        raise ImportFormatError(f"{where}: question_type: must be text such as 'QA_Analyse', not {qtype!r}")
    return {
        "format": "cpsyexam_qa",
        "subject": _text_field(item, "subject_name", where),
        "question_type": "open",
        "question_kind": qtype.strip(),
        "question": _text_field(item, "question", where),
        "options": {},
        "answer": _text_field(item, "answer", where),
        "explanation": "",
    }


def questions_import(
    *, path: Path, format: str = "cpsyexam", split: str | None = None, limit: int | None = None
) -> ImportResult:
    """Import CPsyExam questions from ``path`` (the zip archive, a folder or a JSON file) as question candidates.

    ``format`` is ``cpsyexam`` (single and multiple choice, with answer letters and explanations) or
    ``cpsyexam_qa`` (open case questions with a reference answer); ``split`` keeps only files under a train/, dev/
    or test/ folder; ``limit`` stops after that many records. Files and archives are read with the safe reading of
    ``generation.importing``. Raises ``ImportFormatError`` naming the file, the record and the field of the first
    malformed record (or an empty file, a limit passed, one ``id`` on two different questions), and
    ``ValidationError`` for a bad argument; either way nothing is written. Questions imported before, or repeated
    within the import (the same content, with or without the same id), count as duplicates.
    """
    if format not in FORMATS:
        raise ValidationError(f"format: must be one of {', '.join(FORMATS)}, not {format!r}")
    if split is not None and split not in SPLITS:
        raise ValidationError(f"split: must be one of {', '.join(SPLITS)}, not {split!r}")
    if limit is not None and limit < 1:
        raise ValidationError(f"limit: must be at least 1, not {limit}")
    path = Path(path)
    if not path.exists():
        raise ValidationError(f"path: {path} does not exist")
    build = _choice_content if format == "cpsyexam" else _open_content

    built: list[tuple[str, Candidate]] = []
    ids = IdLedger()
    files = 0
    for source in sources(path, suffix=".json", limits=Limits.from_settings()):
        if limit is not None and len(built) >= limit:
            break  # the rest of the files (or archive) is not read
        # A single file's split is in the path given; a folder's or an archive's, in the path within it.
        file_split = _split_of(path.as_posix() if path.is_file() and not source.archive else source.file)
        if split is not None and file_split != split:
            continue
        files += 1
        for index, item in enumerate(read_json_list(source)):
            if limit is not None and len(built) >= limit:
                break
            where = f"{source.name}: record {index}"
            if not isinstance(item, dict):
                raise ImportFormatError(f"{where}: expected an object, not {type(item).__name__}")
            content = build(item, where)
            source_hash = services.content_hash(content)
            provenance = {**SOURCE, **source.provenance, "record": index, "split": file_split}
            if isinstance(item.get("id"), str):
                provenance["id"] = item["id"]
                ids.add(item["id"], content_hash=source_hash, name=source.name, record=index)
            try:
                candidate = services.candidate_build(
                    kind=CandidateKind.QUESTION,
                    content=content,
                    language=Language.CHINESE,
                    source=provenance,
                    source_hash=source_hash,
                )
            except ContentError as error:
                raise ImportFormatError(f"{where}: {error}") from error
            built.append((source_hash, candidate))
    if not files:
        raise ImportFormatError(f"{path}: no JSON files" + (f" under a {split}/ folder" if split else ""))
    ids.check(lambda name, record: f"{name}: record {record}")

    created = candidates_save_unique(kind=CandidateKind.QUESTION, built=built)
    return ImportResult(created=created, duplicates=len(built) - created, files=files)


# --- Cross-selection runs --------------------------------------------------------------------------------------


def question_run_setup(*, parameters: dict, model_spec: ModelSpec | None) -> tuple[dict, ModelSpec, dict]:
    """Split a question run's own parameters from the sampler's.

    ``parameters["models"]`` names the K model specs (a list or a comma-separated string; each at most once);
    ``parameters["min_correct"]`` is M, 1..K (default K: a question is easy only when every model gets it right).
    Returns (the other parameters, the first model's spec, {"models", "min_correct"}).
    """
    rest = dict(parameters)
    names = rest.pop("models", None)
    if names is None:
        names = [model_spec.name] if model_spec else [services.modelspec_get_default().name]
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


def question_targets(*, questions: list[Candidate]) -> list[dict]:
    """A question run's targets: one per choice question, in the order given."""
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


def _backends(run: GenerationRun, backend) -> list[tuple[str, object]]:
    """(name, backend) per model of the run. ``backend`` may map spec names to backends (tests); a single backend
    serves the first model, and the others are loaded from their specs. Specs that load the same weights the same
    way share one loaded backend: the model is held in memory once."""
    from .backends import backend_for

    names = run.parameters.get("models") or [run.model_spec.name]
    if isinstance(backend, dict):
        return [(name, backend[name]) for name in names]
    # The models loaded here are watched as the first one is (generation/runwatch.py): progress and cancellation.
    watch = getattr(backend, "watch", None)
    specs = ModelSpec.objects.in_bulk(names, field_name="name")
    loaded: dict[tuple, object] = {}
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


def question_chunks(run: GenerationRun, backend, todo: list[int]):
    """Answer the questions of ``todo`` with every model, chunk by chunk; yields (candidates, failures, usage)."""
    from .backends import SamplingParams
    from .pipelines.question import QuestionItem, cross_select, difficulty_of

    models = _backends(run, backend)
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
            seed=run.seed * 100_003 + chunk[0],
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
                "runtimes": {n: b.runtime for n, b in models if getattr(b, "runtime", None)},
                "min_correct": min_correct,
                "prompt_version": f"question/{run.prompt_version}",
                "seed": run.seed,
                "chunk": chunk,
                "parameters": run.parameters,
                "question": source.pk,
                "input_hash": services.content_hash({"question": source.content, "models": [n for n, _ in models]}),
            }
            try:
                candidate = services.candidate_build(
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


def question_rescore(*, content: dict) -> dict:
    """The content again with every answer checked against its (possibly corrected) reference answer, and the
    difficulty set again from the run's ``min_correct``. Used when a counselor corrects the reference answer."""
    from .pipelines.question import difficulty_of
    from .question_agents import answer_is_correct

    new = copy.deepcopy(content)
    for answer in new.get("answers", []):
        answer["correct"] = answer_is_correct(
            given=answer.get("answer"), reference=new["answer"], question_type=new["question_type"]
        )
    selection = new.get("selection")
    if selection and new.get("answers"):
        selection["correct"] = sum(1 for a in new["answers"] if a["correct"])
        new["difficulty"] = difficulty_of(answers=new["answers"], min_correct=selection["min_correct"])
    return new


def question_list(*, difficulty: str | None = None):
    """Question candidates, newest last; ``difficulty`` keeps the hard or the easy ones of cross-selection runs."""
    qs = Candidate.objects.filter(kind=CandidateKind.QUESTION)
    if difficulty is not None:
        if difficulty not in ("hard", "easy"):
            raise ValidationError(f"difficulty: must be hard or easy, not {difficulty!r}")
        qs = qs.filter(content__difficulty=difficulty)
    return qs.order_by("id")
