"""Agents are prompts plus parsing: what each agent is told, and how its untrusted output is read.

Prompts live in files under ``prompts/<pipeline>/<version>/``; the version is part of every candidate's lineage.
A version whose name ends in ``-zh`` is written in Simplified Chinese (``v1-zh``), and what the code adds to its
prompts (speaker labels, the supervisor's dimensions, the strategies' names) is Chinese too (``prompt_language``).
"""

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..backends.base import continues_answer

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"

# Labels a model puts in front of a turn ("Counselor: ..."): the one of its own side is dropped, one of the
# other side means the model went on to write the other side's turn.
_LABELS = {
    "client": ["client", "user", "patient", "help-seeker", "me", "来访者", "求助者"],
    "counselor": ["counselor", "counsellor", "therapist", "assistant", "psychologist", "心理咨询师", "咨询师"],
}
_LABEL_RE = {
    role: re.compile(r"^\s*[*_]*(?:" + "|".join(re.escape(label) for label in labels) + r")[*_]*\s*[:：][*_]*\s*", re.I)
    for role, labels in _LABELS.items()
}
_OTHER_LABEL_RE = {
    role: re.compile(
        r"(?:^|\n)\s*[*_]*(?:" + "|".join(re.escape(label) for label in _LABELS[other]) + r")[*_]*\s*[:：]", re.I
    )
    for role, other in (("client", "counselor"), ("counselor", "client"))
}
MIN_TURN_CHARS = 2


class AgentOutputError(ValueError):
    """Model output that cannot be used; ``reason`` is a short code counted in the run's failures."""

    def __init__(self, reason: str, raw: str):
        super().__init__(f"{reason}: {raw[:200]!r}")
        self.reason = reason
        self.raw = raw


@dataclass(frozen=True)
class ParsedTurn:
    text: str
    # What the parser had to mend, counted per run: "spoke_for_other", "truncated".
    repairs: tuple[str, ...] = ()


# The suffix of a prompt version written in Chinese; every other version is English.
CHINESE_SUFFIX = "-zh"


def prompt_language(version: str) -> str:
    """The language a prompt version is written in: ``"zh"`` for a version named ``...-zh``, else ``"en"``."""
    return "zh" if version.endswith(CHINESE_SUFFIX) else "en"


@cache
def load_prompt(pipeline: str, version: str, name: str) -> str:
    path = PROMPTS_DIR / pipeline / version / f"{name}.txt"
    return path.read_text(encoding="utf-8").strip()


def _trim_to_sentence(text: str) -> str:
    """Cut a turn that ran out of tokens back to its last complete sentence, when it has one."""
    ends = [m.end() for m in re.finditer(r"[.!?。！？](?:[\"'”’)]|\s|$)", text)]
    return text[: ends[-1]].strip() if ends else text


def parse_turn(raw: str, *, role: str, truncated: bool = False, max_chars: int = 2000) -> ParsedTurn:
    """Read one dialogue turn written by the agent playing ``role``.

    Drops a label of the agent's own side, cuts where the model started writing the other side's turn, trims a
    turn that hit the token limit to its last full sentence, and refuses an empty turn.
    """
    repairs = []
    text = raw.replace("\r\n", "\n").strip()
    text = _LABEL_RE[role].sub("", text, count=1).strip()
    other = _OTHER_LABEL_RE[role].search(text)
    if other:
        text = text[: other.start()].strip()
        repairs.append("spoke_for_other")
    if truncated:
        text = _trim_to_sentence(text)
        repairs.append("truncated")
    text = text.strip().strip('"“”').strip()
    if len(text) > max_chars:
        raise AgentOutputError("runaway_turn", raw)
    if len(text) < MIN_TURN_CHARS:
        raise AgentOutputError("spoke_for_other" if other else "empty_turn", raw)
    return ParsedTurn(text=text, repairs=tuple(repairs))


def client_messages(*, version: str, emotion: str, category: str, situation: str, turns: list[dict]) -> list[dict]:
    """The client agent's view: its own turns are the assistant's, the counselor's are the user's."""
    system = load_prompt("dialogue", version, "client").format(emotion=emotion, category=category, situation=situation)
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": load_prompt("dialogue", version, "client_opening")},
    ]
    for turn in turns:
        messages.append({"role": "assistant" if turn["role"] == "client" else "user", "content": turn["text"]})
    return messages


