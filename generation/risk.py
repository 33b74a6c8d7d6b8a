"""A first, automatic screen for self-harm and suicide content.

It does not judge whether a dialogue handles risk well (people do that); it makes sure no item that mentions it
reaches a release without a senior clinician having seen it. It errs on the side of flagging. Transparent rules, in
English and Simplified Chinese (docs/risk.md has examples and figures):

- a direct mention (suicide, self-harm, "end it all", 不想活了, 一了百了, ...) is a hit on its own;
- a means or method (pills, rope, jumping off, 安眠药, 烧炭, 农药, ...) is a hit when the same sentence also has
  a plan cue (ready, saved up, all of them, 攒了, 准备好了, 全部, ...) or an intent or time cue (going to, tonight,
  打算, 这周末, ...); an intent or time cue does not count in a sentence that speaks of medical use (prescribed,
  医生, 失眠), a plan cue always does;
- negation: a first-person negation that governs the mention in the same clause ("I would never hurt myself",
  "I'm not suicidal", 我从来没有想过自杀, 我不会伤害自己) is not a hit, unless the clause limits it in time or doubts
  it ("never ... before this year", 以前从来没想过, "I'm not sure I don't want to die"); a question or statement
  about someone else ("Have you thought about hurting yourself?", 你有没有想过伤害自己) is a hit, because a safety
  assessment is exactly what a senior clinician should see.

Everyday hyperbole (this exam is killing me, 累死了, 笑死我了) names no term and is not a hit; "I'll kill myself if I
fail" is, on purpose.
"""

import re
from re import _constants as sre  # type: ignore[attr-defined]  # the parse tree's opcodes, for _gate
from re import _parser  # type: ignore[attr-defined]

# A direct mention: a hit on its own.
_DIRECT_EN = [
    r"suicid\w*",
    r"\bkill(?:s|ed|ing)? (?:myself|yourself|themselves|himself|herself)\b",
    r"\bend(?:s|ed|ing)? (?:my|your|his|her|their) (?:own )?life\b",
    r"\btak(?:e|es|ing) (?:my|your) (?:own )?life\b",
    r"\bself[- ]?(?:harm|injur)\w*",
    # "I hurt myself playing football" is an accident, not self-harm.
    r"\b(?:hurt|harm|cut)(?:s|ting|ing)? (?:myself|yourself)\b(?! (?:on(?! purpose)|while|when|playing|during|at|"
    r"lifting|shaving|by accident|accidentally)\b)",
    r"\bhang(?:ing)? (?:myself|yourself)\b",
    r"\boverdos\w*",
    # "I don't want to live with my parents" is not ideation; "I don't want to live like this" is screened.
    r"\b(?:don'?t|do not|didn'?t) want to (?:live(?! (?:in|with|near|at|on|under)\b)|be alive|wake up|exist"
    r"|be here anymore)\b",
    r"\bwant(?:s|ed)? to die\b",
    r"\bbetter off (?:dead|without me)\b",
    r"\bwish(?:ed)? I (?:was|were) dead\b",
    r"\bwish(?:ed)? I (?:had never been|was never|were never|hadn't been) born\b",
    r"\b(?:hope|hoping|wish) I (?:won'?t|don'?t|never|wouldn'?t|didn'?t) wake up\b",
    r"\bsleep and never wake up\b",
    r"\bend it all\b",
    r"\bno (?:reason|point) (?:to|in) (?:live|living|going on)\b",
    r"\bnothing (?:left )?to live for\b",
    r"\bnot worth living\b",
    r"\bcan'?t go on living\b",
    r"\bdisappear (?:forever|for good|from (?:this|the) world)\b",
    r"\bnot be (?:here|around|alive) anymore\b",
    r"\bgoodbye (?:letter|note)s?\b",
]
_DIRECT_ZH = [
    r"自杀",
    r"自残",
    r"自伤",
    r"轻生",
    r"寻死",
    r"割腕",
    r"上吊",
    r"跳楼(?!价|大甩卖|甩卖|大减价)",  # 跳楼价: a clearance sale
    r"不想活(?!在|成|得)",  # 不想活成我妈那样: "I don't want to end up like my mother"
    r"活不下去",
    r"想死(?!你|您|他|她|我了)",  # 想死你了: "I missed you so much"
    r"结束(?:自己的)?生命",
    r"结束自己",
    r"(?:伤害|割伤|划伤)自己",
    r"[割划]自己",
    r"活着(?:真)?没(?:有)?意(?:思|义)",
    r"活着(?:还)?有什么意(?:思|义)",
    r"一了百了",
    r"离开这个世界",
    r"(?:死了|死掉)(?:就)?算了",
    r"不如死了",
    r"从这个世界(?:上)?消失",
    r"想(?:要)?(?:永远)?消失",
    r"永远消失",
    r"想(?:要)?结束这一切",
    r"没有我.{0,8}(?:更好|更轻松)",
    r"遗书",
    r"(?:永远|再也)不(?:要|想)?醒(?:来|过来)",
    r"吞(?:了|下)?(?:一整瓶|整瓶|一把|大量|很多)?(?:的)?(?:安眠)?药",
]

