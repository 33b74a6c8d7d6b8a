"""A first, automatic screen for self-harm and suicide content.

It does not judge whether a dialogue handles risk well (people do that); it makes sure no item that mentions it
reaches a release without a senior clinician having seen it. It errs on the side of flagging.
"""

import re

_TERMS_EN = [
    r"suicid\w*",
    r"kill(?:ing)? myself",
    r"end(?:ing)? my life",
    r"take my (?:own )?life",
    r"self[- ]harm\w*",
    r"hurt(?:ing)? myself",
    r"cut(?:ting)? myself",
    r"overdos\w*",
    r"(?:don'?t|do not) want to (?:live|be alive|wake up)",
    r"want(?:ed)? to die",
    r"better off dead",
]
_TERMS_ZH = ["自杀", "自残", "自伤", "轻生", "不想活", "想死", "割腕", "结束生命", "结束自己", "伤害自己", "活着没意思"]

_PATTERN = re.compile("|".join(_TERMS_EN + [re.escape(t) for t in _TERMS_ZH]), re.IGNORECASE)


def screen_dialogue(content: dict) -> list[dict]:
    """Flags for every turn that mentions self-harm or suicide: ``[{"code", "detail"}]``."""
    flags = []
    for i, turn in enumerate(content.get("turns", [])):
        match = _PATTERN.search(turn.get("text", ""))
        if match:
            flags.append({"code": "self_harm", "detail": f"turn {i + 1} ({turn['role']}) mentions {match.group(0)!r}"})
    return flags


def _texts(value, where: str):
    """Every piece of free text in a candidate's content, with a name for where it is."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in ("raw", "error", "model"):
                yield from _texts(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _texts(item, f"{where}[{i}]")


def screen(kind: str, content: dict) -> list[dict]:
    """Flags for every piece of text of any kind of candidate: ``[{"code", "detail"}]``, details deterministic."""
    if kind in ("dialogue", "session") and isinstance(content, dict):
        flags = screen_dialogue(content)
        rest = {k: v for k, v in content.items() if k != "turns"}
    else:
        flags, rest = [], content
    seen = {f["detail"] for f in flags}
    for where, text in _texts(rest, ""):
        match = _PATTERN.search(text)
        detail = f"{where} mentions {match.group(0)!r}" if match else None
        if detail and detail not in seen:
            seen.add(detail)
            flags.append({"code": "self_harm", "detail": detail})
    return flags