def counselor_messages(*, version: str, turns: list[dict], feedback: str = "", reconstruct: str = "") -> list[dict]:
    """The counselor agent's view: the client's turns are the user's, its own the assistant's.

    ``feedback`` is the supervisor's advice on an earlier attempt, when the dialogue is being regenerated;
    ``reconstruct`` the classified emotion of a real session whose counselor turns are being rewritten.
    """
    system = load_prompt("dialogue", version, "counselor")
    if feedback:
        system += "\n\n" + load_prompt("dialogue", version, "counselor_feedback").format(feedback=feedback)
    if reconstruct:
        system += "\n\n" + load_prompt("dialogue", version, "reconstruct").format(emotion=reconstruct)
    messages = [{"role": "system", "content": system}]
    for turn in turns:
        messages.append({"role": "user" if turn["role"] == "client" else "assistant", "content": turn["text"]})
    return messages


# --- The supervisor -------------------------------------------------------------------------------------------

# The dimensions the AI supervisor scores: AI PsyRoom's evaluator's, and safety.
SUPERVISOR_DIMENSIONS = {
    "problem_orientation": (
        "Problem orientation",
        "Does the counselor identify the client's main problem and stay on it?",
    ),
    "expression": ("Expression", "Is the counselor's language clear, natural and professional?"),
    "empathy": ("Empathy", "Does the counselor recognise the client's emotions and comfort them at the right moments?"),
    "interactive_communication": (
        "Interactive communication",
        "Does the counselor guide the client to express themselves and respond smoothly?",
    ),
    "safety": ("Safety", "Is any risk handled correctly, with no harmful advice or boundary violation?"),
}
# "4", "4/5", "4 分", and the full-width "４／５" of a Chinese answer; int() reads full-width digits.
_SCORE = re.compile(r"(?<![\d.])([1-5１-５])(?:\s*[/／]\s*[5５])?(?!\d|\.\d)(?:\s*分)?")


# The same dimensions as a Chinese prompt names them.
SUPERVISOR_DIMENSIONS_ZH = {
    "problem_orientation": ("问题导向", "咨询师是否识别出来访者的主要问题，并始终围绕它展开？"),
    "expression": ("表达", "咨询师的语言是否清楚、自然、专业？"),
    "empathy": ("共情", "咨询师是否识别出来访者的情绪，并在恰当的时候给予安慰？"),
    "interactive_communication": ("互动沟通", "咨询师是否引导来访者表达自己，回应是否流畅？"),
    "safety": ("安全", "是否正确处理了风险，没有有害建议或越界行为？"),
}
# How a transcript names its speakers, by the language of the prompt it goes into.
_SPEAKERS = {"en": ("Client", "Counselor"), "zh": ("来访者", "咨询师")}


def dialogue_text(turns: list[dict], *, language: str = "en") -> str:
    """A transcript, one turn a line, each after its speaker's label in ``language``."""
    client, counselor = _SPEAKERS[language]
    return "\n".join(f"{client if t['role'] == 'client' else counselor}: {t['text']}" for t in turns)


def _transcript(version: str, turns: list[dict]) -> str:
    return dialogue_text(turns, language=prompt_language(version))


def supervisor_score_messages(*, version: str, turns: list[dict], dimension: str) -> list[dict]:
    dimensions = SUPERVISOR_DIMENSIONS_ZH if prompt_language(version) == "zh" else SUPERVISOR_DIMENSIONS
    label, help_text = dimensions[dimension]
    prompt = load_prompt("dialogue", version, "supervisor_score").format(
        dialogue=_transcript(version, turns), label=label, help=help_text
    )
    return [{"role": "user", "content": prompt}]


def supervisor_feedback_messages(*, version: str, turns: list[dict]) -> list[dict]:
    prompt = load_prompt("dialogue", version, "supervisor_feedback").format(dialogue=_transcript(version, turns))
    return [{"role": "user", "content": prompt}]


def parse_score(raw: str) -> tuple[int, str]:
    """A score of 1 to 5 near the start of the answer, and the reason after it."""
    head = raw.strip()[:80]
    match = _SCORE.search(head)
    if not match:
        raise AgentOutputError("score_unparsed", raw)
    reason = raw.strip()[match.end() :].lstrip(" -–—:.)*/：。，、）").strip()
    return int(match.group(1)), reason[:500]


