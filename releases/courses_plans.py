"""The rows of the ``courses`` (MusPsy) and ``plans`` (PsyRoom B) formats.

``courses``: one example per approved session of an approved course, as chat ``messages``: the system message
holds the counselor's instructions, the client's profile as the course was written for it (without the name) and
the approved memories of the earlier sessions, in order; then the session's turns. ``plans``: instruction/output
pairs, one per section of an approved treatment plan, the input being the approved revision of the dialogue the
plan was written for.

What may be selected (``selectors.release_selection``): a session only when its course is exportable and every
earlier session of the course is approved; a plan only when its source dialogue is exportable. Every text these
rows hold is scanned for personal data as a row (``services._PiiGate.clean_row``), since they gather the texts of
several candidates.
"""

from annotations.exports.sft import ROLE_TO_CHAT
from generation.models import Candidate, CandidateKind, Revision
from generation.training import training_system_prompt

# The kinds these formats write, and the format each is written in.
FORMAT_OF = {CandidateKind.SESSION: "courses", CandidateKind.PLAN: "plans"}

PROFILE_FIELDS = (("background", "Background"), ("personality", "Personality"), ("assessment", "Assessment"),
                  ("goals", "Goals"))  # fmt: skip
MEMORY_FIELDS = (
    ("emotion_cognitive", "Emotion and cognitive state"),
    ("observations", "Counselor observations"),
    ("assignments", "Assignments"),
    ("session_goal", "Session goal"),
    ("summary", "Summary"),
)
# A plan's sections in the order a plan is read, with what the instruction asks for.
PLAN_SECTIONS = (
    ("case_formulation", "the case formulation"),
    ("goals", "the treatment goals"),
    ("interventions", "the interventions, each with its rationale"),
    ("homework", "the homework"),
    ("session_schedule", "the session schedule"),
    ("risk_assessment", "the risk assessment (low, moderate or high, with the rationale)"),
    ("safety_plan", "the safety plan"),
    ("referral_criteria", "the referral criteria"),
)
PLAN_INSTRUCTION = (
    "You are a clinical psychologist. Read the counseling dialogue between a client and a counselor, then write "
    "{section} of the client's treatment plan."
)
SPEAKER = {"client": "Client", "counselor": "Counselor"}


def _source(candidate) -> dict | None:
    source = candidate.source or {}
    return {k: source[k] for k in ("dataset", "license", "attribution") if k in source} or None


def _metadata(candidate, revision, reviewer_ids: list[int]) -> dict:
    return {
        "candidate_id": candidate.pk,
        "sub_emotion": candidate.sub_emotion.key if candidate.sub_emotion else None,
        "language": candidate.language,
        "revision": revision.number,
        "reviewers": reviewer_ids,
        "source": _source(candidate),
    }


def content_text(kind: str, content: dict) -> str:
    """The text a session or plan is compared by for duplicates (a session: its turns and memory)."""
    if kind == CandidateKind.PLAN:
        return "\n".join(f"{key}: {section_text(content, key)}" for key, _ in PLAN_SECTIONS)
    turns = "\n".join(f"{t.get('role')}: {t.get('text')}" for t in content.get("turns", []))
    return turns + "\n" + memory_text(content.get("memory") or {})


def memory_text(memory: dict) -> str:
    """A session's memory as lines ``label: text``; an unparsed memory as the writer's raw text."""
    lines = [
        f"{label}: {memory[key]}" for key, label in MEMORY_FIELDS if isinstance(memory.get(key), str) and memory[key]
    ]
    if not lines and memory.get("unparsed") and isinstance(memory.get("raw"), str):
        lines = [memory["raw"]]
    return "\n".join(lines)


