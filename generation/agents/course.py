"""The agents of a multi-session course (MusPsy): client and counselor who remember, and the memory writer.

Each session's client and counselor see the client's profile and the memories of all earlier sessions; the
counselor follows up on the last session's assignment and adjusts the direction. After each session the memory
writer records the client's emotion and cognitive state, the counselor's observations, the assignments, the session
goal and a summary. Its output is untrusted: ``parse_memory`` reads exactly those five labelled fields or refuses.
"""

import re

from ..schemas import MEMORY_FIELDS
from .psyroom import AgentOutputError, dialogue_text, load_prompt

PIPELINE = "course"

MEMORY_LABELS = {
    "emotion_cognitive": "Emotion and cognitive state",
    "observations": "Counselor observations",
    "assignments": "Counseling assignments",
    "session_goal": "Session goal",
    "summary": "Summary",
}
# The labels a writer may use for each field: ours, MusPsy's own ("[Counseling Assignments:]") and short forms.
_ALIASES = {
    "emotion_cognitive": ["emotion and cognitive state", "emotional and cognitive state", "emotion state"],
    "observations": ["counselor observations", "counsellor observations", "observations"],
    "assignments": ["counseling assignments", "counselling assignments", "assignments", "homework"],
    "session_goal": ["session goal", "goal"],
    "summary": ["counseling summary", "summary"],
}
_FIELD_RE = re.compile(
    r"^\s*(?:[-*\d.]+\s*)?[*_\[]*\s*("
    + "|".join(re.escape(a) for field in _ALIASES.values() for a in sorted(field, key=len, reverse=True))
    + r")\s*[*_]*\s*[:：]\s*[*_\]]*\s*(.*)$",
    re.I,
)
_ALIAS_FIELD = {alias: field for field, aliases in _ALIASES.items() for alias in aliases}
MAX_FIELD_CHARS = 2000


def memory_text(memory: dict) -> str:
    """A memory as the next session's agents read it (and as a reviewer sees it)."""
    return "\n".join(f"{MEMORY_LABELS[f]}: {memory.get(f, '')}" for f in MEMORY_FIELDS if memory.get(f))


def profile_text(profile: dict) -> str:
    parts = [f"Name: {profile.get('name', '')}"]
    for key, label in (("background", "Background"), ("personality", "Personality"), ("assessment", "Assessment"),
                       ("goals", "Goals of the course")):  # fmt: skip
        if profile.get(key):
            parts.append(f"{label}: {profile[key]}")
    return "\n".join(parts)


def _memories_block(version: str, memories: list[dict]) -> str:
    if not memories:
        return load_prompt(PIPELINE, version, "no_memories")
    blocks = [f"Session {n}:\n{memory_text(m)}" for n, m in enumerate(memories, start=1)]
    return load_prompt(PIPELINE, version, "memories").format(memories="\n\n".join(blocks))


def _direction(memories: list[dict]) -> str:
    if not memories:
        return "Get to know the client's difficulty and agree on a first small assignment."
    last = memories[-1]
    assignment = last.get("assignments") or "the last assignment"
    return f'Follow up on the last assignment ("{assignment}") and adjust the counseling direction to what has changed.'


def course_client_messages(
    *, version: str, profile: dict, memories: list[dict], session: int, sessions: int, turns: list[dict]
) -> list[dict]:
    """The client's view of session ``session``: its own turns are the assistant's, the counselor's the user's."""
    system = load_prompt(PIPELINE, version, "client").format(
        session=session, sessions=sessions, profile=profile_text(profile), memories=_memories_block(version, memories)
    )
    opening = load_prompt(PIPELINE, version, "client_opening" if memories else "client_first_opening")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": opening}]
    for turn in turns:
        messages.append({"role": "assistant" if turn["role"] == "client" else "user", "content": turn["text"]})
    return messages


def course_counselor_messages(
    *, version: str, profile: dict, memories: list[dict], session: int, sessions: int, turns: list[dict]
) -> list[dict]:
    """The counselor's view of session ``session``, with every earlier memory and the assignment to follow up."""
    system = load_prompt(PIPELINE, version, "counselor").format(
        session=session,
        sessions=sessions,
        profile=profile_text(profile),
        memories=_memories_block(version, memories),
        direction=_direction(memories),
    )
    messages = [{"role": "system", "content": system}]
    for turn in turns:
        messages.append({"role": "user" if turn["role"] == "client" else "assistant", "content": turn["text"]})
    return messages


def memory_messages(*, version: str, turns: list[dict], session: int, sessions: int) -> list[dict]:
    prompt = load_prompt(PIPELINE, version, "memory").format(
        session=session, sessions=sessions, dialogue=dialogue_text(turns)
    )
    return [{"role": "user", "content": prompt}]


def parse_memory(raw: str, *, truncated: bool = False) -> dict:
    """Read the memory writer's five labelled fields; refuse anything else.

    A field's text runs from its label to the next label (continuation lines included). Refused, with the reason
    counted in the run's stats: no field found (``memory_unlabelled``), a field missing or empty
    (``memory_missing_field``), a field given twice (``memory_repeated_field``), or a runaway field
    (``memory_runaway``). An answer cut by the token limit counts only when every field is complete before the cut.
    """
    fields: dict[str, list[str]] = {}
    current = None
    for line in raw.replace("\r\n", "\n").split("\n"):
        match = _FIELD_RE.match(line)
        if match:
            current = _ALIAS_FIELD[match.group(1).lower()]
            if current in fields:
                raise AgentOutputError("memory_repeated_field", raw)
            fields[current] = [match.group(2)]
        elif current is not None:
            fields[current].append(line)
    if not fields:
        raise AgentOutputError("memory_unlabelled", raw)
    memory = {}
    for name in MEMORY_FIELDS:
        text = " ".join(part.strip() for part in fields.get(name, []) if part.strip()).strip().strip("*_[]").strip()
        if not text:
            raise AgentOutputError("memory_missing_field", raw)
        if len(text) > MAX_FIELD_CHARS:
            raise AgentOutputError("memory_runaway", raw)
        memory[name] = text
    if truncated and MEMORY_FIELDS[-1] == list(fields)[-1] and not re.search(r"[.!?。！？]$", memory["summary"]):
        raise AgentOutputError("memory_truncated", raw)
    return memory


def memory_unparsed(raw: str, reason: str) -> dict:
    """What a session keeps when its memory could not be read: the raw text, as the summary the next session sees.

    The course goes on (one bad memory must not cost the whole course); the failure is counted and the raw text
    is kept for a reviewer to correct.
    """
    text = raw.strip()[:MAX_FIELD_CHARS] or "(the memory writer gave no answer)"
    memory: dict[str, str | bool] = {name: "" for name in MEMORY_FIELDS}
    memory.update(summary=text, unparsed=True, error=reason, raw=raw[:20_000])
    return memory