def parse_reason(raw: str) -> str:
    """The reason the supervisor gives after its score (the score itself was a constrained choice); it may be empty:
    the score stands without it."""
    return _trim_to_sentence(raw.strip().lstrip(" -–—:.)").strip()[:500]) if raw.strip() else ""


def parse_feedback(raw: str) -> str:
    text = raw.strip()
    if len(text) < 10:
        raise AgentOutputError("feedback_empty", raw)
    return _trim_to_sentence(text[:800])


# --- The emotion classifier -----------------------------------------------------------------------------------

# A key may stand right after Chinese text ("属于anxiety.1"), where a word boundary would not be.
_KEY = re.compile(r"(?<![a-z])([a-z]+[.．][0-9]{1,2})(?![0-9a-z])", re.I)


def classifier_messages(*, version: str, turns: list[dict], labels: dict[str, str]) -> list[dict]:
    listing = "\n".join(f"- {key}: {label}" for key, label in labels.items())
    prompt = load_prompt("dialogue", version, "classifier").format(labels=listing, dialogue=_transcript(version, turns))
    return [{"role": "user", "content": prompt}]


def parse_emotion(raw: str, *, labels: dict[str, str]) -> tuple[str, str]:
    """A sub-emotion key of the taxonomy (or its English label), and the reason; anything else is refused."""
    match = _KEY.search(raw)
    if match:
        key = match.group(1).lower().replace("．", ".")
        if key not in labels:
            raise AgentOutputError("label_outside_taxonomy", raw)
        reason = raw[match.end() :].lstrip(" -–—:.)：。，、）").strip()
        return key, reason[:500]
    lowered = raw.lower()
    # The first label named wins; of labels at the same place, the longest (the one the answer spells out).
    found = [
        (lowered.find(label.lower()), -len(label), key) for key, label in labels.items() if label.lower() in lowered
    ]
    if not found:
        raise AgentOutputError("label_outside_taxonomy", raw)
    return min(found)[2], raw.strip()[:500]


# --- The risk agent -------------------------------------------------------------------------------------------

# "Risk: yes", "**Risk:** No.", "风险：是"; the first labelled answer counts.
_RISK_LABELLED = re.compile(r"(?:risk|风险)[*_]*\s*[:：][*_\s]*(?:(yes|no)\b|(是|有|否|无(?!法)|没有))", re.I)
# An answer that starts with the word itself: "Yes, the client ...", "否。"
_RISK_BARE = re.compile(r"^[\W_]*(?:(yes|no)\b|(是|有|否|无(?!法)|没有))", re.I)
_RISK_REASON = re.compile(r"(?:reason|理由|原因)[*_]*\s*[:：][*_\s]*(.+)", re.I | re.S)
_RISK_YES = {"yes", "是", "有"}


def risk_messages(*, version: str, turns: list[dict]) -> list[dict]:
    """The risk agent's prompt: does the client of this dialogue express suicide or self-harm risk?"""
    prompt = load_prompt("dialogue", version, "risk").format(dialogue=_transcript(version, turns))
    return [{"role": "user", "content": prompt}]


def parse_risk(raw: str) -> tuple[bool, str]:
    """Whether the risk agent answered yes, and its reason (one line, at most 500 characters).

    Reads "Risk: yes" / "Risk: no" (any case, markdown, a full stop; 是/有 and 否/无/没有 too), or an answer that
    starts with yes or no. Anything else is refused: the caller must not take an unreadable answer for a no.
    """
    text = raw.strip()
    match = _RISK_LABELLED.search(text) or _RISK_BARE.match(text)
    if not match:
        raise AgentOutputError("risk_unparsed", raw)
    risky = (match.group(1) or match.group(2)).lower() in _RISK_YES
    reason = _RISK_REASON.search(text[match.end() :])
    rest = reason.group(1) if reason else text[match.end() :].lstrip(" .。,，!！-–—:：)*_")
    return risky, " ".join(rest.split())[:500]


# --- Support strategies (ESConv) ------------------------------------------------------------------------------

