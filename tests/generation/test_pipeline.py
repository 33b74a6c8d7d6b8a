import pytest
from django.core.exceptions import ValidationError

from generation import runwatch, selectors
from generation.backends.base import SamplingParams
from generation.models import Candidate, GenerationRun, Revision
from generation.pipelines.dialogue import generate_dialogues
from generation.runwatch import RunClosed
from generation.services import runs as run_services
from generation.services.candidates import candidate_build
from generation.services.modelspecs import modelspec_get_default
from generation.services.runs import run_cancel, run_claim, run_create, run_execute, run_record_chunk
from tests import factories

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
    monkeypatch.setattr(run_services, "run_queue", ids.append)
    return ids


@pytest.fixture
def run(taxonomy, queued, django_capture_on_commit_callbacks):
    spec = modelspec_get_default()
    spec.batch_size = 2
    spec.save()
    with django_capture_on_commit_callbacks(execute=True):
        run = run_create(
            kind="dialogue", sub_emotion=selectors.sub_emotion_get(key="anxiety.1"), count=5, turns=4, seed=7
        )
    assert queued == [run.pk]
    return run


def test_run_execute_saves_candidates_with_lineage_and_revision_zero(run):
    backend = ScriptedBackend()
    run_execute(run_id=run.pk, backend=backend)
    run.refresh_from_db()
    assert (run.status, run.done, run.failed) == ("succeeded", 5, 0)
    # chunks of 2, 2, 1: four turns, two supervisor calls (the scores, then their reasons with the feedback) and
    # one classifier call each (the bundled model's run does not ask the risk agent unless told: risk_agent_default)
    assert len(backend.calls) == 3 * (4 + 2 + 1)
    candidates = list(run.candidates.order_by("run_index"))
    assert [c.run_index for c in candidates] == [0, 1, 2, 3, 4]
    assert candidates[0].lineage["model"] == "smollm2-135m-instruct"
    assert candidates[0].lineage["prompt_version"] == "dialogue/v1"
    assert candidates[0].lineage["seed"] == 7
    assert Revision.objects.filter(candidate__run=run, number=0).count() == 5


def test_run_execute_again_skips_what_is_saved(run):
    run_execute(run_id=run.pk, backend=ScriptedBackend())
    # As if the task were delivered again after its worker died (no heartbeat since).
    GenerationRun.objects.filter(pk=run.pk).update(status="running", heartbeat_at=None)
    backend = ScriptedBackend()
    run_execute(run_id=run.pk, backend=backend)
    assert backend.calls == []
    assert Candidate.objects.filter(run=run).count() == 5


def test_a_failed_item_keeps_its_raw_text_and_the_run_goes_on(run):
    def reply(prompt, call):
        return "" if speaker(prompt) == "counselor" and call <= 4 else default_reply(prompt, call)

    run_execute(run_id=run.pk, backend=ScriptedBackend(reply))
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert run.failed == 2 and run.done == 3
    assert {e["reason"] for e in run.errors} == {"empty_turn"}
    assert all(e["raw"] == "" for e in run.errors)


def test_a_cancelled_run_generates_nothing_more(run):
    run_cancel(run=run)
    backend = ScriptedBackend()
    assert run_execute(run_id=run.pk, backend=backend) is None
    assert backend.calls == []
    assert not Candidate.objects.filter(run=run).exists()
    with pytest.raises(ValidationError, match="already finished"):
        run_cancel(run=run)


def test_cancelling_a_running_run_stops_it_at_the_next_model_call_and_saves_nothing(run, monkeypatch):
    """The run has five items in chunks of two: cancelled during the second model call of the first chunk, it makes
    no third call and saves nothing, not even the chunk in flight."""
    monkeypatch.setattr(runwatch, "CHECK_INTERVAL_S", 0)  # read the status back at every call

    def reply(prompt, call):
        if call == 2 and GenerationRun.objects.filter(pk=run.pk, status="running").exists():
            run_cancel(run=GenerationRun.objects.get(pk=run.pk))
        return default_reply(prompt, call)

    backend = ScriptedBackend(reply)
    run_execute(run_id=run.pk, backend=backend)
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert len(backend.calls) == 2
    assert (run.done, run.failed) == (0, 0)
    assert not Candidate.objects.filter(run=run).exists()
    # A later delivery of the same task does nothing.
    backend = ScriptedBackend()
    assert run_execute(run_id=run.pk, backend=backend) is None
    assert backend.calls == []


