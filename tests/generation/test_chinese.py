"""Chinese generation: the Chinese prompt versions, the parsers on Chinese answers, a run's language and what follows
from it (prompt version, labels, scenarios, candidates' language and lineage), and the export's system prompt.

The model answers below are recorded forms of Chinese answers (full-width colons and digits, 、-numbered lists, bold
labels, the level words of a risk assessment); a scripted backend plays the model in the run tests.
"""

import re
from io import StringIO
from string import Formatter

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotations.exports.sft import sft_record
from generation import selectors
from generation.agents import course as course_agents
from generation.agents import psyroom
from generation.agents.psyroom import (
    PROMPTS_DIR,
    AgentOutputError,
    load_prompt,
    parse_emotion,
    parse_plan_section,
    parse_risk,
    parse_scenario,
    parse_score,
    parse_strategy,
    prompt_language,
)
from generation.agents.question import parse_answer
from generation.models import Candidate, GenerationRun, Scenario
from generation.runs.kinds import KINDS
from generation.services import runs as run_services
from generation.services.runs import run_create, run_execute
from generation.services.scenarios import scenarios_load
from generation.training import training_system_prompt
from releases.formats import dpo_rows, sft_row, sharegpt_row
from tests import factories

from .scripted import ScriptedBackend

pytestmark = pytest.mark.django_db

CJK = re.compile(r"[\u4e00-\u9fff]")


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(text) if name}


# --- The prompt versions --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_has_a_chinese_prompt_version_with_every_prompt_of_the_english_one(kind):
    versions = KINDS[kind].prompt_versions
    assert set(versions) == {"en", "zh"}
    assert prompt_language(versions["en"]) == "en" and prompt_language(versions["zh"]) == "zh"
    pipeline = {"question": "question", "course": "course"}.get(kind, kind)
    english = PROMPTS_DIR / pipeline / versions["en"]
    chinese = PROMPTS_DIR / pipeline / versions["zh"]
    names = sorted(p.stem for p in english.glob("*.txt"))
    assert names == sorted(p.stem for p in chinese.glob("*.txt"))
    for name in names:
        en, zh = load_prompt(pipeline, versions["en"], name), load_prompt(pipeline, versions["zh"], name)
        # The same blanks to fill, so that the code formats both alike; and the Chinese one is Chinese.
        assert placeholders(en) == placeholders(zh), name
        assert CJK.search(zh), name
        assert len(CJK.findall(zh)) > len(re.findall(r"[A-Za-z]{3,}", zh)), name


def test_the_chinese_prompts_name_the_speakers_the_dimensions_and_the_strategies_in_chinese():
    turns = [{"role": "client", "text": "我最近总是睡不着。"}, {"role": "counselor", "text": "听起来你很累。"}]
    score = psyroom.supervisor_score_messages(version="v1-zh", turns=turns, dimension="empathy")[0]["content"]
    assert "来访者: 我最近总是睡不着。" in score and "咨询师: 听起来你很累。" in score
    assert "共情" in score and "Empathy" not in score and "Client:" not in score
    strategy = psyroom.strategy_messages(version="v1-zh", client="我很难过", counselor="你愿意多说一点吗？")
    assert "- 情感反映" in strategy[0]["content"] and "Reflection" not in strategy[0]["content"]
    english = psyroom.supervisor_score_messages(version="v1", turns=turns, dimension="empathy")[0]["content"]
    assert "Client: 我最近总是睡不着。" in english and "Empathy" in english


def test_a_chinese_course_prompt_labels_the_memories_the_profile_and_the_direction_in_chinese():
    memory = {"emotion_cognitive": "焦虑", "observations": "回避", "assignments": "每天散步二十分钟",
              "session_goal": "建立关系", "summary": "来访者愿意继续。"}  # fmt: skip
    messages = course_agents.course_counselor_messages(
        version="v1-zh", profile={"name": "小林", "background": "大学生"}, memories=[memory], session=2, sessions=3,
        turns=[],
    )  # fmt: skip
    system = messages[0]["content"]
    assert "第1次咨询:" in system and "咨询作业: 每天散步二十分钟" in system
    assert "称呼: 小林" in system and "背景: 大学生" in system
    assert "跟进上次的作业（“每天散步二十分钟”）" in system
    assert "Session" not in system and "Name:" not in system


