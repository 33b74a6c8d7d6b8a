import pytest

from generation.agents.psyroom import AgentOutputError, client_messages, counselor_messages, parse_turn


@pytest.mark.parametrize(
    ("raw", "role", "expected", "repairs"),
    [
        ("  I feel tense all the time.  ", "client", "I feel tense all the time.", ()),
        ("Client: I feel tense.", "client", "I feel tense.", ()),
        ("**Counselor:** How long has this been going on?", "counselor", "How long has this been going on?", ()),
        ("来访者：我最近很焦虑。", "client", "我最近很焦虑。", ()),
        ("I feel tense.\nCounselor: Tell me more.", "client", "I feel tense.", ("spoke_for_other",)),
        ("How are you?\n\nClient: Fine, thanks.", "counselor", "How are you?", ("spoke_for_other",)),
        ('"I can\'t sleep."', "client", "I can't sleep.", ()),
    ],
)
def test_parse_turn_cleans_what_it_can(raw, role, expected, repairs):
    parsed = parse_turn(raw, role=role)
    assert parsed.text == expected
    assert parsed.repairs == repairs


def test_a_truncated_turn_is_cut_back_to_its_last_sentence():
    parsed = parse_turn("I feel tense. I can't sleep at night and I keep thin", role="client", truncated=True)
    assert parsed.text == "I feel tense."
    assert parsed.repairs == ("truncated",)


@pytest.mark.parametrize(
    ("raw", "role", "reason"),
    [
        ("", "client", "empty_turn"),
        ("   \n  ", "counselor", "empty_turn"),
        ("Client:", "client", "empty_turn"),
        ("Counselor: What brings you here?", "client", "spoke_for_other"),
        ("Client: I am sad.", "counselor", "spoke_for_other"),
        ("word " * 1000, "counselor", "runaway_turn"),
    ],
)
def test_parse_turn_refuses_unusable_output_and_keeps_the_raw_text(raw, role, reason):
    with pytest.raises(AgentOutputError) as caught:
        parse_turn(raw, role=role)
    assert caught.value.reason == reason
    assert caught.value.raw == raw


def test_each_agent_sees_its_own_turns_as_the_assistant():
    turns = [{"role": "client", "text": "I worry."}, {"role": "counselor", "text": "Tell me more."}]
    client = client_messages(
        version="v1", emotion="Self-imposed pressure", category="Anxiety", situation="", turns=turns
    )
    counselor = counselor_messages(version="v1", turns=turns)
    assert "Self-imposed pressure" in client[0]["content"]
    assert [m["role"] for m in client] == ["system", "user", "assistant", "user"]
    assert [m["role"] for m in counselor] == ["system", "user", "assistant"]