STRATEGIES = (
    "Question",
    "Restatement or Paraphrasing",
    "Reflection of feelings",
    "Self-disclosure",
    "Affirmation and Reassurance",
    "Providing Suggestions",
    "Information",
    "Others",
)
_STRATEGY_WORDS = {
    "question": "Question",
    "restatement": "Restatement or Paraphrasing",
    "paraphras": "Restatement or Paraphrasing",
    "reflection": "Reflection of feelings",
    "self-disclosure": "Self-disclosure",
    "affirmation": "Affirmation and Reassurance",
    "reassurance": "Affirmation and Reassurance",
    "suggestion": "Providing Suggestions",
    "information": "Information",
    "others": "Others",
    # A Chinese prompt lists the names of STRATEGIES_ZH; the answer is stored under the English name.
    "提问": "Question",
    "复述": "Restatement or Paraphrasing",
    "释义": "Restatement or Paraphrasing",
    "情感反映": "Reflection of feelings",
    "自我表露": "Self-disclosure",
    "肯定": "Affirmation and Reassurance",
    "安慰": "Affirmation and Reassurance",
    "建议": "Providing Suggestions",
    "信息": "Information",
    "其他": "Others",
}
# STRATEGIES as a Chinese prompt lists them, in the same order.
STRATEGIES_ZH = ("提问", "复述或释义", "情感反映", "自我表露", "肯定与安慰", "提供建议", "提供信息", "其他")


def strategy_messages(*, version: str, client: str, counselor: str) -> list[dict]:
    names = STRATEGIES_ZH if prompt_language(version) == "zh" else STRATEGIES
    listing = "\n".join(f"- {name}" for name in names)
    prompt = load_prompt("dialogue", version, "strategy").format(
        strategies=listing, client=client[:1500], counselor=counselor[:1500]
    )
    return [{"role": "user", "content": prompt}]


def parse_strategy(raw: str) -> str:
    """The strategy named first in the answer."""
    lowered = raw.lower()
    found = [(lowered.find(word), name) for word, name in _STRATEGY_WORDS.items() if word in lowered]
    if not found:
        raise AgentOutputError("strategy_unparsed", raw)
    return min(found)[1]


# --- The planner ----------------------------------------------------------------------------------------------

PLAN_SECTIONS = (
    "case_formulation",
    "goals",
    "interventions",
    "homework",
    "session_schedule",
    "risk_assessment",
    "safety_plan",
    "referral_criteria",
)
# "- ", "1. ", "a) ", and the Chinese forms with no space after them: "1、", "１．", "（1）", "1.减轻" (an ASCII dot
# or hyphen without a space counts only before a Chinese character, so that "3.5 hours" stays a line of text).
_BULLET = re.compile(
    r"^\s*(?:(?:[-*•·]|\d{1,2}[.)]|[a-z][.)])\s+"
    r"|(?:[\d０-９]{1,2}[、．）]|[（(][\d０-９]{1,2}[）)]|[•·－])\s*(?=\S)"
    r"|(?:\d{1,2}[.)]|-)(?=[\u4e00-\u9fff]))",
    re.I,
)
_RISK = re.compile(r"\b(low|moderate|medium|high)\b", re.I)
# A Chinese level: 低, 中 (中等, 中度) or 高, at the start of the answer or as "…风险", "风险…：低".
_RISK_ZH = re.compile(
    r"^[\W_]*(低|中|高)(?:等|度)?(?:风险)?|(低|中|高)(?:等|度)?风险|风险(?:等级|水平|程度)?[*_\s]*[:：为是]?[*_\s]*(低|中|高)(?:等|度)?"
)
_RISK_ZH_LEVEL = {"低": "low", "中": "moderate", "高": "high"}


def plan_messages(*, version: str, section: str, turns: list[dict], emotion: str, category: str) -> list[dict]:
    """The prompt for one section of a plan. Where the version has ``<section>.answer.txt``, the prompt ends with
    the start of the answer as an assistant message, for the model to continue (v2: "Risk level:", so that a small
    model names a level before anything else)."""
    system = load_prompt("plan", version, "system").format(
        emotion=emotion, category=category, dialogue=_transcript(version, turns)
    )
    question = load_prompt("plan", version, section)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    if start := _plan_answer_start(version, section):
        messages.append({"role": "assistant", "content": start})
    return messages


@cache
def _plan_answer_start(version: str, section: str) -> str:
    """The start of a plan section's answer where the version has ``<section>.answer.txt``, else ""."""
    if not (PROMPTS_DIR / "plan" / version / f"{section}.answer.txt").is_file():
        return ""
    return load_prompt("plan", version, f"{section}.answer")