# A means or method: a hit only with a plan, intent or time cue in the same sentence.
_MEANS_EN = [
    r"\b(?:sleeping )?pills?\b",
    r"\btablets\b",
    r"\bpainkillers?\b",
    r"\bparacetamol\b",
    r"\brope\b",
    r"\bnoose\b",
    r"\bknife\b",
    r"\b(?:razor )?blades?\b",
    r"\bgun\b",
    r"\bpesticide\b",
    r"\bpoison\w*",
    r"\bbleach\b",
    r"\bcharcoal\b",
    r"\bgas\b",
    r"\bjump(?:s|ed|ing)? (?:off|from|in front of)\b",
    r"\b(?:off|from) (?:the|a|that) (?:bridge|roof|rooftop|balcony|ledge|cliff|building)\b",
    r"\btrain tracks\b",
]
_MEANS_ZH = [
    r"安眠药",
    r"药片",
    r"药丸",
    r"止痛药",
    r"绳子",
    r"绳索",
    r"刀片",
    r"刀",
    r"跳下去",
    r"跳(?:河|桥|江|海)",
    r"(?:天台|楼顶|阳台)边",
    r"卧轨",
    r"煤气",
    r"烧炭",
    r"农药",
    r"毒药",
    r"老鼠药",
    r"百草枯",
    r"敌敌畏",
]

# A plan: stockpiling, quantity, readiness, a decision. Counts even where medical use is mentioned.
_PLAN_EN = [
    r"\bready\b",
    r"\bsav(?:e|ed|ing)(?: up)?(?= (?:my|your|his|her|their|the|all|them|those)\b)",
    r"\bstockpil\w*",
    r"\bhoard\w*",
    r"\bcollect(?:ed|ing)(?= (?:my|your|his|her|their|the|them|those)\b)",
    r"\ball (?:of )?(?:them|it|my|the|those|at once)\b",
    r"\bthe (?:whole|entire) (?:bottle|box|pack|packet)\b",
    r"\benough (?:to|pills|of)\b",
    r"\bdecided\b",
    r"\bwhen (?:everyone|nobody|no one)\b",
    r"\bfor good\b",
    r"\bonce and for all\b",
]
_PLAN_ZH = [
    r"攒",
    r"囤",
    r"存了",
    r"准备好",
    r"买好了",
    r"全部",
    r"全吃",
    r"一次性",
    r"一口气",
    r"(?:一)?整瓶",
    r"决定",
    r"下定决心",
    r"等(?:他们|家人|大家|室友|爸妈)睡",
]

# An intent or time cue: counts unless the sentence speaks of medical use.
_INTENT_EN = [
    r"\bplan(?:s|ned|ning)? to\b",
    r"\bgoing to\b",
    r"\bgonna\b",
    r"\bwant(?:s|ed)? to\b",
    r"\bthink(?:ing)? (?:about|of)\b",
    r"\bthought (?:about|of)\b",
    r"\b(?:looked up|searched|googled)\b",
    r"\btonight\b",
    r"\bthis weekend\b",
    r"\btomorrow\b",
    r"\b(?:on|for|this|next) (?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b",
]
_INTENT_ZH = [
    r"打算",
    r"计划",
    r"准备",
    r"想",
    r"查过",
    r"查了",
    r"搜过",
    r"今晚",
    r"今天晚上",
    r"这周末",
    r"周末",
    r"明天",
]

