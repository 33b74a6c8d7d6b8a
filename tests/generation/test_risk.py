"""The self-harm screen: the sentence table, and where a hit is named in each kind of content."""

import pytest

from generation.risk import find, screen, screen_dialogue
from tests.generation.risk_sentences import KNOWN_ERRORS, SENTENCES


@pytest.mark.parametrize(("sentence_id", "text", "risky"), SENTENCES, ids=[s[0] for s in SENTENCES])
def test_sentence(sentence_id, text, risky):
    """Each sentence gets its expected outcome; a known error is asserted as the error it is."""
    expected = risky != (sentence_id in KNOWN_ERRORS)
    assert bool(find(text)) is expected, find(text)


def test_the_table_is_large_balanced_and_its_known_errors_exist():
    ids = [s[0] for s in SENTENCES]
    assert len(ids) == len(set(ids)) >= 60
    english = sum(i.startswith("en-") for i in ids)
    assert english + sum(i.startswith("zh-") for i in ids) == len(ids)
    assert 0.4 < english / len(ids) < 0.6
    assert 0.3 < sum(s[2] for s in SENTENCES) / len(ids) < 0.7
    assert set(KNOWN_ERRORS) <= set(ids)


def test_a_hit_names_what_matched():
    assert find("I have thought about suicide.") == "'suicide'"
    assert find("I want it over, I have the pills ready.") == "'pills' with 'ready'"
    assert find("我攒了很多安眠药，打算这周末全部吃掉。") == "'安眠药' with '攒'"
    assert find("") is None


def test_dialogue_turns_are_named_by_number_and_role():
    content = {
        "turns": [
            {"role": "client", "text": "I have been feeling tense before exams."},
            {"role": "counselor", "text": "That sounds hard. Have you had any thoughts of hurting yourself?"},
            {"role": "client", "text": "No, I would never hurt myself."},
            {"role": "client", "text": "But I have the pills ready."},
        ]
    }
    assert screen_dialogue(content) == [
        {"code": "self_harm", "detail": "turn 2 (counselor) mentions 'hurting yourself'"},
        {"code": "self_harm", "detail": "turn 4 (client) mentions 'pills' with 'ready'"},
    ]
    assert screen("dialogue", content) == screen_dialogue(content)


def test_a_session_names_its_turns_and_its_memory():
    content = {
        "turns": [
            {"role": "counselor", "text": "你这周过得怎么样？"},
            {"role": "client", "text": "还好，就是累死了。"},
        ],
        "memory": {
            "emotion_cognitive": "来访者感到疲惫。",
            "observations": "语速慢。",
            "assignments": "每天记录睡眠。",
            "session_goal": "建立作息。",
            "summary": "来访者提到上周曾想过自杀，需要安全评估。",
        },
    }
    assert screen("session", content) == [{"code": "self_harm", "detail": "memory.summary mentions '自杀'"}]


def test_a_plan_names_the_nested_field():
    content = {
        "case_formulation": "Exam anxiety with low mood.",
        "goals": ["Sleep seven hours a night."],
        "interventions": [
            {"technique": "Cognitive restructuring", "rationale": "Catastrophic thoughts about failing."},
            {"technique": "Safety planning", "rationale": "She said there is no reason to live after a failed exam."},
        ],
        "homework": ["Thought record."],
        "session_schedule": ["Weekly for eight weeks."],
        "safety_plan": ["Give the sleeping pills to her sister to keep."],
        "referral_criteria": ["Any plan or means: refer to psychiatry the same day."],
        "risk_assessment": {"level": "moderate", "rationale": "Passive ideation; she has saved up her tablets."},
    }
    assert [f["detail"] for f in screen("plan", content)] == [
        "interventions[1].rationale mentions 'no reason to live'",
        "risk_assessment.rationale mentions 'tablets' with 'saved up'",
    ]


def test_a_question_names_its_option_and_its_answers_rationale_but_not_the_raw_output():
    content = {
        "question_type": "single",
        "question": "来访者说“我不想活了”。咨询师首先应该做什么？",
        "options": {"A": "转移话题", "B": "评估自杀风险", "C": "布置作业"},
        "answer": "B",
        "answers": [
            {"model": "m1", "raw": "I think about killing myself", "correct": True, "rationale": "Ask about a plan."},
            {"model": "m2", "raw": "B", "correct": True, "rationale": "Direct questions about suicide are safe."},
        ],
    }
    assert [f["detail"] for f in screen("question", content)] == [
        "question mentions '不想活'",
        "options.B mentions '自杀'",
        "answers[1].rationale mentions 'suicide'",
    ]