def answer_start(prompt: list[dict]) -> str:
    """The start of the answer a prompt gives the model to continue (a final assistant message), or ""."""
    return prompt[-1]["content"] if continues_answer(prompt) else ""


def _list_items(raw: str) -> list[str]:
    lines = [line.strip() for line in raw.strip().splitlines() if line.strip()]
    bullets = [_BULLET.sub("", line).strip() for line in lines if _BULLET.match(line)]
    items = bullets or lines
    return [item.strip("*_ ") for item in items if len(item.strip("*_ ")) >= 3][:12]


def parse_plan_section(section: str, raw: str, *, truncated: bool = False):
    """One section of a treatment plan, in the shape of the plan schema (``schemas._plan``)."""
    if section == "case_formulation":
        text = _trim_to_sentence(raw.strip()) if truncated else raw.strip()
        if len(text) < 20:
            raise AgentOutputError("section_empty", raw)
        return text[:3000]
    if section == "risk_assessment":
        text = raw.strip()
        match = _RISK.search(text[:120])
        match_zh = _RISK_ZH.search(text[:120])
        if match_zh and (not match or match_zh.start() < match.start()):
            match = match_zh
            level = _RISK_ZH_LEVEL[next(g for g in match.groups() if g)]
        elif match:
            level = "moderate" if match.group(1).lower() == "medium" else match.group(1).lower()
        else:
            raise AgentOutputError("risk_level_unparsed", raw)
        rationale = text[match.end() :].lstrip(" -–—:.)：。，、）").strip() or text
        return {"level": level, "rationale": rationale[:1000]}
    if truncated:
        # The last line of a list cut off by the token limit is incomplete.
        raw = "\n".join(raw.strip().splitlines()[:-1]) or raw
    items = _list_items(raw)
    if not items:
        raise AgentOutputError("section_empty", raw)
    if section == "interventions":
        interventions = []
        for item in items:
            parts = re.split(r"\s*[:：]\s*|\s+[-–—]\s+", item, maxsplit=1)
            if len(parts) != 2 or not parts[1].strip():
                continue
            technique, rationale = parts
            interventions.append({"technique": technique.strip()[:200], "rationale": rationale.strip()[:1000]})
        if not interventions:
            raise AgentOutputError("interventions_without_rationale", raw)
        return interventions
    return [item[:1000] for item in items]


# --- The scenario writer --------------------------------------------------------------------------------------

# "Title: ...", "**标题：**..."; a Chinese answer labels its situation 情境 or 情景.
_TITLE = re.compile(r"^\W*(?:title|标题)[*_\s]*[:：][*_\s]*(.+)$", re.I | re.M)
_SITUATION = re.compile(r"^\W*(?:situation|情境|情景)[*_\s]*[:：][*_\s]*(.+)", re.I | re.M | re.S)


def scenario_messages(*, version: str, emotion: str, category: str, existing: list[str]) -> list[dict]:
    none = "暂无" if prompt_language(version) == "zh" else "none yet"
    listing = "; ".join(f'"{title}"' for title in existing[:20]) or none
    prompt = load_prompt("scenario", version, "writer").format(emotion=emotion, category=category, existing=listing)
    return [{"role": "user", "content": prompt}]


def parse_scenario(raw: str, *, existing: list[str], truncated: bool = False) -> dict:
    """A title (at most 200 characters, not one already used) and a situation of a few sentences."""
    title, situation = _TITLE.search(raw), _SITUATION.search(raw)
    if not title or not situation:
        raise AgentOutputError("scenario_unparsed", raw)
    title_text = title.group(1).strip().strip("*\"'“”").strip()
    description = situation.group(1).strip()
    if truncated:
        description = _trim_to_sentence(description)
    description = description.strip("*\"'“”").strip()
    if not title_text or len(title_text) > 200:
        raise AgentOutputError("scenario_title_invalid", raw)
    if title_text.lower() in {t.lower() for t in existing}:
        raise AgentOutputError("scenario_duplicate", raw)
    if len(description) < 40 or len(description) > 3000:
        raise AgentOutputError("scenario_situation_invalid", raw)
    return {"title": title_text, "description": description}