_MEDICAL_EN = [
    r"\bprescri\w*",
    r"\b(?:doctor|GP|psychiatrist|pharmacist|nurse)\b",
    r"\bas directed\b",
    r"\bdose\b",
    r"\binsomnia\b",
    r"\bside effects?\b",
]
_MEDICAL_ZH = [r"医生", r"医嘱", r"处方", r"药房", r"失眠", r"剂量", r"副作用"]

# A first-person negation right before the mention, in the same clause: "I would never ", "I've never thought
# about ", "I don't have any thoughts of ", 我从来没有想过, 我不会. At most four words (or characters) between, none of
# which starts a new subject or doubt ("I'm not sure I ...", 我不知道...).
_NEGATION_EN = [
    r"\bI(?:'m|'ve|'d|'ll)?\s+"
    r"(?:(?:am|have|had|would|will|could|do|did|really|honestly|definitely|absolutely|certainly|truly|just)\s+)*"
    r"(?:never|not|no|(?:do|did|would|will|could|have|had|was|wo)n'?t)\s+"
    r"(?:(?!(?:I|sure|know|why|if|whether|that|but)\b)[\w']+\s+){0,4}$",
]
_NEGATION_ZH = [
    r"我(?:从来|从|根本|绝对|肯定|真的|也|并|都|一直|还)*(?:没有|没|不会|不|绝不|决不|从不|从没|从未|未曾)"
    r"(?:(?!知道|确定|清楚|明白)[^我但可却]){0,4}$",
]
# Words that limit a negation in time or doubt it: "I had never thought about suicide before this year", "I'm not sure
# I don't want to die" are not denials.
_NOT_A_DENIAL = [
    r"\b(?:until|till|before|used to|not sure|not certain)\b",
    r"以前",
    r"之前",
    r"直到",
    r"原来",
    r"本来",
    r"不确定",
    r"说不准",
    r"不一定",
]


Starts = tuple[set[str], set[str], bool] | None


def _starts(items) -> Starts:
    """The characters a match of the parsed pattern ``items`` can start with: ``(after a word boundary, anywhere,
    may be empty)``, or None where it cannot tell (a wildcard, a category such as ``\\w``, an anchor)."""
    bounded: set[str] = set()
    free: set[str] = set()
    items = list(items)
    for i, (op, av) in enumerate(items):
        part: Starts
        if op is sre.AT and av is sre.AT_BOUNDARY:
            # \b: whatever comes next starts a word.
            rest = _starts(items[i + 1 :])
            return None if rest is None else (bounded | rest[0] | rest[1], free, rest[2])
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            continue
        if op is sre.LITERAL:
            part = (set(), {chr(av)}, False)
        elif op is sre.IN and all(o in (sre.LITERAL, sre.RANGE) for o, _ in av):
            chars = {chr(a) for o, a in av if o is sre.LITERAL}
            chars |= {chr(c) for o, a in av if o is sre.RANGE for c in range(a[0], a[1] + 1)}
            part = (set(), chars, False)
        elif op is sre.SUBPATTERN:
            part = _starts(av[-1])
        elif op is sre.BRANCH:
            alternatives = [_starts(alternative) for alternative in av[1]]
            if any(a is None for a in alternatives):
                return None
            part = (
                set().union(*(a[0] for a in alternatives if a)),
                set().union(*(a[1] for a in alternatives if a)),
                any(a[2] for a in alternatives if a),
            )
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            inner = _starts(av[2])
            part = None if inner is None else (inner[0], inner[1], inner[2] or av[0] == 0)
        else:
            return None
        if part is None:
            return None
        bounded |= part[0]
        free |= part[1]
        if not part[2]:
            return bounded, free, False
    return bounded, free, True


def _class(chars: set[str]) -> str:
    return "".join(sorted({re.escape(c) for ch in chars for c in (ch, ch.lower(), ch.upper())}))


