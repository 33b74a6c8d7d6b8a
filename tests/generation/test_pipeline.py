import pytest
from django.core.exceptions import ValidationError

from generation import selectors, services
from generation.backends import SamplingParams
from generation.models import Candidate, GenerationRun, Revision
from generation.pipelines.dialogue import generate_dialogues

from .scripted import ScriptedBackend, default_reply, speaker

pytestmark = pytest.mark.django_db


def _generate(backend, n=3, turns=4):
    return generate_dialogues(
        backend,
        indexes=list(range(n)),
        turns=turns,
        emotion="Self-imposed pressure",
        category="Anxiety",
        situation="",
        sampling=SamplingParams(),
    )


def test_every_turn_of_a_batch_is_one_model_call():
    backend = ScriptedBackend()
    result = _generate(backend, n=5, turns=6)
    assert len(backend.calls) == 6
    assert all(len(call) == 5 for call in backend.calls)
    assert [t["role"] for t in result.dialogues[0].turns] == ["client", "counselor"] * 3
    assert result.completion_tokens == 5 * 6 * 5


def test_a_bad_turn_is_retried_once_then_only_that_dialogue_fails():
    openings = iter(["I am the first.", "I am the second.", "I am the third."])

    def scripted(prompt, call):
        if speaker(prompt) == "client" and len(prompt) == 2:  # the opening turn: tell the dialogues apart
            return next(openings)
        if speaker(prompt) == "counselor" and prompt[-1]["content"] == "I am the second.":
            return "   "  # the second dialogue's counselor never says anything
        return default_reply(prompt, call)

    backend = ScriptedBackend(scripted)
    result = _generate(backend, n=3, turns=4)
    failed = [d for d in result.dialogues if d.failure]
    assert [d.index for d in failed] == [1]
    assert failed[0].failure == {"index": 1, "turn": 1, "reason": "empty_turn", "raw": "   "}
    assert all(len(d.turns) == 4 for d in result.dialogues if not d.failure)
    # turn 0 (3 prompts), turn 1 (3) + its retry (1), then turns 2 and 3 without the failed dialogue.
    assert [len(c) for c in backend.calls] == [3, 3, 1, 2, 2]


@pytest.fixture
def queued(monkeypatch):
    """Run ids queued for a worker; unit tests run the service themselves."""
    ids = []
    monkeypatch.setattr(services, "_queue_run", ids.append)
    return ids


@pytest.fixture
def run(taxonomy, queued, django_capture_on_commit_callbacks):
    spec = services.modelspec_get_default()
    spec.batch_size = 2
    spec.save()
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_create(
            kind="dialogue", sub_emotion=selectors.sub_emotion_get(key="anxiety.1"), count=5, turns=4, seed=7
        )
    assert queued == [run.pk]
    return run


def test_run_execute_saves_candidates_with_lineage_and_revision_zero(run):
    backend = ScriptedBackend()
    services.run_execute(run_id=run.pk, backend=backend)
    run.refresh_from_db()
    assert (run.status, run.done, run.failed) == ("succeeded", 5, 0)
    # chunks of 2, 2, 1: four turns, one supervisor call and one classifier call each (the bundled model's run does
    # not ask the risk agent unless told: services.risk_agent_default)
    assert len(backend.calls) == 3 * (4 + 1 + 1)
    candidates = list(run.candidates.order_by("run_index"))
    assert [c.run_index for c in candidates] == [0, 1, 2, 3, 4]
    assert candidates[0].lineage["model"] == "smollm2-135m-instruct"
    assert candidates[0].lineage["prompt_version"] == "dialogue/v1"
    assert candidates[0].lineage["seed"] == 7
    assert Revision.objects.filter(candidate__run=run, number=0).count() == 5


def test_run_execute_again_skips_what_is_saved(run):
    services.run_execute(run_id=run.pk, backend=ScriptedBackend())
    GenerationRun.objects.filter(pk=run.pk).update(status="running")  # as if the task were delivered again
    backend = ScriptedBackend()
    services.run_execute(run_id=run.pk, backend=backend)
    assert backend.calls == []
    assert Candidate.objects.filter(run=run).count() == 5


def test_a_failed_item_keeps_its_raw_text_and_the_run_goes_on(run):
    def reply(prompt, call):
        return "" if speaker(prompt) == "counselor" and call <= 4 else default_reply(prompt, call)

    services.run_execute(run_id=run.pk, backend=ScriptedBackend(reply))
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert run.failed == 2 and run.done == 3
    assert {e["reason"] for e in run.errors} == {"empty_turn"}
    assert all(e["raw"] == "" for e in run.errors)


def test_a_cancelled_run_generates_nothing_more(run):
    services.run_cancel(run=run)
    backend = ScriptedBackend()
    assert services.run_execute(run_id=run.pk, backend=backend) is None
    assert backend.calls == []
    assert not Candidate.objects.filter(run=run).exists()
    with pytest.raises(ValidationError, match="already finished"):
        services.run_cancel(run=run)


def test_cancelling_a_running_run_stops_it_after_the_chunk_in_flight(run):
    """The run has five items in chunks of two: cancelled during the first chunk, it keeps that chunk only."""

    def reply(prompt, call):
        if call == 1 and GenerationRun.objects.filter(pk=run.pk, status="running").exists():
            services.run_cancel(run=GenerationRun.objects.get(pk=run.pk))
        return default_reply(prompt, call)

    services.run_execute(run_id=run.pk, backend=ScriptedBackend(reply))
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert run.done == 2
    assert sorted(Candidate.objects.filter(run=run).values_list("run_index", flat=True)) == [0, 1]
    # A later delivery of the same task does nothing.
    backend = ScriptedBackend()
    assert services.run_execute(run_id=run.pk, backend=backend) is None
    assert backend.calls == []


def test_a_backend_error_fails_the_run_with_its_message(run):
    def reply(prompt, call):
        raise RuntimeError("CUDA out of memory")

    services.run_execute(run_id=run.pk, backend=ScriptedBackend(reply))
    run.refresh_from_db()
    assert run.status == "failed"
    assert "CUDA out of memory" in run.error


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, "count"),
        ({"turns": 1}, "turns"),
        ({"parameters": {"temperature": 9}}, "temperature"),
        ({"parameters": {"max_new_tokens": "lots"}}, "max_new_tokens"),
        ({"parameters": {"beam": 2}}, "unknown parameter"),
    ],
)
def test_run_create_refuses_bad_requests_and_writes_nothing(taxonomy, kwargs, message):
    args = {"kind": "dialogue", "sub_emotion": selectors.sub_emotion_get(key="anxiety.1"), "count": 1, **kwargs}
    with pytest.raises(ValidationError, match=message):
        services.run_create(**args)
    assert not GenerationRun.objects.exists()