def course_system_message(*, profile: dict, earlier: list[tuple[int, dict]], language: str) -> str:
    """The counselor's instructions (in the session's ``language``), the client's profile and the earlier sessions'
    memories ``(sequence, memory)``, oldest first."""
    parts = [training_system_prompt(language=language), "", "Client profile:"]
    parts += [
        f"{label}: {profile[key]}"
        for key, label in PROFILE_FIELDS
        if isinstance(profile.get(key), str) and profile[key]
    ]
    if not earlier:
        parts += ["", "This is the first session with this client."]
    for sequence, memory in earlier:
        parts += ["", f"Memory of session {sequence}:", memory_text(memory)]
    return "\n".join(parts)


def course_row(
    *, session, revision, course_revision, earlier: list[tuple[int, Revision]], reviewer_ids: list[int]
) -> dict:
    """One session as a chat example; ``earlier`` is ``(sequence, approved revision)`` of each earlier session."""
    system = course_system_message(
        profile=course_revision.content.get("profile") or {},
        earlier=[(sequence, rev.content.get("memory") or {}) for sequence, rev in earlier],
        language=session.language,
    )
    messages = [{"role": "system", "content": system}]
    messages += [{"role": ROLE_TO_CHAT[t["role"]], "content": t["text"]} for t in revision.content.get("turns", [])]
    while messages[-1]["role"] == "user":  # an example ends on the counselor's words, as in sft
        messages.pop()
    metadata = _metadata(session, revision, reviewer_ids)
    metadata.update(
        course_id=session.parent_id,
        course_revision=course_revision.number,
        session=session.sequence,
        earlier=[[sequence, rev.number] for sequence, rev in earlier],
    )
    return {"messages": messages, "metadata": metadata}


def section_text(content: dict, key: str) -> str:
    value = content.get(key)
    if key == "interventions":
        return "\n".join(f"- {i.get('technique')}: {i.get('rationale')}" for i in value or [] if isinstance(i, dict))
    if key == "risk_assessment":
        value = value or {}
        return f"{value.get('level')}: {value.get('rationale')}"
    if isinstance(value, list):
        return "\n".join(f"- {item}" for item in value)
    return str(value or "")


def transcript(turns: list[dict]) -> str:
    return "\n".join(f"{SPEAKER.get(str(t.get('role')), t.get('role'))}: {t.get('text')}" for t in turns)


def plan_rows(*, plan, revision, dialogue_revision, reviewer_ids: list[int]) -> list[dict]:
    """One instruction/output pair per section of the plan's approved revision; the input is the approved
    revision of the dialogue the plan was written for."""
    source = transcript(dialogue_revision.content.get("turns", []))
    rows = []
    for key, asked in PLAN_SECTIONS:
        metadata = _metadata(plan, revision, reviewer_ids)
        metadata.update(section=key, dialogue_id=plan.parent_id, dialogue_revision=dialogue_revision.number)
        rows.append(
            {
                "instruction": PLAN_INSTRUCTION.format(section=asked),
                "input": source,
                "output": section_text(revision.content, key),
                "metadata": metadata,
            }
        )
    return rows


class EarlierSessions:
    """The approved revisions of a course's sessions, read once a course (the build reads sessions in id order, and
    a course's sessions are saved together, so the last course read is the one asked for next)."""

    def __init__(self) -> None:
        self._course: int | None = None
        self._sessions: list[tuple[int, Revision]] = []

    def of(self, session) -> list[tuple[int, Revision]]:
        """``(sequence, approved revision)`` of each session before ``session``, oldest first (the selection
        keeps only sessions whose earlier sessions are all approved)."""
        if session.parent_id != self._course:
            rows = (
                Candidate.objects.filter(parent_id=session.parent_id, kind=CandidateKind.SESSION)
                .exclude(approved_revision=None)
                .select_related("approved_revision")
                .only("sequence", "approved_revision", "approved_revision__number", "approved_revision__content")
                .order_by("sequence")
            )
            self._sessions = [
                (c.sequence, c.approved_revision) for c in rows if c.sequence is not None and c.approved_revision
            ]
            self._course = session.parent_id
        return [(sequence, revision) for sequence, revision in self._sessions if sequence < session.sequence]