# --- The parsers on Chinese answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "score", "reason"),
    [
        ("4 - 咨询师准确回应了来访者的担忧。", 4, "咨询师准确回应了来访者的担忧。"),
        ("４分。咨询师的语言自然。", 4, "咨询师的语言自然。"),
        ("评分：3/5，咨询师没有深入探索。", 3, "咨询师没有深入探索。"),
        ("**得分：** ５／５ —— 处理得当。", 5, "处理得当。"),
    ],
)
def test_a_chinese_score_is_read(raw, score, reason):
    assert parse_score(raw) == (score, reason)


def test_a_chinese_answer_without_a_score_is_refused():
    with pytest.raises(AgentOutputError) as caught:
        parse_score("咨询师表现很好，共情充分。")
    assert caught.value.reason == "score_unparsed"


ZH_LABELS = {"anxiety.1": "自我施加的压力", "anxiety.3": "不确定性和未知数", "fear.0": "社交恐惧"}


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("anxiety.1 - 来访者对自己要求过高。", "anxiety.1"),
        ("细分情绪：anxiety．3。来访者担心复查结果。", "anxiety.3"),
        ("属于fear.0，因为来访者害怕在会上发言。", "fear.0"),
        ("来访者的情绪是社交恐惧。", "fear.0"),
    ],
)
def test_a_chinese_classifier_answer_is_read(raw, key):
    assert parse_emotion(raw, labels=ZH_LABELS)[0] == key


@pytest.mark.parametrize("raw", ["anxiety.9 - 不在列表中", "来访者很难过。", "焦虑"])
def test_a_chinese_classifier_answer_outside_the_taxonomy_is_refused(raw):
    with pytest.raises(AgentOutputError) as caught:
        parse_emotion(raw, labels=ZH_LABELS)
    assert caught.value.reason == "label_outside_taxonomy"


@pytest.mark.parametrize(
    ("raw", "risky"),
    [
        ("风险：是\n理由：来访者说“活着没什么意思”。", True),
        ("**风险：** 否。\n**理由：** 来访者只谈到考试压力。", False),
        ("风险：无\n理由：没有提到伤害自己。", False),
    ],
)
def test_a_chinese_risk_answer_is_read(raw, risky):
    assert parse_risk(raw)[0] is risky


def test_an_unreadable_chinese_risk_answer_is_refused_not_taken_for_a_no():
    with pytest.raises(AgentOutputError) as caught:
        parse_risk("我无法判断。")
    assert caught.value.reason == "risk_unparsed"


@pytest.mark.parametrize(
    ("raw", "strategy"),
    [
        ("情感反映", "Reflection of feelings"),
        ("策略：提供建议", "Providing Suggestions"),
        ("复述或释义", "Restatement or Paraphrasing"),
        ("肯定与安慰", "Affirmation and Reassurance"),
    ],
)
def test_a_chinese_strategy_is_stored_under_its_english_name(raw, strategy):
    assert parse_strategy(raw) == strategy


@pytest.mark.parametrize(
    ("raw", "level", "rationale"),
    [
        ("风险等级：低 - 来访者否认有伤害自己的想法。", "low", "来访者否认有伤害自己的想法。"),
        ("风险等级：中等。来访者提到有时觉得活着很累。", "moderate", "来访者提到有时觉得活着很累。"),
        ("风险等级： **高** —— 来访者有具体计划。", "high", "来访者有具体计划。"),
        ("低风险，来访者有良好的社会支持。", "low", "来访者有良好的社会支持。"),
    ],
)
def test_a_chinese_risk_level_is_read(raw, level, rationale):
    assessed = parse_plan_section("risk_assessment", raw)
    assert assessed["level"] == level
    assert assessed["rationale"].strip("* —") == rationale


