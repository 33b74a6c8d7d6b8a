"""The model-based risk agent, with a scripted model: its parser, and the flags its answers open on a dialogue run."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from generation import selectors
from generation.agents.psyroom import AgentOutputError, parse_risk, risk_messages
from generation.models import Candidate
from generation.pipelines.dialogue import RISK_UNREAD_DETAIL, risk_flags
from generation.risk import screen
from generation.runs.sampling import risk_agent_default
from generation.services import runs as run_services
from generation.services.candidates import candidate_set_status
from generation.services.modelspecs import modelspec_get_default
from generation.services.runs import run_create, run_execute
from tests import factories

from .scripted import ScriptedBackend, default_reply, speaker

pytestmark = pytest.mark.django_db

# Risk without any term the rules know: only a reader of the whole sentence sees it.
UNSEEN = "I don't see a way forward anymore and I've been giving my things away."
YES = f'Risk: yes\nReason: The client says "{UNSEEN}"'


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Risk: yes\nReason: She is giving her things away.", (True, "She is giving her things away.")),
        ("Risk: no\nReason: The client only worries about exams.", (False, "The client only worries about exams.")),
        ("risk: Yes.", (True, "")),
        ("RISK: NO", (False, "")),
        ("**Risk:** No\n**Reason:** nothing of the kind.", (False, "nothing of the kind.")),
        ("Here is my answer.\nRisk: yes\nReason: she says goodbye.", (True, "she says goodbye.")),
        ("Yes, the client says goodbye to everyone.", (True, "the client says goodbye to everyone.")),
        ("No. The client talks about exams.", (False, "The client talks about exams.")),
        ("Risk: yes\nReason:  she  says\n  goodbye.", (True, "she says goodbye.")),
        ("风险：是\n理由：来访者说“我把东西都送人了”。", (True, "来访者说“我把东西都送人了”。")),
        ("Risk：否", (False, "")),
        ("是", (True, "")),
        ("没有。来访者只谈到考试。", (False, "来访者只谈到考试。")),
    ],
)
def test_parse_risk_reads_yes_and_no_in_their_variants(raw, expected):
    assert parse_risk(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "I cannot tell.",
        "Not sure.",
        "Nope",
        "yesterday she cried",
        "Risk: unclear",
        "Risk: none",
        "无法判断",
    ],
)
def test_parse_risk_refuses_an_answer_that_is_neither_yes_nor_no(raw):
    with pytest.raises(AgentOutputError) as caught:
        parse_risk(raw)
    assert caught.value.reason == "risk_unparsed" and caught.value.raw == raw


def test_the_prompt_holds_the_dialogue_and_asks_for_the_fixed_format():
    turns = [{"role": "client", "text": "我把东西都送人了。"}, {"role": "counselor", "text": "能多说一些吗？"}]
    [message] = risk_messages(version="v1", turns=turns)
    assert message["role"] == "user"
    assert "Client: 我把东西都送人了。\nCounselor: 能多说一些吗？" in message["content"]
    assert "Chinese" in message["content"] and "Risk: yes" in message["content"] and "Reason:" in message["content"]


def test_risk_flags_are_deterministic_and_short():
    assert risk_flags(None) == []
    assert risk_flags({"answer": "no", "reason": "nothing", "raw": "Risk: no"}) == []
    long = {"answer": "yes", "reason": "x" * 1000, "raw": "..."}
    assert risk_flags(long) == risk_flags(dict(long))
    [flag] = risk_flags(long)
    assert flag["code"] == "self_harm" and flag["detail"].startswith("risk agent: x") and len(flag["detail"]) == 300
    assert risk_flags({"answer": "yes", "reason": "", "raw": "Yes"}) == [
        {"code": "self_harm", "detail": "risk agent: yes, without a reason"}
    ]
    assert risk_flags({"answer": None, "error": "risk_unparsed", "raw": "?"}) == [
        {"code": "self_harm", "detail": RISK_UNREAD_DETAIL}
    ]


@pytest.fixture
def make_run(taxonomy, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(run_services, "run_queue", lambda run_id: None)

    def make(**kwargs):
        kwargs.setdefault("kind", "dialogue")
        kwargs.setdefault("sub_emotion", selectors.sub_emotion_get(key="anxiety.1"))
        kwargs.setdefault("count", 1)
        kwargs.setdefault("turns", 2)
        # The bundled model does not ask its risk agent unless told (risk_agent_default): these runs tell it.
        kwargs["parameters"] = {"risk_agent": True, **kwargs.get("parameters", {})}
        with django_capture_on_commit_callbacks(execute=True):
            return run_create(**kwargs)

    return make


def _risk_prompts(backend) -> list:
    return [prompt for call in backend.calls for prompt in call if speaker(prompt) == "risk"]


def test_a_yes_on_risk_the_rules_miss_opens_one_agent_flag_and_blocks_approval(make_run):
    def reply(prompt, call):
        agent = speaker(prompt)
        if agent == "client":
            return UNSEEN
        if agent == "risk" and UNSEEN in prompt[0]["content"]:
            return YES
        return default_reply(prompt, call)

    run = make_run()
    backend = ScriptedBackend(reply)
    run_execute(run_id=run.pk, backend=backend)
    run.refresh_from_db()
    assert (run.status, run.done) == ("succeeded", 1)
    candidate = Candidate.objects.get(run=run)
    assert candidate.content["turns"][0]["text"] == UNSEEN
    assert screen("dialogue", candidate.content) == []  # the rules alone would let it through

    flag = candidate.flags.get()
    assert (flag.code, flag.source, flag.revision.number, flag.is_open) == ("self_harm", "agent", 0, True)
    assert flag.detail == f'risk agent: The client says "{UNSEEN}"'
    assert candidate.has_open_risk
    with pytest.raises(ValidationError, match="senior clinician"):
        candidate_set_status(candidate=candidate, status=Candidate.Status.APPROVED, revision=candidate.revisions.get())
    candidate.refresh_from_db()
    assert candidate.status == Candidate.Status.GENERATED
    # What the agent said is kept for the reviewers.
    assert candidate.ai_review["risk_agent"] == {"answer": "yes", "reason": f'The client says "{UNSEEN}"', "raw": YES}
    assert run.stats["risk_agent_yes"] == 1
    # One batched call of its own, counted with the others.
    assert len(_risk_prompts(backend)) == 1
    assert run.prompt_tokens == 10 * sum(len(call) for call in backend.calls)


def test_a_no_with_no_rule_hit_opens_no_flag(make_run):
    run = make_run(count=2, turns=4)
    backend = ScriptedBackend()
    run_execute(run_id=run.pk, backend=backend)
    candidates = list(Candidate.objects.filter(run=run))
    assert len(candidates) == 2
    for candidate in candidates:
        assert not candidate.flags.exists() and not candidate.has_open_risk
        assert candidate.ai_review["risk_agent"]["answer"] == "no"
        assert candidate.ai_review["risk_agent"]["reason"].startswith("The client worries about her exams")
    # Both dialogues of the chunk in one call, each seeing its four turns.
    risk_calls = [call for call in backend.calls if any(speaker(p) == "risk" for p in call)]
    assert [len(call) for call in risk_calls] == [2]
    assert all(p[0]["content"].count("Client: ") == 2 for p in risk_calls[0])


def test_an_unreadable_answer_is_retried_then_opens_a_flag(make_run):
    def reply(prompt, call):
        return "I am not able to judge this." if speaker(prompt) == "risk" else default_reply(prompt, call)

    run = make_run()
    backend = ScriptedBackend(reply)
    run_execute(run_id=run.pk, backend=backend)
    run.refresh_from_db()
    candidate = Candidate.objects.get(run=run)
    assert candidate.ai_review["risk_agent"] == {
        "answer": None,
        "error": "risk_unparsed",
        "raw": "I am not able to judge this.",
    }
    flag = candidate.flags.get()
    assert (flag.source, flag.detail, flag.is_open) == ("agent", RISK_UNREAD_DETAIL, True)
    assert candidate.has_open_risk
    assert len(_risk_prompts(backend)) == 2  # asked, then asked once more
    assert run.stats["risk_unparsed"] == 2 and run.stats["risk_agent_unread"] == 1


def test_risk_agent_false_skips_the_step(make_run):
    def reply(prompt, call):
        return YES if speaker(prompt) == "risk" else default_reply(prompt, call)

    run = make_run(parameters={"risk_agent": False})
    assert run.parameters["risk_agent"] is False
    backend = ScriptedBackend(reply)
    run_execute(run_id=run.pk, backend=backend)
    candidate = Candidate.objects.get(run=run)
    assert _risk_prompts(backend) == []
    assert "risk_agent" not in candidate.ai_review
    assert not candidate.flags.exists()


def test_risk_agent_must_be_true_or_false(make_run):
    with pytest.raises(ValidationError, match="risk_agent"):
        make_run(parameters={"risk_agent": "no"})


def test_the_rules_still_flag_when_the_agent_says_no(make_run):
    def reply(prompt, call):
        return "Sometimes I think about killing myself." if speaker(prompt) == "client" else default_reply(prompt, call)

    run = make_run()
    run_execute(run_id=run.pk, backend=ScriptedBackend(reply))
    candidate = Candidate.objects.get(run=run)
    assert candidate.ai_review["risk_agent"]["answer"] == "no"
    assert [(f.source, f.code) for f in candidate.flags.all()] == [("screen", "self_harm")]


def test_a_reconstructed_chinese_dialogue_is_asked_about_too(make_run):
    source = factories.make_candidate(
        content={
            "turns": [
                {"role": "client", "text": "我看不到出路了，最近把东西都送人了。"},
                {"role": "counselor", "text": "嗯。"},
            ]
        },
        sub_emotion_key=None,
    )
    assert not source.flags.exists()

    def reply(prompt, call):
        if speaker(prompt) == "risk" and "把东西都送人了" in prompt[0]["content"]:
            return "风险：是\n理由：来访者说“最近把东西都送人了”。"
        return default_reply(prompt, call)

    run = make_run(dialogues=[source], sub_emotion=None, parameters={"supervisor": False})
    run_execute(run_id=run.pk, backend=ScriptedBackend(reply))
    rewritten = Candidate.objects.get(run=run)
    assert rewritten.parent == source
    assert rewritten.ai_review["risk_agent"]["answer"] == "yes"
    flag = rewritten.flags.get()
    assert (flag.source, flag.detail) == ("agent", "risk agent: 来访者说“最近把东西都送人了”。")


def test_a_senior_sees_what_the_agent_said_and_its_flag(make_run, client, senior):
    def reply(prompt, call):
        agent = speaker(prompt)
        if agent == "client":
            return UNSEEN
        return YES if agent == "risk" else default_reply(prompt, call)

    run = make_run()
    run_execute(run_id=run.pk, backend=ScriptedBackend(reply))
    candidate = Candidate.objects.get(run=run)
    client.force_login(senior)
    page = client.get(reverse("annotations:candidate", args=[candidate.pk])).content.decode()
    assert 'id="ai-risk-agent"' in page and "sees risk" in page
    assert "Possible self-harm or suicide risk" in page and "risk agent" in page


def test_the_agent_is_asked_by_default_except_with_the_bundled_model(taxonomy):
    from generation.models import ModelSpec

    assert risk_agent_default(modelspec_get_default()) is False
    served = ModelSpec(name="qwen", backend="openai", path="Qwen/Qwen2.5-7B-Instruct", base_url="http://gpu-1:8000/v1")
    assert risk_agent_default(served) is True