def test_a_cancel_between_two_status_reads_still_saves_nothing_of_the_chunk_in_flight(run):
    """With the status read at most once a second, the chunk goes on to its end; saving it is refused under the
    run's lock (run_record_chunk)."""

    def reply(prompt, call):
        if call == 2 and GenerationRun.objects.filter(pk=run.pk, status="running").exists():
            run_cancel(run=GenerationRun.objects.get(pk=run.pk))
        return default_reply(prompt, call)

    backend = ScriptedBackend(reply)
    run_execute(run_id=run.pk, backend=backend)
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert len(backend.calls) <= 7  # at most the first chunk: four turns, two supervisor calls, the classifier
    assert (run.done, run.failed, run.prompt_tokens) == (0, 0, 0)
    assert not Candidate.objects.filter(run=run).exists()


def test_run_record_chunk_refuses_a_cancelled_run_and_writes_nothing(run):
    run_claim(run_id=run.pk)
    run_cancel(run=run)
    candidate = candidate_build(
        kind="dialogue", content=factories.dialogue_content(), sub_emotion=run.sub_emotion, run=run, run_index=0
    )
    with pytest.raises(RunClosed, match="cancelled"):
        run_record_chunk(
            run=run,
            candidates=[candidate],
            failures=[{"index": 1, "reason": "empty_turn", "raw": ""}],
            prompt_tokens=10,
            completion_tokens=5,
        )
    run.refresh_from_db()
    assert (run.status, run.done, run.failed, run.errors, run.prompt_tokens) == ("cancelled", 0, 0, [], 0)
    assert not Candidate.objects.filter(run=run).exists()


def test_progress_moves_with_every_turn_of_the_chunk_in_flight(run, monkeypatch):
    """What the run shows while its first chunk is still being written: the turn, the model calls, the tokens."""
    monkeypatch.setattr(runwatch, "CHECK_INTERVAL_S", 0)
    seen = {}

    def reply(prompt, call):
        if call <= 4 and call not in seen:  # once per call (a call has a prompt per dialogue)
            row = GenerationRun.objects.get(pk=run.pk)
            seen[call] = (row.chunk_progress["stage"], row.chunk_progress["calls"],
                          row.chunk_progress["completion_tokens"], row.done)  # fmt: skip
        return default_reply(prompt, call)

    run_execute(run_id=run.pk, backend=ScriptedBackend(reply))
    # Two dialogues per call, five completion tokens each; nothing saved yet.
    assert list(seen.values()) == [("turn 1 of 4", 0, 0, 0), ("turn 2 of 4", 1, 10, 0), ("turn 3 of 4", 2, 20, 0),
                                   ("turn 4 of 4", 3, 30, 0)]  # fmt: skip
    run.refresh_from_db()
    # Saved chunks carry their tokens in the totals; nothing is in flight once the run has finished.
    # Five dialogues of sixteen prompts (four turns; five scores, their five reasons and the feedback from the
    # supervisor; the classifier), five tokens each.
    assert (run.status, run.chunk_progress, run.completion_tokens) == ("succeeded", {}, 5 * 16 * 5)
    assert run.heartbeat_at is not None


def test_a_backend_error_fails_the_run_with_its_message(run):
    def reply(prompt, call):
        raise RuntimeError("CUDA out of memory")

    run_execute(run_id=run.pk, backend=ScriptedBackend(reply))
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
        run_create(**args)
    assert not GenerationRun.objects.exists()


def test_a_supervision_with_any_score_unread_has_no_mean_and_regenerates_nothing(run):
    """One score of five unread: the supervision failed. It keeps the four scores and the raw answer, but no mean
    stands for the dialogue, none is below the threshold, and the candidate's supervisor score is None."""

    def reply(prompt, call):
        if speaker(prompt) == "supervisor_score" and "Empathy" in prompt[-1]["content"]:
            return "I would rather not say."
        return default_reply(prompt, call)

    run_execute(run_id=run.pk, backend=ScriptedBackend(reply))
    run.refresh_from_db()
    assert (run.status, run.done) == ("succeeded", 5)
    assert run.stats["supervision_failed"] == 5 and "regenerated" not in run.stats
    for candidate in run.candidates.all():
        supervisor = candidate.ai_review["supervisor"]
        assert supervisor["score"] is None
        [attempt] = supervisor["attempts"]
        assert attempt["mean"] is None and attempt["error"] == "scores_unread"
        assert list(attempt["unparsed"].values()) == ["I would rather not say."]
        assert len(attempt["scores"]) == 4 and all(s["score"] == 4 for s in attempt["scores"].values())
