"""MusPsy courses: N sessions with the same client, each followed by a memory that the next session builds on.

Every course of a chunk runs in lockstep, as dialogues do: turn t of session s of every live course is one batched
call (``dialogue.call_agents``, with ``agents.psyroom.parse_turn``), and after each session the memory writer runs
once for all of them. Session s's agents see the profile and the memories of sessions 1..s-1.

A course whose client or counselor fails twice on one turn leaves the batch with its raw text and reason. A memory
that cannot be parsed does not: it is kept unparsed (raw text as its summary), counted in the stats, and the course
goes on.
"""

from dataclasses import dataclass, field, replace

from ..agents.course import (
    course_client_messages,
    course_counselor_messages,
    memory_messages,
    memory_unparsed,
    parse_memory,
)
from ..agents.psyroom import AgentOutputError
from ..backends.base import Backend, SamplingChange, SamplingParams
from .dialogue import Usage, call_agents, report_stage, turn_parser

PROMPT_VERSION = "v1"
# The prompt version a run uses, by its language.
PROMPT_VERSIONS = {"en": PROMPT_VERSION, "zh": "v1-zh"}
PIPELINE = "course"
# The memory writer answers five labelled lines, briefly and soberly.
MEMORY_SAMPLING: SamplingChange = {"max_new_tokens": 192, "temperature": 0.3}


@dataclass
class CourseState:
    index: int
    profile: dict
    # One {"turns": [...], "memory": {...}} per finished session.
    sessions: list[dict] = field(default_factory=list)
    failure: dict | None = None
    repairs: dict[str, int] = field(default_factory=dict)

    @property
    def memories(self) -> list[dict]:
        return [s["memory"] for s in self.sessions]


@dataclass
class CourseBatch:
    courses: list[CourseState]
    usage: Usage = field(default_factory=Usage)


def _write_session(
    backend: Backend,
    states: list[CourseState],
    *,
    session: int,
    sessions: int,
    turns: int,
    sampling: SamplingParams,
    version: str,
    usage: Usage,
) -> dict[int, list[dict]]:
    """Write session ``session``'s turns for every live course, client first, in lockstep."""
    written: dict[int, list[dict]] = {s.index: [] for s in states}
    for t in range(turns):
        role = "client" if t % 2 == 0 else "counselor"
        live = [s for s in states if s.failure is None]
        if not live:
            break
        report_stage(backend, f"session {session} of {sessions}, turn {t + 1} of {turns}")
        build = course_client_messages if role == "client" else course_counselor_messages
        prompts = [
            build(
                version=version,
                profile=s.profile,
                memories=s.memories,
                session=session,
                sessions=sessions,
                turns=written[s.index],
            )
            for s in live
        ]
        parsed = call_agents(
            backend,
            prompts,
            turn_parser(role),
            replace(sampling, seed=sampling.seed * 1_000 + session * 100 + t),
            usage,
        )
        for state, result in zip(live, parsed, strict=True):
            if isinstance(result, AgentOutputError):
                state.failure = {
                    "index": state.index,
                    "session": session,
                    "turn": t,
                    "reason": result.reason,
                    "raw": result.raw,
                }
                continue
            for repair in result.repairs:
                state.repairs[repair] = state.repairs.get(repair, 0) + 1
                usage.stats[repair] += 1
            written[state.index].append({"role": role, "text": result.text})
    return written


def _write_memories(
    backend: Backend,
    states: list[CourseState],
    written: dict[int, list[dict]],
    *,
    session: int,
    sessions: int,
    sampling: SamplingParams,
    version: str,
    usage: Usage,
) -> None:
    """One batched call (and one retry) of the memory writer for every live course; unparsed memories are kept."""
    prompts = [
        memory_messages(version=version, turns=written[s.index], session=session, sessions=sessions) for s in states
    ]
    answers = call_agents(
        backend,
        prompts,
        lambda i, c: parse_memory(c.text, truncated=c.truncated),
        replace(sampling, seed=sampling.seed * 1_000 + session * 100 + 99, **MEMORY_SAMPLING),
        usage,
    )
    for state, answer in zip(states, answers, strict=True):
        if isinstance(answer, AgentOutputError):
            usage.stats["memory_unparsed"] += 1
            memory = memory_unparsed(answer.raw, answer.reason)
        else:
            usage.stats["memory_parsed"] += 1
            memory = answer
        state.sessions.append({"turns": written[state.index], "memory": memory})


def course_chunk(
    backend: Backend,
    *,
    items: list[tuple[int, dict]],
    sessions: int,
    turns: int,
    sampling: SamplingParams,
    version: str = PROMPT_VERSION,
) -> CourseBatch:
    """Generate one course of ``sessions`` sessions per (index, profile) item, all in lockstep."""
    batch = CourseBatch(courses=[CourseState(index=i, profile=profile) for i, profile in items])
    for session in range(1, sessions + 1):
        live = [s for s in batch.courses if s.failure is None]
        if not live:
            break
        written = _write_session(
            backend,
            live,
            session=session,
            sessions=sessions,
            turns=turns,
            sampling=sampling,
            version=version,
            usage=batch.usage,
        )
        done = [s for s in live if s.failure is None]
        if done:
            report_stage(backend, f"session {session} of {sessions}, memory")
            _write_memories(
                backend,
                done,
                written,
                session=session,
                sessions=sessions,
                sampling=sampling,
                version=version,
                usage=batch.usage,
            )
    return batch