def test_a_chinese_risk_assessment_without_a_level_is_refused():
    with pytest.raises(AgentOutputError) as caught:
        parse_plan_section("risk_assessment", "风险等级：需要进一步评估来访者的情况。")
    assert caught.value.reason == "risk_level_unparsed"


def test_chinese_lists_are_read_whatever_their_numbering():
    raw = "1、减轻考试焦虑\n２．挑战完美主义信念\n（3）建立规律的学习作息\n- 每周运动三次"
    assert parse_plan_section("goals", raw) == [
        "减轻考试焦虑",
        "挑战完美主义信念",
        "建立规律的学习作息",
        "每周运动三次",
    ]
    assert parse_plan_section("goals", "1.减轻焦虑\n2.调整信念") == ["减轻焦虑", "调整信念"]
    # A number at the start of an English line is not a bullet without the space after it.
    assert parse_plan_section("goals", "3.5 hours of sleep a night\n-5 kg by summer") == [
        "3.5 hours of sleep a night",
        "-5 kg by summer",
    ]
    interventions = parse_plan_section("interventions", "- 认知重构：她对失败的信念加重了压力\n- 放松训练：考前紧张")
    assert interventions == [
        {"technique": "认知重构", "rationale": "她对失败的信念加重了压力"},
        {"technique": "放松训练", "rationale": "考前紧张"},
    ]


def test_a_chinese_scenario_is_read_and_a_duplicate_title_refused():
    raw = (
        "**标题：** 搬家后的高考\n"
        "**情境：** 一位17岁的女生在高三时随父母搬到新城市，担心自己考不上理想的大学，晚上常常失眠。"
    )
    parsed = parse_scenario(raw, existing=[])
    assert parsed["title"] == "搬家后的高考"
    assert parsed["description"].startswith("一位17岁的女生")
    with pytest.raises(AgentOutputError) as caught:
        parse_scenario(raw, existing=["搬家后的高考"])
    assert caught.value.reason == "scenario_duplicate"


def test_a_chinese_memory_is_read_field_by_field():
    raw = (
        "情绪与认知状态：焦虑有所缓解，仍担心考试。\n咨询师观察：来访者愿意尝试新方法。\n"
        "咨询作业：每天记录一次自动思维。\n本次咨询目标：识别引发焦虑的想法。\n总结：来访者识别出两个自动思维。"
    )
    memory = course_agents.parse_memory(raw)
    assert memory["assignments"] == "每天记录一次自动思维。"
    assert memory["session_goal"] == "识别引发焦虑的想法。"
    with pytest.raises(AgentOutputError) as caught:
        course_agents.parse_memory(raw.replace("咨询作业：每天记录一次自动思维。\n", ""))
    assert caught.value.reason == "memory_missing_field"


def test_a_chinese_answer_to_a_question_is_read():
    parsed = parse_answer(
        "<think>题目问的是认知行为疗法的核心，选项B最准确。</think>\n答案：B",
        options={"A": "a", "B": "b", "C": "c"},
        question_type="single",
    )
    assert (parsed.answer, parsed.rationale) == ("B", "题目问的是认知行为疗法的核心，选项B最准确。")


# --- A run's language -----------------------------------------------------------------------------------------


@pytest.fixture
def queued(monkeypatch):
    ids = []
    monkeypatch.setattr(run_services, "run_queue", ids.append)
    return ids


@pytest.fixture
def scenarios(taxonomy):
    scenarios_load()


def _zh_scenario(key="anxiety.1") -> Scenario:
    return Scenario.objects.filter(sub_emotion__key=key, language="zh").order_by("pk").first()


