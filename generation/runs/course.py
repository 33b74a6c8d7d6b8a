"""The ``course`` run kind (MusPsy): multi-session courses with one client profile (``generation/pipelines/course.py``).

Each item is a course candidate with one child ``session`` candidate per session, saved together with the run's
progress (``candidates_save_new`` saves a candidate's ``new_children``); re-running skips saved items.
"""

from django.core.exceptions import ValidationError

from ..backends.base import Backend
from ..models import CandidateKind, ClientProfile, GenerationRun
from ..pipelines.course import course_chunk
from ..schemas import ContentError
from ..services.candidates import candidate_build, content_hash
from ..services.courses import profile_snapshot, session_build
from .inputs import RunInputs
from .sampling import Chunks, chunk_seed, run_lineage, run_sampling

SESSIONS_RANGE = (2, 10)


def course_targets(inputs: RunInputs) -> list[dict]:
    """A course run's targets: one per profile; item i is written for profile i modulo their number."""
    if not inputs.profiles:
        raise ValidationError("profiles: a course run needs at least one client profile")
    return [{"profile": p.pk} for p in inputs.profiles]


def course_parameters(*, turns: int, sessions: int) -> dict:
    """What a course run adds to its parameters: sessions (checked) and turns per session."""
    low, high = SESSIONS_RANGE
    if isinstance(sessions, bool) or not isinstance(sessions, int) or not low <= sessions <= high:
        raise ValidationError(f"sessions: must be between {low} and {high}, not {sessions!r}")
    return {"sessions": sessions, "turns": turns}


def course_chunks(run: GenerationRun, backend: Backend, todo: list[int]) -> Chunks:
    """Generate the courses of ``todo`` chunk by chunk; yields (courses with their sessions, failures, usage)."""
    params = run.parameters
    profiles = ClientProfile.objects.in_bulk([t["profile"] for t in run.targets])
    size = max(1, run.model_spec.batch_size)
    for start in range(0, len(todo), size):
        chunk = todo[start : start + size]
        items, failures = [], []
        for i in chunk:
            profile = profiles.get(run.targets[i % len(run.targets)]["profile"])
            if profile is None:
                failures.append(
                    {"index": i, "reason": "profile_missing", "raw": str(run.targets[i % len(run.targets)])}
                )
            else:
                items.append((i, profile_snapshot(profile)))
        batch = course_chunk(
            backend,
            items=items,
            sessions=int(params["sessions"]),
            turns=int(params.get("turns", 6)),
            sampling=run_sampling(run, chunk_seed(run, chunk)),
            version=run.prompt_version,
        )
        courses = []
        for state in batch.courses:
            if state.failure:
                failures.append(state.failure)
                continue
            profile = profiles[state.profile["id"]]
            extra = {
                "repairs": state.repairs,
                "input_hash": content_hash({"profile": state.profile, "index": state.index}),
            }
            lineage = run_lineage(run, backend, pipeline="course", chunk=chunk, extra=extra)
            try:
                course = candidate_build(
                    kind=CandidateKind.COURSE,
                    content={"profile": state.profile, "sessions": len(state.sessions), "goals": profile.goals},
                    language=profile.language,
                    run=run,
                    run_index=state.index,
                    lineage=lineage,
                )
                course.profile = profile
                course.new_children = [
                    session_build(course, n, session, language=profile.language, lineage=lineage)
                    for n, session in enumerate(state.sessions, start=1)
                ]
            except ContentError as error:
                failures.append({"index": state.index, "reason": "invalid_content", "raw": str(error)})
                continue
            courses.append(course)
        yield courses, failures, batch.usage