def test_a_course_names_its_profile_and_notes():
    content = {
        "profile": {"name": "Li", "history": "Self-harm at sixteen, none since."},
        "sessions": 6,
        "goals": "Manage exam stress.",
        "notes": "I would never hurt myself, she says; ask again each session.",
    }
    assert screen("course", content) == [{"code": "self_harm", "detail": "profile.history mentions 'Self-harm'"}]


def test_ordinary_content_has_no_flag_and_each_place_is_named_the_same_way_every_time():
    assert screen("scenario", {"title": "Exam week", "description": "A student is tense before exams."}) == []
    content = {"goals": ["I want to end it all.", "I want to end it all."], "notes": "I want to end it all."}
    details = [f["detail"] for f in screen("course", content)]
    assert details == [
        "goals[0] mentions 'end it all'",
        "goals[1] mentions 'end it all'",
        "notes mentions 'end it all'",
    ]
    assert screen("course", content) == screen("course", content)


RULES = {
    "_DIRECT": ["_DIRECT_EN", "_DIRECT_ZH"],
    "_MEANS": ["_MEANS_EN", "_MEANS_ZH"],
    "_PLAN": ["_PLAN_EN", "_PLAN_ZH"],
    "_INTENT": ["_INTENT_EN", "_INTENT_ZH"],
    "_MEDICAL": ["_MEDICAL_EN", "_MEDICAL_ZH"],
    "_NEGATION": ["_NEGATION_EN", "_NEGATION_ZH"],
    "_NOT_A_DENIAL_RE": ["_NOT_A_DENIAL"],
}


@pytest.mark.parametrize("name", RULES)
def test_every_rule_has_a_gate_and_the_gate_changes_no_match(name):
    """The look-ahead gate only lets the matcher give up early: on every sentence of the table, and on texts made to
    tempt it (capitals, a boundary inside a word, a Kelvin sign that folds to k), the gated rule finds exactly the
    matches the plain alternation finds."""
    from generation import risk

    rule = getattr(risk, name)
    plain = risk._compile([p for part in RULES[name] for p in getattr(risk, part)], gate=False)
    assert rule.pattern.startswith("(?=(?:") and rule.pattern.endswith(plain.pattern), "a rule lost its gate"
    texts = [text for _, text, _ in SENTENCES] + [
        "SUICIDE. Pills READY tonight, I'M NOT SURE I don't want to die",
        "unsuicidal xkill myself; self-harmful; \u212aill myself; 我从来没有想过自杀，可是今晚想吃安眠药",
        "the doctor prescribed tablets, I have enough of them until Monday; 医生开了安眠药，我攒了一整瓶",
    ]
    for text in texts:
        assert [m.span() for m in rule.finditer(text)] == [m.span() for m in plain.finditer(text)], text


def _per_turn(content: dict) -> list[dict]:
    """What the screen found before it looked at a dialogue's turns together: ``find`` on each turn alone."""
    return [
        {"code": "self_harm", "detail": f"turn {i + 1} ({turn['role']}) mentions {hit}"}
        for i, turn in enumerate(content["turns"])
        if (hit := find(turn["text"]))
    ]


def test_a_dialogue_looked_at_whole_first_is_flagged_exactly_as_turn_by_turn():
    """The whole-dialogue look only skips dialogues with no hit: every sentence of the table as a turn, between and
    after others (ordinary ones, and ones that end or begin where a rule's look-ahead would read on: 跳楼 before 价,
    "hurt myself" before " on", 想死 before 你), gets the flags that turn-by-turn screening gives."""
    neighbours = ["价格太高了", " on purpose", "你了", "I feel tense.", "", "在", " while playing"]
    for _, text, _ in SENTENCES:
        for other in neighbours:
            for turns in ([text, other], [other, text], [other, text, other]):
                content = {"turns": [{"role": ("client", "counselor")[i % 2], "text": t} for i, t in enumerate(turns)]}
                assert screen_dialogue(content) == _per_turn(content), turns
    edge = {"turns": [{"role": "client", "text": "我想跳楼"}, {"role": "counselor", "text": "价"}]}
    assert screen_dialogue(edge) == _per_turn(edge) != []