def test_a_chinese_dialogue_run_records_its_language_and_the_chinese_prompt_version(scenarios, queued, curator):
    run = run_create(kind="dialogue", scenarios=[_zh_scenario()], count=2, language="zh", created_by=curator)
    assert (run.language, run.prompt_version) == ("zh", "v1-zh")
    # Without a language, the scenario's says it.
    run = run_create(kind="dialogue", scenarios=[_zh_scenario()], count=1)
    assert (run.language, run.prompt_version) == ("zh", "v1-zh")
    run = run_create(kind="dialogue", sub_emotions=[selectors.sub_emotion_get(key="fear.0")], count=1)
    assert (run.language, run.prompt_version) == ("en", "v1")


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("fr", "language: must be one of en, zh, not 'fr'"),
        ("ZH", "language: must be one of en, zh, not 'ZH'"),
        ("zh\x00", "language: must be one of en, zh, not 'zh\\x00'"),
        (["zh"], "language: must be one of en, zh, not ['zh']"),
        (1, "language: must be one of en, zh, not 1"),
    ],
)
def test_a_language_that_is_not_one_is_refused_and_nothing_is_written(scenarios, queued, language, message):
    with pytest.raises(ValidationError) as caught:
        run_create(kind="dialogue", sub_emotions=[selectors.sub_emotion_get(key="fear.0")], count=1,
                   language=language)  # fmt: skip
    assert caught.value.messages == [message]
    assert not GenerationRun.objects.exists() and queued == []


def test_scenarios_of_another_language_or_of_two_languages_are_refused(scenarios, queued):
    english = Scenario.objects.filter(sub_emotion__key="anxiety.1", language="en").first()
    with pytest.raises(ValidationError, match=rf"language: the run is to write in 'zh' but scenario {english.pk} is"):
        run_create(kind="dialogue", scenarios=[english], count=1, language="zh")
    with pytest.raises(ValidationError, match="language: the run's sources are in more than one language"):
        run_create(kind="dialogue", scenarios=[english, _zh_scenario()], count=2)
    assert not GenerationRun.objects.exists() and queued == []


def zh_reply(prompt, call):
    """A Chinese model's answers, recorded forms, for each agent of the Chinese prompts."""
    text = "\n".join(m["content"] for m in prompt)
    first = prompt[0]["content"]
    if first.startswith("你在扮演"):
        return "我最近压力很大，总觉得自己做得不够好。"
    if "筛查心理咨询对话中的自杀和自伤风险" in text:
        return "风险：否\n理由：来访者只谈到工作压力。"
    if "只就一个维度给咨询师打分" in text:
        return "４分 - 咨询师回应了来访者的压力。"
    if "请写两句具体的反馈" in text:
        return "多询问具体的情境。先反映感受，再给建议。"
    if "咨询师会使用以下支持策略" in text:
        return "**提问**"
    if "请把心理咨询中来访者的情绪归入" in text:
        return "anxiety.1 - 来访者对自己要求过高。"
    if "治疗计划" in first:
        question = next(m["content"] for m in reversed(prompt) if m["role"] == "user")
        answers = {
            "个案概念化": "来访者对自己要求很高。完美主义让焦虑持续。她有很强的动机，也善于反思。",
            "咨询目标": "1、减轻焦虑\n2、调整完美主义信念\n3、建立规律作息",
            "干预措施": "1、认知重构：她对失败的信念加重了压力\n2、放松训练：她在考前很紧张",
            "家庭作业": "- 记录自动思维\n- 每天练习腹式呼吸十分钟",
            "咨询的安排": "- 第1次：评估\n- 第2次：认知\n- 第3次：应对\n- 第4次：回顾",
            "伤害自己或他人的风险": "低 - 来访者否认有伤害自己或他人的想法。",
            "安全计划": "- 留意预警信号\n- 给朋友打电话\n- 联系心理援助热线",
            "转介": "- 惊恐发作持续不缓解\n- 出现抑郁症状",
        }
        return next(answer for key, answer in answers.items() if key in question)
    return "听起来你承受了很多。能说说最让你担心的是什么吗？"


