"""The agents of a multi-session course (MusPsy): client and counselor who remember, and the memory writer.

Each session's client and counselor see the client's profile and the memories of all earlier sessions; the
counselor follows up on the last session's assignment and adjusts the direction. After each session the memory
writer records the client's emotion and cognitive state, the counselor's observations, the assignments, the session
goal and a summary. Its output is untrusted: ``parse_memory`` reads exactly those five labelled fields or refuses.
"""

import re

from ..schemas import MEMORY_FIELDS
from .psyroom import AgentOutputError, dialogue_text, load_prompt, prompt_language

PIPELINE = "course"

MEMORY_LABELS = {
    "emotion_cognitive": "Emotion and cognitive state",
    "observations": "Counselor observations",
    "assignments": "Counseling assignments",
    "session_goal": "Session goal",
    "summary": "Summary",
}
# The same labels in a Chinese prompt (``v1-zh``).
MEMORY_LABELS_ZH = {
    "emotion_cognitive": "情绪与认知状态",
    "observations": "咨询师观察",
    "assignments": "咨询作业",
    "session_goal": "本次咨询目标",
    "summary": "总结",
}
# The labels a writer may use for each field: ours, MusPsy's own ("[Counseling Assignments:]"), short forms, and
# the Chinese ones.
_ALIASES = {
    "emotion_cognitive": ["emotion and cognitive state", "emotional and cognitive state", "emotion state",
                          "情绪与认知状态", "情绪和认知状态", "情绪状态"],
    "observations": ["counselor observations", "counsellor observations", "observations", "咨询师观察", "观察"],
    "assignments": ["counseling assignments", "counselling assignments", "assignments", "homework", "咨询作业",
                    "作业"],
    "session_goal": ["session goal", "goal", "本次咨询目标", "本次目标", "咨询目标", "目标"],
    "summary": ["counseling summary", "summary", "咨询总结", "总结"],
}  # fmt: skip
_FIELD_RE = re.compile(
    r"^\s*(?:[-*\d.]+\s*)?[*_\[]*\s*("
    + "|".join(re.escape(a) for field in _ALIASES.values() for a in sorted(field, key=len, reverse=True))
    + r")\s*[*_]*\s*[:：]\s*[*_\]]*\s*(.*)$",
    re.I,
)
_ALIAS_FIELD = {alias: field for field, aliases in _ALIASES.items() for alias in aliases}
MAX_FIELD_CHARS = 2000


def memory_text(memory: dict, *, language: str = "en") -> str:
    """A memory as the next session's agents read it (and as a reviewer sees it), labelled in ``language``."""
    labels = MEMORY_LABELS_ZH if language == "zh" else MEMORY_LABELS
    return "\n".join(f"{labels[f]}: {memory.get(f, '')}" for f in MEMORY_FIELDS if memory.get(f))


_PROFILE_LABELS = {
    "en": {"name": "Name", "background": "Background", "personality": "Personality", "assessment": "Assessment",
           "goals": "Goals of the course"},
    "zh": {"name": "称呼", "background": "背景", "personality": "性格", "assessment": "评估", "goals": "疗程目标"},
}  # fmt: skip


def profile_text(profile: dict, *, language: str = "en") -> str:
    labels = _PROFILE_LABELS[language]
    parts = [f"{labels['name']}: {profile.get('name', '')}"]
    for key in ("background", "personality", "assessment", "goals"):
        if profile.get(key):
            parts.append(f"{labels[key]}: {profile[key]}")
    return "\n".join(parts)


def _memories_block(version: str, memories: list[dict]) -> str:
    if not memories:
        return load_prompt(PIPELINE, version, "no_memories")
    language = prompt_language(version)
    session = "第{n}次咨询" if language == "zh" else "Session {n}"
    blocks = [f"{session.format(n=n)}:\n{memory_text(m, language=language)}" for n, m in enumerate(memories, start=1)]
    return load_prompt(PIPELINE, version, "memories").format(memories="\n\n".join(blocks))


def _direction(version: str, memories: list[dict]) -> str:
    """What the counselor is told to do this session: the first gets to know the client, later ones follow up."""
    if not memories:
        return load_prompt(PIPELINE, version, "direction_first")
    assignment = memories[-1].get("assignments") or load_prompt(PIPELINE, version, "direction_no_assignment")
    return load_prompt(PIPELINE, version, "direction").format(assignment=assignment)


def course_client_messages(
    *, version: str, profile: dict, memories: list[dict], session: int, sessions: int, turns: list[dict]
) -> list[dict]:
    """The client's view of session ``session``: its own turns are the assistant's, the counselor's the user's."""
    system = load_prompt(PIPELINE, version, "client").format(
        session=session,
        sessions=sessions,
        profile=profile_text(profile, language=prompt_language(version)),
        memories=_memories_block(version, memories),
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
        profile=profile_text(profile, language=prompt_language(version)),
        memories=_memories_block(version, memories),
        direction=_direction(version, memories),
    )
    messages = [{"role": "system", "content": system}]
    for turn in turns:
        messages.append({"role": "user" if turn["role"] == "client" else "assistant", "content": turn["text"]})
    return messages


def memory_messages(*, version: str, turns: list[dict], session: int, sessions: int) -> list[dict]:
    prompt = load_prompt(PIPELINE, version, "memory").format(
        session=session, sessions=sessions, dialogue=dialogue_text(turns, language=prompt_language(version))
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
