"""Written scenarios: the shipped file, loading it (idempotent, all or nothing), and `manage.py load_scenarios`."""

import json
import re
from collections import Counter
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from generation.models import Scenario, SubEmotion
from generation.services.scenarios import SCENARIOS_FILE, ScenarioLoadError, scenarios_load

pytestmark = pytest.mark.django_db

SHIPPED = json.loads(SCENARIOS_FILE.read_text(encoding="utf-8"))


def good(**fields):
    record = {
        "sub_emotion": "anxiety.1",
        "title": "Deadline week",
        "description": "You are a 30-year-old editor with three deadlines in one week and no help.",
        "language": "en",
    }
    return {**record, **fields}


def write(tmp_path, records, name="scenarios.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def test_the_shipped_file_covers_every_sub_emotion_at_least_twice(taxonomy):
    assert scenarios_load() == (len(SHIPPED), 0)
    keys = set(SubEmotion.objects.values_list("key", flat=True))
    assert len(keys) == 35
    # In each language: Chinese runs draw Chinese scenarios, English runs English ones.
    for language in ("en", "zh"):
        per_sub = Counter(Scenario.objects.filter(language=language).values_list("sub_emotion__key", flat=True))
        assert set(per_sub) == keys, language
        assert min(per_sub.values()) >= 2, language
    assert set(Scenario.objects.values_list("language", "source")) == {
        ("en", Scenario.Source.WRITTEN),
        ("zh", Scenario.Source.WRITTEN),
    }


def test_the_shipped_records_are_well_formed():
    for record in SHIPPED:
        assert set(record) == {"sub_emotion", "title", "description", "language"}
        assert len(record["title"]) <= 200
        # A situation of a few sentences, not a fragment and not an essay (a Chinese character says more).
        low, high = (60, 300) if record["language"] == "zh" else (100, 600)
        assert low <= len(record["description"]) <= high, record["title"]
    titles = Counter((r["sub_emotion"], r["title"].lower()) for r in SHIPPED)
    assert titles.most_common(1)[0][1] == 1


def test_the_shipped_chinese_scenarios_are_in_chinese_and_name_no_one():
    chinese = [r for r in SHIPPED if r["language"] == "zh"]
    assert len(chinese) >= 70
    for record in chinese:
        text = record["title"] + record["description"]
        # Simplified Chinese throughout: mostly CJK characters, no Latin words, written to the client ("你").
        assert sum("\u4e00" <= ch <= "\u9fff" for ch in text) / len(text) > 0.75, record["title"]
        assert not re.search(r"[A-Za-z]{2,}", text), record["title"]
        assert record["description"].startswith("你是"), record["title"]
    # Varied lives, not one student after another.
    descriptions = " ".join(r["description"] for r in chinese)
    for who in ("学生", "退休", "打工", "妈妈", "男朋友", "同事"):
        assert who in descriptions, who


def test_loading_twice_creates_nothing_the_second_time(taxonomy):
    scenarios_load()
    first = list(Scenario.objects.values_list("pk", "sub_emotion__key", "title", "description"))
    assert scenarios_load() == (0, len(SHIPPED))
    assert list(Scenario.objects.values_list("pk", "sub_emotion__key", "title", "description")) == first


def test_a_scenario_already_there_is_kept_as_the_curator_left_it(taxonomy, tmp_path):
    scenarios_load(path=write(tmp_path, [good()]))
    Scenario.objects.filter(title="Deadline week").update(description="Edited by a curator.")
    path = write(tmp_path, [good(title="deadline WEEK"), good(title="Another week")])
    assert scenarios_load(path=path) == (1, 1)
    assert Scenario.objects.get(title="Deadline week").description == "Edited by a curator."
    assert Scenario.objects.count() == 2


def test_the_same_title_under_another_sub_emotion_is_a_new_scenario(taxonomy, tmp_path):
    path = write(tmp_path, [good(), good(sub_emotion="anxiety.0")])
    assert scenarios_load(path=path) == (2, 0)


def test_language_defaults_to_english(taxonomy, tmp_path):
    record = good()
    del record["language"]
    scenarios_load(path=write(tmp_path, [record, good(title="In Chinese", language="zh")]))
    assert dict(Scenario.objects.values_list("title", "language")) == {"Deadline week": "en", "In Chinese": "zh"}


def _without(field):
    record = good()
    del record[field]
    return record


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (good(sub_emotion="anxiety.9"), r"record 1: sub_emotion 'anxiety.9' is not in the taxonomy"),
        (good(sub_emotion="Anxiety"), r"record 1: sub_emotion 'Anxiety' is not in the taxonomy"),
        (_without("sub_emotion"), r"record 1: sub_emotion is missing"),
        (_without("title"), r"record 1: title is missing"),
        (_without("description"), r"record 1: description is missing"),
        (good(title="   "), r"record 1: title must be a non-empty string"),
        (good(description=""), r"record 1: description must be a non-empty string"),
        (good(title=42), r"record 1: title must be a non-empty string"),
        (good(title="x" * 201), r"record 1: title is 201 characters long \(at most 200\)"),
        (good(description="y" * 3001), r"record 1: description is 3001 characters long \(at most 3000\)"),
        (good(language="fr"), r"record 1: language must be one of en, zh, not 'fr'"),
        (good(situation="extra"), r"record 1: unknown field\(s\) \['situation'\]"),
        (["not", "an", "object"], r"record 1: expected an object"),
        (good(title="Fine title"), r"record 1: title 'Fine title' repeats record 0 for anxiety.1"),
    ],
)
def test_a_bad_record_names_itself_and_nothing_is_loaded(taxonomy, tmp_path, bad, message):
    path = write(tmp_path, [good(title="Fine title"), bad, good(title="Never reached")], name="mine.json")
    with pytest.raises(ScenarioLoadError, match=f"^mine.json: {message}"):
        scenarios_load(path=path)
    assert not Scenario.objects.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"sub_emotion": ', r"mine.json:1:\d+: invalid JSON"),
        ('{"sub_emotion": "anxiety.1"}', r"expected a JSON list of scenarios, not dict"),
    ],
)
def test_a_file_that_is_not_a_list_of_records_is_refused(taxonomy, tmp_path, content, message):
    path = tmp_path / "mine.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ScenarioLoadError, match=message):
        scenarios_load(path=path)
    assert not Scenario.objects.exists()


