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
