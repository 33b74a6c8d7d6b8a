"""The MusPsy importers: client profiles and whole courses.

They read every file and check every line before they write anything, then save in one transaction: a malformed
line stops the import with an error naming the file, the line and what is wrong, and nothing is kept. The sha256 of
what was read makes a re-import find what the first one made instead of duplicating.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from ..models import Candidate, CandidateKind, ClientProfile, Language
from ..schemas import MEMORY_FIELDS, ContentError
from ..services.candidates import candidate_build, candidates_save_new, content_hash
from ..services.courses import profile_snapshot, session_build
from .reading import ImportFormatError, file_text, import_record

SOURCE = {
    "dataset": "MusPsy",
    "license": "MIT",
    "attribution": "MusPsy-Dataset (arXiv 2506.06626), Rener2005/MusPsy, MIT License, Copyright (c) 2026 Wang Junzhe",
}
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass
class CourseImportResult:
    course: Candidate | None
    profile: ClientProfile
    created: bool


def _read_lines(path: Path) -> list[str]:
    # The safe reading every importer shares: size limit, UTF-8, no NUL, each refused naming the line.
    return file_text(path).split("\n")


_MEMORY_HEAD = re.compile(r"^The (\d+)(?:st|nd|rd|th) Counseling\s*$")
_MEMORY_FIELD = re.compile(
    r"^\[(Emotion and Cognitive State|Counselor Observations|Counseling Assignments|Session Goal):\]\s*(.*)$"
)
_MEMORY_KEYS = {
    "Emotion and Cognitive State": "emotion_cognitive",
    "Counselor Observations": "observations",
    "Counseling Assignments": "assignments",
    "Session Goal": "session_goal",
}
_MEMORY_LABEL_OF = {key: label for label, key in _MEMORY_KEYS.items()}
_PROFILE_SECTIONS = {
    "[Personal Profile]": "background",
    "[Personal Characteristics]": "personality",
    "[Assessment and Diagnosis]": "assessment",
}


def parse_memories(path: Path) -> tuple[dict, list[dict]]:
    """MusPsy memories: the static traits (from the first block) and one memory per session, numbered 1..N.

    Each block: "The Nth Counseling", "Client Profile:", "Static Traits:" with [Personal Profile],
    [Personal Characteristics] and [Assessment and Diagnosis], "Counseling Memory:" with four bracketed fields,
    "Counseling Summary:" and its text.
    """
    lines = _read_lines(path)
    blocks: list[tuple[int, int, list[tuple[int, str]]]] = []
    for n, line in enumerate(lines, start=1):
        head = _MEMORY_HEAD.match(line.strip())
        if head:
            blocks.append((int(head.group(1)), n, []))
        elif blocks:
            blocks[-1][2].append((n, line))
        elif line.strip():
            raise ImportFormatError(
                f"{path}:{n}: expected 'The 1th Counseling' before anything else, got {line[:60]!r}"
            )
    if not blocks:
        raise ImportFormatError(f"{path}: no 'The Nth Counseling' block found")
    traits: dict = {}
    memories = []
    for expected, (number, start, body) in enumerate(blocks, start=1):
        if number != expected:
            raise ImportFormatError(f"{path}:{start}: session {number} where session {expected} was expected")
        section, where, block_traits, memory = None, "", {}, {}
        for n, line in body:
            text = line.strip()
            field = _MEMORY_FIELD.match(text)
            if text in _PROFILE_SECTIONS:
                section, where = "trait", _PROFILE_SECTIONS[text]
                block_traits[where] = ""
            elif field:
                key = _MEMORY_KEYS[field.group(1)]
                if key in memory:
                    raise ImportFormatError(f"{path}:{n}: [{field.group(1)}:] given twice in session {number}")
                memory[key] = field.group(2).strip()
                section, where = "memory", key
            elif text == "Counseling Summary:":
                section, where = "memory", "summary"
                memory["summary"] = ""
            elif text in ("Client Profile:", "Counseling Memory:") or text.startswith("Static Traits:") or not text:
                if text == "Counseling Memory:":
                    section = None
            elif section == "trait":
                block_traits[where] = f"{block_traits[where]} {text}".strip()
            elif section == "memory":
                memory[where] = f"{memory[where]} {text}".strip()
            else:
                raise ImportFormatError(f"{path}:{n}: unexpected line in session {number}: {text[:60]!r}")
        for key in MEMORY_FIELDS:
            if not memory.get(key):
                label = "Counseling Summary" if key == "summary" else f"[{_MEMORY_LABEL_OF[key]}:]"
                raise ImportFormatError(f"{path}:{start}: session {number} has no {label} (or it is empty)")
        if not traits:
            traits = block_traits
        memories.append(memory)
    for key, label in (("background", "[Personal Profile]"), ("assessment", "[Assessment and Diagnosis]")):
        if not traits.get(key):
            raise ImportFormatError(f"{path}:{blocks[0][1]}: session 1 has no {label} text")
    return traits, memories


_CARD_SEPARATOR = re.compile(r"^={20,}\s*$")
_CARD_FIELD = re.compile(r"^\[(Basic Info|Recent Life Events|Emotion State|Cognitive State)\]\s*[:：]\s*(.*)$")


def parse_cards(path: Path) -> list[dict]:
    """MusPsy client cards: one block per session, separated by a line of '='; each with [Basic Info], the three
    dynamic states and the Counseling Goals text."""
    lines = _read_lines(path)
    cards: list[dict] = []
    current: dict | None = None
    start = 1
    goals = False

    def close(at: int) -> None:
        if current is None:
            return
        for key in ("Basic Info", "Counseling Goals"):
            if not current.get(key):
                raise ImportFormatError(f"{path}:{start}: the card of session {len(cards) + 1} has no {key}")
        cards.append(current)

    for n, line in enumerate(lines, start=1):
        text = line.strip()
        if _CARD_SEPARATOR.match(text):
            close(n)
            current, goals = None, False
            continue
        if not text:
            continue
        if current is None:
            current, start = {}, n
        field = _CARD_FIELD.match(text)
        key = field.group(1) if field else "Counseling Goals" if text == "Counseling Goals:" else None
        if key in current:
            raise ImportFormatError(f"{path}:{n}: [{key}] given twice in the card of session {len(cards) + 1}")
        if field:
            current[field.group(1)] = field.group(2).strip()
            goals = False
        elif text in ("Client's Static Traits:", "Client's Dynamic States:"):
            goals = False
        elif text == "Counseling Goals:":
            goals = True
            current["Counseling Goals"] = ""
        elif goals:
            current["Counseling Goals"] = f"{current['Counseling Goals']}\n{text}".strip()
        else:
            raise ImportFormatError(f"{path}:{n}: unexpected line in a client card: {text[:60]!r}")
    close(len(lines))
    if not cards:
        raise ImportFormatError(f"{path}: no client card found")
    return cards


_DIALOGUE_TURN = re.compile(r"^(Consultant|User)\s*[:：]\s*(.*)$")
_DIALOGUE_ROLES = {"Consultant": "counselor", "User": "client"}
# A line that starts like a speaker's label ("Therapist: ..."), so is not the continuation of a turn.
_OTHER_SPEAKER = re.compile(r"^[A-Za-z][A-Za-z ]{0,24}[:：]")


def parse_dialogues(path: Path) -> list[list[dict]]:
    """MusPsy dialogues: "Consultant:" / "User:" lines; sessions separated by a line "#######"."""
    lines = _read_lines(path)
    sessions: list[list[dict]] = [[]]
    starts = [1]
    for n, line in enumerate(lines, start=1):
        text = line.strip()
        if text.startswith("#") and set(text) == {"#"}:
            if not sessions[-1]:
                raise ImportFormatError(f"{path}:{n}: session {len(sessions)} is empty")
            sessions.append([])
            starts.append(n + 1)
            continue
        if not text:
            continue
        turn = _DIALOGUE_TURN.match(text)
        if turn:
            if not turn.group(2).strip():
                raise ImportFormatError(f"{path}:{n}: an empty {turn.group(1)} turn")
            sessions[-1].append({"role": _DIALOGUE_ROLES[turn.group(1)], "text": turn.group(2).strip()})
        elif _OTHER_SPEAKER.match(text):
            raise ImportFormatError(f"{path}:{n}: expected a 'Consultant:' or 'User:' line, got {text[:60]!r}")
        elif sessions[-1]:
            # A turn that goes on over several lines.
            sessions[-1][-1]["text"] += "\n" + text
        else:
            raise ImportFormatError(f"{path}:{n}: expected a 'Consultant:' or 'User:' line, got {text[:60]!r}")
    if not sessions[-1]:
        sessions.pop()
    if not sessions:
        raise ImportFormatError(f"{path}: no dialogue found")
    for number, turns in enumerate(sessions, start=1):
        if not any(t["role"] == "counselor" for t in turns):
            raise ImportFormatError(f"{path}:{starts[number - 1]}: session {number} has no 'Consultant:' turn")
    return sessions


def _name_from(traits: dict, cards: list[dict]) -> str:
    if cards:
        first = re.split(r"[，,]", cards[0]["Basic Info"], maxsplit=1)[0].strip()
        if first:
            return first[:200]
    words = traits.get("background", "").split()
    return f"MusPsy client {words[0]}" if words else "MusPsy client"


def _profile_from(*, traits: dict, memories: list[dict], cards: list[dict], files: dict) -> ClientProfile:
    history = []
    for n, memory in enumerate(memories, start=1):
        entry = {"session": n, "memory": memory}
        if n <= len(cards):
            entry["card"] = cards[n - 1]
        history.append(entry)
    data = {"traits": traits, "memories": memories, "cards": cards}
    return ClientProfile(
        name=_name_from(traits, cards),
        background=traits.get("background", ""),
        personality=traits.get("personality", ""),
        assessment=traits.get("assessment", ""),
        goals=cards[0]["Counseling Goals"] if cards else memories[0]["session_goal"],
        language=Language.CHINESE if _CJK.search(traits.get("background", "")) else Language.ENGLISH,
        history=history,
        source={**SOURCE, "files": files},
        source_hash=content_hash(data),
    )


def _profile_get_or_create(profile: ClientProfile) -> tuple[ClientProfile, bool]:
    existing = ClientProfile.objects.filter(source_hash=profile.source_hash).first()
    if existing:
        return existing, False
    profile.save()
    return profile, True


def profile_import_muspsy(*, memories: Path, cards: Path | None = None) -> tuple[ClientProfile, bool]:
    """A client profile and its per-session history from MusPsy memories (and client cards). Returns (profile,
    created); the same files again give the same profile."""
    traits, parsed = parse_memories(memories)
    card_list = parse_cards(cards) if cards else []
    if card_list and len(card_list) != len(parsed):
        raise ImportFormatError(f"{cards}: {len(card_list)} client cards for {len(parsed)} sessions in {memories}")
    files = {"memories": Path(memories).name, **({"cards": Path(cards).name} if cards else {})}
    profile = _profile_from(traits=traits, memories=parsed, cards=card_list, files=files)
    with transaction.atomic():
        return _profile_get_or_create(profile)


def course_import_muspsy(*, dialogues: Path, memories: Path, cards: Path | None = None) -> CourseImportResult:
    """A whole MusPsy course: its profile, the course candidate and one session candidate per session (revision 0
    each), in one transaction. The dialogues' sessions and the memories must match one to one."""
    sessions = parse_dialogues(dialogues)
    traits, parsed = parse_memories(memories)
    card_list = parse_cards(cards) if cards else []
    if len(sessions) != len(parsed):
        raise ImportFormatError(f"{dialogues}: {len(sessions)} sessions, but {memories} has {len(parsed)} memories")
    if card_list and len(card_list) != len(parsed):
        raise ImportFormatError(f"{cards}: {len(card_list)} client cards for {len(parsed)} sessions in {memories}")
    files = {
        "dialogues": Path(dialogues).name,
        "memories": Path(memories).name,
        **({"cards": Path(cards).name} if cards else {}),
    }
    profile = _profile_from(traits=traits, memories=parsed, cards=card_list, files=files)
    bodies = [{"turns": turns, "memory": memory} for turns, memory in zip(sessions, parsed, strict=True)]
    # A course is its sessions: the same dialogues and memories, with or without the cards, are the same course.
    course_hash = content_hash({"sessions": bodies})
    language = Language.CHINESE if _CJK.search(str(sessions[0])) else Language.ENGLISH
    with transaction.atomic():
        existing = Candidate.objects.filter(kind=CandidateKind.COURSE, source_hash=course_hash).first()
        if existing:
            assert existing.profile is not None  # an imported course is saved with its profile
            return CourseImportResult(course=existing, profile=existing.profile, created=False)
        profile, _ = _profile_get_or_create(profile)
        try:
            course = candidate_build(
                kind=CandidateKind.COURSE,
                content={"profile": profile_snapshot(profile), "sessions": len(bodies), "goals": profile.goals},
                language=language,
                source={**SOURCE, "files": files},
                source_hash=course_hash,
            )
            course.profile = profile
            course.new_children = [
                session_build(
                    course,
                    n,
                    body,
                    language=language,
                    source={**SOURCE, "files": files, "session": n},
                    source_hash=content_hash({"course": course_hash, "session": n}),
                )
                for n, body in enumerate(bodies, start=1)
            ]
        except ContentError as error:
            raise ImportFormatError(f"{dialogues}: {error}") from None
        candidates_save_new(candidates=[course])
        import_record(
            kind="course", path=dialogues, format="muspsy", created=1 + len(bodies), duplicates=0, files=len(files)
        )
    return CourseImportResult(course=course, profile=profile, created=True)


__all__ = [
    "CourseImportResult",
    "course_import_muspsy",
    "parse_cards",
    "parse_dialogues",
    "parse_memories",
    "profile_import_muspsy",
]
