"""A Chinese dialogue run in a real Celery worker with the bundled model: the pipeline, the language and the lineage.

The bundled model is tiny and its Chinese may be poor; what is asserted is that a run asked for in Chinese is
executed with the Chinese prompts and scenario and writes Chinese-labelled candidates, not the quality of the text.
"""

import time

import pytest

from generation.models import Candidate, GenerationRun, Scenario
from generation.services.runs import run_create
from generation.services.scenarios import scenarios_load
from tests.worker import celery_worker

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_worker_writes_a_chinese_dialogue_from_a_chinese_scenario(taxonomy, tmp_path):
    scenarios_load()
    scenario = Scenario.objects.filter(sub_emotion__key="anxiety.1", language="zh").order_by("pk").first()
    assert scenario is not None
    log = tmp_path / "worker.log"
    with celery_worker(log):
        run = run_create(
            kind="dialogue",
            scenarios=[scenario],
            count=1,
            turns=2,
            seed=0,
            language="zh",
            # Short: one dialogue of two turns, no supervisor and no classifier calls.
            parameters={"supervisor": False, "classify": False, "max_new_tokens": 32},
        )
        deadline = time.monotonic() + 900
        while not GenerationRun.objects.get(pk=run.pk).is_finished:
            assert time.monotonic() < deadline, "the run did not finish in 900 s\n" + log.read_text()
            time.sleep(0.5)
    run.refresh_from_db()
    assert (run.language, run.prompt_version) == ("zh", "v1-zh")
    assert (run.status, run.done, run.failed) == ("succeeded", 1, 0), (run.errors, log.read_text()[-3000:])
    candidate = Candidate.objects.get(run=run)
    assert candidate.language == "zh"
    assert candidate.scenario_id == scenario.pk
    assert candidate.lineage["language"] == "zh"
    assert candidate.lineage["prompt_version"] == "dialogue/v1-zh"
    assert candidate.lineage["model"] == run.model_spec.name
    turns = candidate.content["turns"]
    assert [t["role"] for t in turns] == ["client", "counselor"]
    assert all(len(t["text"].strip()) >= 2 for t in turns)
    # Revision 0 is the model's text, as for every generated candidate.
    assert candidate.revisions.get(number=0).content == candidate.content
