"""The multi-agent engine with a scripted model: supervisor, regeneration, emotion labels, strategies, plans."""

import pytest
from django.core.exceptions import ValidationError

from generation import selectors
from generation.agents.psyroom import (
    AgentOutputError,
    parse_emotion,
    parse_feedback,
    parse_plan_section,
    parse_scenario,
    parse_score,
    parse_strategy,
    plan_messages,
)
from generation.models import Candidate, GenerationRun, Scenario
from generation.services import runs as run_services
from generation.services.candidates import candidate_set_status
from generation.services.runs import run_create, run_execute
from tests import factories

from .scripted import ScriptedBackend, default_reply, question_of, speaker

LABELS = {"anxiety.1": "Self-imposed pressure", "sadness.0": "Loss and separation"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("4 - Stays on the problem.", (4, "Stays on the problem.")),
        ("Score: 2/5. Drifts off topic.", (2, "Drifts off topic.")),
        ("**5** because it is excellent", (5, "because it is excellent")),
    ],
)
def test_parse_score(raw, expected):
    assert parse_score(raw) == expected


@pytest.mark.parametrize("raw", ["", "Excellent work overall.", "7 - too high", "10/10", "0 - none", "3.5 - half"])
def test_parse_score_refuses_what_is_not_a_score_from_1_to_5(raw):
    with pytest.raises(AgentOutputError) as caught:
        parse_score(raw)
    assert caught.value.reason == "score_unparsed"
    assert caught.value.raw == raw


def test_parse_emotion_accepts_a_key_or_a_label_and_refuses_anything_outside_the_taxonomy():
    assert parse_emotion("anxiety.1 - she pressures herself", labels=LABELS) == ("anxiety.1", "she pressures herself")
    assert parse_emotion("This is about loss and separation.", labels=LABELS)[0] == "sadness.0"
    for raw in ["anxiety.9 - made up", "joy.0", "The client is happy.", ""]:
        with pytest.raises(AgentOutputError) as caught:
            parse_emotion(raw, labels=LABELS)
        assert caught.value.reason == "label_outside_taxonomy"


def test_parse_strategy_and_feedback():
    assert parse_strategy("Reflection of feelings.") == "Reflection of feelings"
    assert parse_strategy("The counselor asks a question") == "Question"
    with pytest.raises(AgentOutputError, match="strategy_unparsed"):
        parse_strategy("Hmm.")
    with pytest.raises(AgentOutputError, match="feedback_empty"):
        parse_feedback("ok")


def test_parse_plan_sections():
    assert parse_plan_section("goals", "1. Sleep better\n2) Worry less\n") == ["Sleep better", "Worry less"]
    assert parse_plan_section("interventions", "- CBT: fits her thinking style\n- Rest") == [
        {"technique": "CBT", "rationale": "fits her thinking style"}
    ]
    assert parse_plan_section("risk_assessment", "Moderate - some hopelessness.") == {
        "level": "moderate",
        "rationale": "some hopelessness.",
    }
    for section, raw, reason in [
        ("goals", "", "section_empty"),
        ("interventions", "- Relaxation\n- Support", "interventions_without_rationale"),
        ("risk_assessment", "It is hard to say.", "risk_level_unparsed"),
        ("case_formulation", "Sad.", "section_empty"),
    ]:
        with pytest.raises(AgentOutputError) as caught:
            parse_plan_section(section, raw)
        assert caught.value.reason == reason


def test_plan_v2_starts_the_risk_answer_and_reads_it_whole():
    turns = [{"role": "client", "text": "I cannot sleep before exams."}]
    risk = plan_messages(version="v2", section="risk_assessment", turns=turns, emotion="e", category="c")
    assert risk[-1] == {"role": "assistant", "content": "Risk level:"}
    assert "risk of harming" in risk[-2]["content"] and risk[-2]["role"] == "user"
    assert plan_messages(version="v2", section="goals", turns=turns, emotion="e", category="c")[-1]["role"] == "user"
    assert (
        plan_messages(version="v1", section="risk_assessment", turns=turns, emotion="e", category="c")[-1]["role"]
        == "user"
    )
    assert parse_plan_section("risk_assessment", "Risk level:" + " moderate - some hopelessness.") == {
        "level": "moderate",
        "rationale": "some hopelessness.",
    }
    with pytest.raises(AgentOutputError) as caught:
        parse_plan_section("risk_assessment", "Risk level:" + " it is hard to say.")
    assert caught.value.reason == "risk_level_unparsed"
    assert caught.value.raw == "Risk level: it is hard to say."