def test_a_chinese_run_writes_chinese_candidates_from_chinese_prompts(scenarios, queued):
    scenario = _zh_scenario()
    run = run_create(kind="dialogue", scenarios=[scenario], count=2, turns=4, language="zh",
                     parameters={"strategies": True})  # fmt: skip
    backend = ScriptedBackend(zh_reply)
    run_execute(run_id=run.pk, backend=backend)
    run.refresh_from_db()
    assert (run.status, run.done, run.failed, run.errors) == ("succeeded", 2, 0, [])
    prompts = [prompt for call in backend.calls for prompt in call]
    client = next(p for p in prompts if p[0]["content"].startswith("你在扮演"))
    # The scenario's Chinese situation and the sub-emotion's Chinese name, without the taxonomy's numbering.
    assert f"你的处境：{scenario.description}" in client[0]["content"]
    assert "自我施加的压力（焦虑）" in client[0]["content"]
    classifier = next(p for p in prompts if "请把心理咨询中来访者的情绪归入" in p[0]["content"])
    assert "- anxiety.1: 焦虑1-自我施加的压力" in classifier[0]["content"]
    assert not any("You are" in m["content"] for p in prompts for m in p)
    candidates = list(Candidate.objects.filter(run=run).order_by("run_index"))
    assert [c.language for c in candidates] == ["zh", "zh"]
    assert {c.lineage["language"] for c in candidates} == {"zh"}
    assert {c.lineage["prompt_version"] for c in candidates} == {"dialogue/v1-zh"}
    assert candidates[0].content["turns"][0]["text"] == "我最近压力很大，总觉得自己做得不够好。"
    assert candidates[0].ai_review["emotion"]["label"] == "anxiety.1"
    assert candidates[0].ai_review["supervisor"]["score"] == 4
    assert candidates[0].content["turns"][1]["strategy"] == "Question"


def test_a_plan_takes_its_dialogues_language(scenarios, queued, curator):
    dialogue = factories.make_candidate(
        content={"turns": [{"role": "client", "text": "我考试前总是睡不着。"},
                           {"role": "counselor", "text": "听起来你很紧张，能多说一点吗？"}]},
        language="zh",
    )  # fmt: skip
    run = run_create(kind="plan", dialogues=[dialogue], created_by=curator)
    assert (run.language, run.prompt_version) == ("zh", "v2-zh")
    english = factories.make_candidate()
    with pytest.raises(ValidationError, match="language: the run is to write in 'en' but dialogue"):
        run_create(kind="plan", dialogues=[dialogue], language="en")
    with pytest.raises(ValidationError, match="more than one language"):
        run_create(kind="plan", dialogues=[dialogue, english])
    backend = ScriptedBackend(zh_reply)
    run_execute(run_id=run.pk, backend=backend)
    run.refresh_from_db()
    assert (run.status, run.done, run.errors) == ("succeeded", 1, [])
    plan = Candidate.objects.get(run=run)
    assert (plan.language, plan.parent_id, plan.lineage["prompt_version"]) == ("zh", dialogue.pk, "plan/v2-zh")
    assert plan.content["risk_assessment"]["level"] == "low"
    assert plan.content["goals"] == ["减轻焦虑", "调整完美主义信念", "建立规律作息"]
    system = backend.calls[0][0][0]["content"]
    assert "来访者: 我考试前总是睡不着。" in system and "（焦虑）" in system
    # The risk assessment's answer is started in Chinese, for the model to go on.
    assert any(p[-1] == {"role": "assistant", "content": "风险等级："} for call in backend.calls for p in call)


def test_a_regeneration_with_a_critique_takes_the_dialogues_language(scenarios, queued, counselor):
    dialogue = factories.make_candidate(
        content={"turns": [{"role": "client", "text": "我很焦虑。"}, {"role": "counselor", "text": "别想太多。"}]},
        language="zh",
    )
    run = run_create(kind="dialogue", critiques=[{"parent": dialogue, "feedback": "先共情，再提问。"}],
                     created_by=counselor)  # fmt: skip
    assert (run.language, run.prompt_version) == ("zh", "v1-zh")
    backend = ScriptedBackend(zh_reply)
    run_execute(run_id=run.pk, backend=backend, max_chunks=1)
    client = next(p for call in backend.calls for p in call if p[0]["content"].startswith("你在扮演"))
    assert "一位审阅者指出了早先版本中的问题：先共情，再提问。" in client[0]["content"]
    regenerated = Candidate.objects.get(run=run)
    assert (regenerated.language, regenerated.parent_id) == ("zh", dialogue.pk)