def _gate(pattern: str) -> str:
    """A look-ahead that lets the matcher give up at once where no alternative can start: a text position whose
    character no pattern begins with (or, for patterns that begin with ``\\b``, one that does not start a word).

    Scanning a 100-character sentence tries every one of some fifty alternatives at every position; with the gate,
    only at the few positions that could begin one. It changes nothing a pattern matches: the characters come from
    the pattern's own parse tree (``re._parser``), and where that cannot tell, there is no gate.
    """
    starts = _starts(_parser.parse(pattern, re.IGNORECASE))
    if starts is None or starts[2]:
        return ""
    bounded, free, _ = starts
    ways = ([f"\\b[{_class(bounded)}]"] if bounded else []) + ([f"[{_class(free)}]"] if free else [])
    return f"(?=(?:{'|'.join(ways)}))" if ways else ""


def _compile(patterns: list[str], *, gate: bool = True) -> re.Pattern:
    pattern = "|".join(f"(?:{p})" for p in patterns)
    return re.compile((_gate(pattern) if gate else "") + f"(?:{pattern})", re.IGNORECASE)


_DIRECT = _compile(_DIRECT_EN + _DIRECT_ZH)
_MEANS = _compile(_MEANS_EN + _MEANS_ZH)
_PLAN = _compile(_PLAN_EN + _PLAN_ZH)
_INTENT = _compile(_INTENT_EN + _INTENT_ZH)
_MEDICAL = _compile(_MEDICAL_EN + _MEDICAL_ZH)
_NEGATION = _compile(_NEGATION_EN + _NEGATION_ZH)
_NOT_A_DENIAL_RE = _compile(_NOT_A_DENIAL)
_NEAR = 80
_SENTENCE = re.compile(r"[.!?。！？;；\n]+")
_CLAUSE = re.compile(r"[,，、:：]|\b(?:but|however|although|though)\b|但是|但|可是|不过|然而|却", re.IGNORECASE)


def _denied(sentence: str, match: re.Match) -> bool:
    """Whether a first-person negation right before ``match``, in its clause, denies it (see the docstring).

    Only the ``_NEAR`` characters either side count: a negation is short, and a long text stays linear.
    """
    near = max(0, match.start() - _NEAR)
    start = max((sep.end() for sep in _CLAUSE.finditer(sentence, near, match.start())), default=near)
    if not _NEGATION.search(sentence, start, match.start()):
        return False
    limit = min(len(sentence), match.end() + _NEAR)
    end = next((sep.start() for sep in _CLAUSE.finditer(sentence, match.end(), limit)), limit)
    return not _NOT_A_DENIAL_RE.search(sentence, start, end)


def _could_hit(text: str) -> bool:
    """Whether ``find`` could find anything in ``text``: every hit is a direct mention or a means."""
    return bool(_DIRECT.search(text) or _MEANS.search(text))


def find(text: str) -> str | None:
    """What makes ``text`` a hit, as the detail names it (``'suicide'``, ``'pills' with 'ready'``); None if nothing."""
    if not _could_hit(text):
        return None  # most text: one look at the whole, no sentences
    for sentence in _SENTENCE.split(text):
        for match in _DIRECT.finditer(sentence):
            if not _denied(sentence, match):
                return repr(match.group(0))
        means = next((m for m in _MEANS.finditer(sentence) if not _denied(sentence, m)), None)
        if means:
            cue = _PLAN.search(sentence) or (None if _MEDICAL.search(sentence) else _INTENT.search(sentence))
            if cue:
                return f"{means.group(0)!r} with {cue.group(0)!r}"
    return None


def screen_dialogue(content: dict) -> list[dict]:
    """Flags for every turn that mentions self-harm or suicide: ``[{"code", "detail"}]``."""
    turns = content.get("turns", [])
    texts = [turn.get("text", "") for turn in turns]
    # Most dialogues mention nothing: one look at all their turns together, joined by a line break, answers that. A
    # turn's hit is a hit of the joined text too: a line break ends a word and a sentence, no rule's look-ahead starts
    # with one, and none reads across one, so what follows a turn changes no match in it.
    if all(isinstance(text, str) for text in texts) and not _could_hit("\n".join(texts)):
        return []
    flags = []
    for i, turn in enumerate(turns):
        hit = find(turn.get("text", ""))
        if hit:
            flags.append({"code": "self_harm", "detail": f"turn {i + 1} ({turn['role']}) mentions {hit}"})
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
        hit = find(text)
        detail = f"{where} mentions {hit}" if hit else None
        if detail and detail not in seen:
            seen.add(detail)
            flags.append({"code": "self_harm", "detail": detail})
    return flags