@pytest.fixture
def make_run(taxonomy, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(run_services, "run_queue", lambda run_id: None)

    def make(**kwargs):
        kwargs.setdefault("kind", "dialogue")
        if kwargs["kind"] == "dialogue":
            kwargs.setdefault("sub_emotion", selectors.sub_emotion_get(key="anxiety.1"))
            kwargs.setdefault("count", 2)
            kwargs.setdefault("turns", 2)
        with django_capture_on_commit_callbacks(execute=True):
            return run_create(**kwargs)

    return make


def test_a_dialogue_under_the_threshold_is_regenerated_with_the_feedback(make_run):
    def reply(prompt, call):
        agent = speaker(prompt)
        if agent == "counselor" and "supervisor reviewed" in prompt[0]["content"]:
            return "Let's look at one exam situation together. What did you feel then?"
        if agent == "supervisor_score":
            improved = "one exam situation" in prompt[0]["content"]
            return "5 - Much better." if improved else "2 - Too generic."
        return default_reply(prompt, call)

    run = make_run(count=1, parameters={"threshold": 3.5, "max_attempts": 3})
    backend = ScriptedBackend(reply)
    run_execute(run_id=run.pk, backend=backend)
    run.refresh_from_db()
    candidate = Candidate.objects.get(run=run)
    attempts = candidate.ai_review["supervisor"]["attempts"]
    assert [a["mean"] for a in attempts] == [2.0, 5.0]
    assert attempts[0]["feedback"].startswith("Ask about concrete situations")
    assert candidate.ai_review["supervisor"]["score"] == 5.0
    assert "one exam situation" in candidate.content["turns"][1]["text"]
    assert run.stats["regenerated"] == 1
    # The regenerated counselor was told what the supervisor said.
    regenerated = [p for call in backend.calls for p in call if "supervisor reviewed" in p[0]["content"]]
    assert "Ask about concrete situations" in regenerated[0][0]["content"]


def test_regeneration_stops_at_the_limit_and_keeps_the_best_attempt(make_run):
    def reply(prompt, call):
        if speaker(prompt) == "supervisor_score":
            return "1 - Poor." if call > 4 else "2 - Weak."
        return default_reply(prompt, call)

    run = make_run(count=1, parameters={"threshold": 4, "max_attempts": 2})
    run_execute(run_id=run.pk, backend=ScriptedBackend(reply))
    candidate = Candidate.objects.get(run=run)
    assert [a["mean"] for a in candidate.ai_review["supervisor"]["attempts"]] == [2.0, 1.0]
    assert candidate.ai_review["supervisor"]["score"] == 2.0


def test_unparseable_scores_are_kept_raw_and_counted(make_run):
    def reply(prompt, call):
        return "Great session!" if speaker(prompt) == "supervisor_score" else default_reply(prompt, call)

    run = make_run(count=1)
    run_execute(run_id=run.pk, backend=ScriptedBackend(reply))
    run.refresh_from_db()
    review = Candidate.objects.get(run=run).ai_review["supervisor"]["attempts"][0]
    assert review["mean"] is None and review["scores"] == {}
    assert review["unparsed"]["empathy"] == "Great session!"
    assert run.stats["score_unparsed"] == 10  # five dimensions, each tried twice
    assert run.status == "succeeded"


def test_the_emotion_label_is_recorded_with_agreement_and_a_label_outside_the_taxonomy_is_caught(make_run):
    run = make_run(count=1)
    run_execute(run_id=run.pk, backend=ScriptedBackend())
    emotion = Candidate.objects.get(run=run).ai_review["emotion"]
    assert emotion == {
        "label": "anxiety.1",
        "reason": "The client pressures herself to succeed.",
        "target": "anxiety.1",
        "agrees": True,
    }

    def reply(prompt, call):
        return "happiness.7" if speaker(prompt) == "classifier" else default_reply(prompt, call)

    run = make_run(count=1, seed=2)
    run_execute(run_id=run.pk, backend=ScriptedBackend(reply))
    run.refresh_from_db()
    emotion = Candidate.objects.get(run=run).ai_review["emotion"]
    assert emotion["label"] is None and emotion["error"] == "label_outside_taxonomy" and emotion["raw"] == "happiness.7"
    assert run.stats["label_outside_taxonomy"] == 2


def test_strategies_label_every_counselor_turn(make_run):
    run = make_run(count=1, turns=4, parameters={"strategies": True})
    run_execute(run_id=run.pk, backend=ScriptedBackend())
    turns = Candidate.objects.get(run=run).content["turns"]
    assert [t.get("strategy") for t in turns] == [None, "Question", None, "Question"]


def test_a_run_cycles_through_its_sub_emotions(make_run):
    subs = [selectors.sub_emotion_get(key=k) for k in ("anxiety.1", "guilt.0")]
    run = make_run(sub_emotion=None, sub_emotions=subs, count=4)
    run_execute(run_id=run.pk, backend=ScriptedBackend())
    got = dict(Candidate.objects.filter(run=run).values_list("run_index", "sub_emotion__key"))
    assert got == {0: "anxiety.1", 1: "guilt.0", 2: "anxiety.1", 3: "guilt.0"}


def test_a_plan_run_writes_a_valid_plan_linked_to_its_dialogue(make_run):
    dialogue_run = make_run(count=2)
    run_execute(run_id=dialogue_run.pk, backend=ScriptedBackend())
    dialogues = list(Candidate.objects.filter(run=dialogue_run))
    run = make_run(kind="plan", dialogues=dialogues)
    assert run.count == 2
    run_execute(run_id=run.pk, backend=ScriptedBackend())
    run.refresh_from_db()
    assert (run.status, run.done, run.failed) == ("succeeded", 2, 0)
    plan = Candidate.objects.get(run=run, run_index=0)
    assert plan.kind == "plan" and plan.parent == dialogues[0]
    assert plan.content["risk_assessment"] == {
        "level": "low",
        "rationale": "she reports no thoughts of harming herself or others.",
    }
    assert plan.content["interventions"][0]["technique"] == "Cognitive restructuring"
    assert plan.lineage["prompt_version"] == "plan/v2"
    assert not plan.has_open_risk


def test_a_plan_with_high_risk_is_flagged_and_a_bad_section_fails_only_its_plan(make_run):
    dialogue_run = make_run(count=2)
    run_execute(run_id=dialogue_run.pk, backend=ScriptedBackend())
    dialogues = list(Candidate.objects.filter(run=dialogue_run).order_by("run_index"))
    first_turn = dialogues[1].content["turns"][0]["text"]

    def reply(prompt, call):
        question = question_of(prompt).lower()
        if speaker(prompt) == "planner" and "risk of harming" in question:
            return " high - she speaks of hopelessness."
        if speaker(prompt) == "planner" and "homework" in question and first_turn in prompt[0]["content"]:
            return ""
        return default_reply(prompt, call)

    # Give the second dialogue a distinct first turn so that the scripted planner can tell them apart.
    Candidate.objects.filter(pk=dialogues[1].pk).update(
        content={"turns": [{"role": "client", "text": "Unique opening."}, dialogues[1].content["turns"][1]]}
    )
    first_turn = "Unique opening."
    run = make_run(kind="plan", dialogues=dialogues)
    run_execute(run_id=run.pk, backend=ScriptedBackend(reply))
    run.refresh_from_db()
    assert (run.done, run.failed) == (1, 1)
    assert run.errors[0]["index"] == 1 and run.errors[0]["section"] == "homework"
    assert run.errors[0]["reason"] == "section_empty" and run.errors[0]["raw"] == ""
    plan = Candidate.objects.get(run=run)
    assert plan.has_open_risk and plan.flags.filter(code="risk_assessment").exists()


def test_plan_and_dialogue_runs_refuse_bad_requests(make_run, candidate):
    with pytest.raises(ValidationError, match="at least one dialogue"):
        make_run(kind="plan", dialogues=[])
    with pytest.raises(ValidationError, match="threshold"):
        make_run(parameters={"threshold": 9})
    with pytest.raises(ValidationError, match="true or false"):
        make_run(parameters={"supervisor": "yes"})
    with pytest.raises(ValidationError, match="not available"):
        make_run(kind="session")  # sessions are written by course runs, never alone
    assert GenerationRun.objects.count() == 0


def test_reconstruction_keeps_the_real_client_turns_and_rewrites_and_labels_the_counselor(make_run):
    source = factories.make_candidate(
        content={
            "turns": [
                {"role": "client", "text": "最近考试压力很大，我总觉得自己不够好。"},
                {"role": "counselor", "text": "嗯。"},
                {"role": "client", "text": "我每天都睡不好。"},
                {"role": "counselor", "text": "你要多休息。"},
            ]
        },  # fmt: skip
        sub_emotion_key=None,
    )
    unclassifiable = factories.make_candidate(sub_emotion_key=None)

    def reply(prompt, call):
        agent = speaker(prompt)
        if agent == "classifier" and "Client turn 0" in prompt[0]["content"]:
            return "Happiness - it is a happy session."
        return default_reply(prompt, call)

    run = make_run(dialogues=[source, unclassifiable], sub_emotion=None, parameters={"supervisor": False})
    assert (run.kind, run.count) == ("dialogue", 2)
    backend = ScriptedBackend(reply)
    run_execute(run_id=run.pk, backend=backend)
    run.refresh_from_db()
    assert (run.status, run.done, run.failed) == ("succeeded", 1, 1)
    assert run.errors[0]["reason"] == "label_outside_taxonomy" and "Happiness" in run.errors[0]["raw"]

    rewritten = Candidate.objects.get(run=run)
    assert rewritten.parent == source
    assert rewritten.sub_emotion.key == "anxiety.1"
    assert rewritten.lineage["mode"] == "reconstruction" and rewritten.lineage["source"] == source.pk
    turns = rewritten.content["turns"]
    assert [t["text"] for t in turns[0::2]] == ["最近考试压力很大，我总觉得自己不够好。", "我每天都睡不好。"]
    assert all(t["text"] == "That sounds heavy. What goes through your mind when you worry?" for t in turns[1::2])
    assert [t.get("strategy") for t in turns] == [None, "Question", None, "Question"]
    assert rewritten.ai_review["emotion"]["label"] == "anxiety.1"
    # The counselor agent was told the session is real and what emotion it shows.
    counselor_prompts = [p for call in backend.calls for p in call if speaker(p) == "counselor"]
    assert all("really took place" in p[0]["content"] for p in counselor_prompts)
    assert "Self-imposed pressure" in counselor_prompts[0][0]["content"]
    # The source is untouched.
    source.refresh_from_db()
    assert source.content["turns"][1]["text"] == "嗯。"


def test_reconstruction_refuses_a_mix_of_sources_and_sub_emotions(make_run, candidate):
    with pytest.raises(ValidationError, match="either source dialogues or sub-emotions"):
        make_run(dialogues=[candidate])
    assert not GenerationRun.objects.exists()


def test_a_scenario_run_writes_candidates_that_become_scenarios_only_once_approved(make_run):
    def same_title(prompt, call):
        return default_reply(prompt, 1)

    sub = selectors.sub_emotion_get(key="anxiety.1")
    backend = ScriptedBackend()
    run = make_run(kind="scenario", sub_emotion=sub, count=1)
    run_execute(run_id=run.pk, backend=backend)
    run.refresh_from_db()
    assert (run.status, run.done) == ("succeeded", 1)
    candidate = Candidate.objects.get(run=run)
    assert candidate.kind == "scenario" and candidate.sub_emotion == sub
    assert candidate.content["title"] == "Exams after a move 1"
    assert candidate.lineage["prompt_version"] == "scenario/v1"
    # Not usable before approval.
    assert not Scenario.objects.filter(title="Exams after a move 1").exists()

    candidate_set_status(candidate=candidate, status="approved", revision=candidate.revisions.get())
    scenario = Scenario.objects.get(title="Exams after a move 1")
    assert (scenario.sub_emotion, scenario.source) == (sub, "generated")
    assert scenario.description.startswith("A 17-year-old moved cities")
    # Approving again does not make a second scenario.
    candidate_set_status(candidate=candidate, status="approved", revision=candidate.revisions.get())
    assert Scenario.objects.filter(title="Exams after a move 1").count() == 1

    # The writer was told the titles in use; an answer that repeats one is refused.
    second = make_run(kind="scenario", sub_emotion=sub, count=2)
    writer = ScriptedBackend(same_title)
    run_execute(run_id=second.pk, backend=writer)
    second.refresh_from_db()
    assert (second.done, second.failed) == (0, 2), second.errors
    assert [e["reason"] for e in second.errors] == ["scenario_duplicate", "scenario_duplicate"]
    assert '"Exams after a move 1"' in writer.calls[0][0][0]["content"]


def test_parse_scenario_refuses_what_is_not_a_scenario():
    good = "Title: A new job\nSituation: He started a job abroad and lies awake fearing he will be let go soon."
    assert parse_scenario(good, existing=[]) == {
        "title": "A new job",
        "description": "He started a job abroad and lies awake fearing he will be let go soon.",
    }
    for raw, reason in [
        ("A new job. He started a job abroad.", "scenario_unparsed"),
        ("Title: A new job\nSituation: Too short.", "scenario_situation_invalid"),
        (good, "scenario_duplicate"),
    ]:
        with pytest.raises(AgentOutputError) as caught:
            parse_scenario(raw, existing=["a new job"] if reason == "scenario_duplicate" else [])
        assert caught.value.reason == reason


def test_a_scenario_run_needs_sub_emotions(make_run, candidate):
    with pytest.raises(ValidationError, match="a scenario run needs sub-emotions"):
        make_run(kind="scenario", dialogues=[candidate], count=1)
    assert not GenerationRun.objects.exists()