def test_a_failure_while_writing_keeps_nothing(taxonomy, tmp_path, monkeypatch):
    created = []
    real_create = Scenario.objects.create

    def create_then_fail(**values):
        if created:
            raise RuntimeError("database went away")
        created.append(real_create(**values))
        return created[-1]

    monkeypatch.setattr(Scenario.objects, "create", create_then_fail)
    with pytest.raises(RuntimeError):
        scenarios_load(path=write(tmp_path, [good(), good(title="Second")]))
    assert len(created) == 1
    assert not Scenario.objects.exists()


def test_loading_before_the_taxonomy_is_refused(tmp_path):
    with pytest.raises(ScenarioLoadError, match="the taxonomy is not loaded: run `manage.py load_taxonomy` first"):
        scenarios_load(path=write(tmp_path, [good()]))


def load_scenarios(*args) -> str:
    out = StringIO()
    call_command("load_scenarios", *args, stdout=out)
    return out.getvalue()


def test_the_command_loads_the_shipped_file_and_prints_the_counts(taxonomy):
    out = load_scenarios()
    assert f"Scenarios loaded from {SCENARIOS_FILE}: {len(SHIPPED)} created, 0 already there." in out
    out = load_scenarios()
    assert f"0 created, {len(SHIPPED)} already there." in out
    assert Scenario.objects.count() == len(SHIPPED)


def test_the_command_takes_a_path(taxonomy, tmp_path):
    path = write(tmp_path, [good(), good(title="Second")])
    assert f"Scenarios loaded from {path}: 2 created, 0 already there." in load_scenarios(str(path))


def test_the_command_names_a_bad_record_and_loads_nothing(taxonomy, tmp_path):
    path = write(tmp_path, [good(), good(sub_emotion="nope.1")], name="mine.json")
    with pytest.raises(CommandError, match=r"mine.json: record 1: sub_emotion 'nope.1' .*\(nothing was loaded\)"):
        load_scenarios(str(path))
    assert not Scenario.objects.exists()


def test_the_command_without_the_taxonomy_says_what_to_run():
    with pytest.raises(CommandError, match="run `manage.py load_taxonomy` first"):
        load_scenarios()


def test_a_missing_file_is_named(taxonomy, tmp_path):
    with pytest.raises(CommandError, match=r"absent.json: cannot read the file"):
        load_scenarios(str(tmp_path / "absent.json"))