def test_a_course_run_takes_its_profiles_language(taxonomy, queued):
    from generation.models import ClientProfile

    profile = ClientProfile.objects.create(name="小林", background="大学生", language="zh")
    run = run_create(kind="course", profiles=[profile], count=1, sessions=2)
    assert (run.language, run.prompt_version) == ("zh", "v1-zh")
    english = ClientProfile.objects.create(name="Sam", background="student", language="en")
    with pytest.raises(ValidationError, match="more than one language"):
        run_create(kind="course", profiles=[profile, english], count=1, sessions=2)


def test_the_generate_command_takes_a_language_and_refuses_another(scenarios, queued):
    out = StringIO()
    call_command("generate", "dialogue", "--sub-emotion", "fear.0", "--language", "zh", stdout=out)
    run = GenerationRun.objects.get()
    assert (run.language, run.prompt_version) == ("zh", "v1-zh")
    assert "in zh" in out.getvalue()
    with pytest.raises(CommandError, match="invalid choice: 'fr'"):
        call_command("generate", "dialogue", "--sub-emotion", "fear.0", "--language", "fr")
    english = Scenario.objects.filter(language="en").first()
    with pytest.raises(CommandError, match="language: the run is to write in 'zh'"):
        call_command("generate", "dialogue", "--scenario", str(english.pk), "--language", "zh")
    assert GenerationRun.objects.count() == 1


# --- The export's system prompt ------------------------------------------------------------------------------


def test_the_export_system_prompt_follows_the_dialogues_language(taxonomy):
    chinese = factories.make_candidate(
        content={"turns": [{"role": "client", "text": "我很焦虑。"}, {"role": "counselor", "text": "我在听。"}]},
        language="zh",
    )
    english = factories.make_candidate()
    for candidate, language in ((chinese, "zh"), (english, "en")):
        revision = candidate.revisions.get(number=0)
        record = sft_record(candidate=candidate, revision=revision, reviewer_ids=[])
        assert record["messages"][0] == {"role": "system", "content": training_system_prompt(language=language)}
        assert record["metadata"]["language"] == language
        # The releases' formats write the same system message.
        row = sft_row(candidate=candidate, revision=revision, reviewer_ids=[])
        assert sharegpt_row(row)["conversations"][0]["value"] == training_system_prompt(language=language)
    assert CJK.search(training_system_prompt(language="zh"))
    assert not CJK.search(training_system_prompt(language="en"))
    with pytest.raises(ValueError, match="no training system prompt for language 'fr'"):
        training_system_prompt(language="fr")


def test_a_dpo_pair_of_a_chinese_dialogue_has_the_chinese_system_prompt(taxonomy):
    turns = [{"role": "client", "text": "我很焦虑。"}, {"role": "counselor", "text": "你应该放松。"}]
    candidate = factories.make_candidate(content={"turns": turns}, language="zh")
    original = candidate.revisions.get(number=0)
    edited = [turns[0], {"role": "counselor", "text": "听起来焦虑让你很难受，能说说是什么时候开始的吗？"}]
    revision = original.__class__(candidate=candidate, number=1, content={"turns": edited})
    rows, _ = dpo_rows(candidate=candidate, revision=revision, original=original, max_similarity=0.95)
    assert len(rows) == 1
    assert rows[0]["prompt"][0] == {"role": "system", "content": training_system_prompt(language="zh")}


# --- The run form and the API ---------------------------------------------------------------------------------


@pytest.fixture
def api():
    from rest_framework.test import APIClient

    return APIClient()


