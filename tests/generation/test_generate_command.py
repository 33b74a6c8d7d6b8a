"""`manage.py generate`: runs of dialogues and plans queued from the command line, bad arguments named."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from generation.models import GenerationRun
from generation.services import runs as run_services
from tests import factories


@pytest.fixture
def queued(monkeypatch):
    ids = []
    monkeypatch.setattr(run_services, "run_queue", ids.append)
    return ids


def generate(*args) -> str:
    out = StringIO()
    call_command("generate", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_dialogue_run_over_two_sub_emotions_with_supervisor_options(taxonomy, queued):
    out = generate(
        "dialogue", "--sub-emotion", "anxiety.1", "--sub-emotion", "guilt.2", "--count", "4", "--turns", "4",
        "--threshold", "4.5", "--max-attempts", "3", "--no-classify", "--strategies", "--seed", "9",
    )  # fmt: skip
    run = GenerationRun.objects.get()
    assert f"Run {run.pk} queued: 4 dialogue(s)" in out
    assert queued == [run.pk]
    assert [t["sub_emotion"] for t in run.targets] == ["anxiety.1", "guilt.2"]
    assert run.parameters["threshold"] == 4.5 and run.parameters["max_attempts"] == 3
    assert run.parameters["classify"] is False and run.parameters["strategies"] is True
    assert (run.seed, run.parameters["turns"]) == (9, 4)


@pytest.mark.django_db(transaction=True)
def test_a_plan_run_for_two_dialogues(taxonomy, queued):
    first, second = factories.make_candidate(), factories.make_candidate()
    generate("plan", "--dialogue", str(first.pk), "--dialogue", str(second.pk))
    run = GenerationRun.objects.get()
    assert (run.kind, run.count, run.targets) == ("plan", 2, [{"dialogue": first.pk}, {"dialogue": second.pk}])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dialogue", "--sub-emotion", "anxiety.9"], "--sub-emotion 'anxiety.9': no such sub-emotion"),
        (["dialogue"], "sub_emotions: choose at least one"),
        (["dialogue", "--sub-emotion", "anxiety.1", "--temperature", "9"], "parameters.temperature"),
        (["dialogue", "--sub-emotion", "anxiety.1", "--count", "0"], "count: must be between 1 and 10000"),
        (["plan"], "dialogues: a plan run needs at least one dialogue"),
        (["plan", "--dialogue", "999999"], "--dialogue 999999: no dialogue with that id"),
        (["dialogue", "--scenario", "999999"], "--scenario 999999: no scenario with that id"),
        (["dialogue", "--sub-emotion", "anxiety.1", "--model", "nope"], "--model 'nope': no model spec"),
    ],
)
def test_bad_arguments_are_named_and_nothing_is_queued(taxonomy, queued, args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(".", r"\.")):
        generate(*args)
    assert not GenerationRun.objects.exists()
    assert queued == []


@pytest.mark.django_db(transaction=True)
def test_a_scenario_run(taxonomy, queued):
    generate("scenario", "--sub-emotion", "fear.2", "--count", "3")
    run = GenerationRun.objects.get()
    assert (run.kind, run.count, run.targets, run.prompt_version) == ("scenario", 3, [{"sub_emotion": "fear.2"}], "v1")