def test_the_api_starts_a_chinese_run_and_says_its_language(api, curator, scenarios, queued):
    api.force_login(curator)
    response = api.post(
        reverse("api:run-list"),
        {"kind": "dialogue", "scenarios": [_zh_scenario().pk], "count": 1, "language": "zh"},
        format="json",
    )
    assert response.status_code == 201, response.content
    run = GenerationRun.objects.get()
    assert response.json()["language"] == "zh" and response.json()["id"] == run.pk
    assert (run.language, run.prompt_version, run.created_by) == ("zh", "v1-zh", curator)
    listed = api.get(reverse("api:run-list")).json()["results"]
    assert [r["language"] for r in listed] == ["zh"]


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("fr", '"fr" is not a valid choice.'),
        (["zh"], "\"['zh']\" is not a valid choice."),
        ({"zh": 1}, "is not a valid choice."),
        ("z" * 100_000, "is not a valid choice."),
    ],
)
def test_the_api_refuses_a_bad_language_naming_it_and_writes_nothing(
    api, curator, scenarios, queued, language, message
):
    api.force_login(curator)
    data = {"kind": "dialogue", "sub_emotions": ["fear.0"], "count": 1, "language": language}
    response = api.post(reverse("api:run-list"), data, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"language"}, response.json()
    assert message in response.json()["language"][0]
    assert not GenerationRun.objects.exists() and queued == []


def test_the_api_refuses_a_nul_in_the_language_naming_where(api, curator, scenarios, queued):
    api.force_login(curator)
    data = {"kind": "dialogue", "sub_emotions": ["fear.0"], "count": 1, "language": "zh\x00"}
    response = api.post(reverse("api:run-list"), data, format="json")
    assert response.status_code == 400
    assert response.json() == {"detail": "a NUL character (\\u0000) is not allowed at language"}
    assert not GenerationRun.objects.exists() and queued == []


def test_the_api_refuses_a_language_its_sources_are_not_in(api, curator, scenarios, queued):
    api.force_login(curator)
    data = {"kind": "dialogue", "scenarios": [_zh_scenario().pk], "count": 1, "language": "en"}
    response = api.post(reverse("api:run-list"), data, format="json")
    assert response.status_code == 400
    assert "the run is to write in 'en' but scenario" in response.json()["language"][0]
    assert not GenerationRun.objects.exists() and queued == []


def test_a_counselor_cannot_start_a_chinese_run(api, counselor, scenarios, queued):
    api.force_login(counselor)
    data = {"kind": "dialogue", "sub_emotions": ["fear.0"], "language": "zh"}
    assert api.post(reverse("api:run-list"), data, format="json").status_code == 403
    assert not GenerationRun.objects.exists() and queued == []


def test_the_run_form_starts_a_chinese_run_and_refuses_another_language(client, curator, scenarios, queued):
    client.force_login(curator)
    data = {"kind": "dialogue", "sub_emotions": ["fear.0"], "count": "1", "turns": "4", "seed": "0"}
    page = client.get(reverse("generation:run-new")).content.decode()
    assert 'name="language"' in page and '<option value="zh">Chinese</option>' in page
    response = client.post(reverse("generation:run-new"), {**data, "language": "fr"})
    assert response.status_code == 400 and "Select a valid choice. fr is not one" in response.content.decode()
    assert not GenerationRun.objects.exists()
    english = Scenario.objects.filter(sub_emotion__key="fear.0", language="en").first()
    response = client.post(reverse("generation:run-new"), {**data, "scenarios": [english.pk], "language": "zh"})
    assert response.status_code == 400 and "the run is to write in &#x27;zh&#x27;" in response.content.decode()
    assert not GenerationRun.objects.exists()
    response = client.post(reverse("generation:run-new"), {**data, "language": "zh"})
    run = GenerationRun.objects.get()
    assert response.status_code == 302 and (run.language, run.prompt_version) == ("zh", "v1-zh")
    assert "Chinese" in client.get(reverse("generation:run", args=[run.pk])).content.decode()
