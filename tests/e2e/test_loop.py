"""The whole loop, for real: a Celery worker generates with the bundled model, a counselor edits and approves the
dialogue in Chromium, and the SFT export holds the edited text and not the model's."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from annotations.models import AuditEvent, Review
from annotations.rubrics import DIALOGUE_RUBRIC
from annotations.services.policy import review_policy_set
from generation.models import Candidate, GenerationRun
from generation.services.taxonomy import taxonomy_load
from psyroom_admin import roles
from tests import factories
from tests.annotations.scoping import put_in_campaign
from tests.worker import celery_worker

from .conftest import login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

EDITED = "It sounds like the pressure you put on yourself is exhausting. What would you say to a friend in your place?"


def test_generate_review_edit_approve_export(live_server, page, tmp_path):
    taxonomy_load()
    counselor = factories.counselor()

    with celery_worker(tmp_path / "worker.log"):
        out = StringIO()
        call_command(
            "generate", "dialogue", "--sub-emotion", "anxiety.1", "--count", "1", "--turns", "4", "--seed", "3",
            "--wait", "--timeout", "900", stdout=out,
        )  # fmt: skip
    assert "succeeded" in out.getvalue(), out.getvalue() + (tmp_path / "worker.log").read_text()

    run = GenerationRun.objects.get()
    assert (run.status, run.done, run.failed) == (GenerationRun.Status.SUCCEEDED, 1, 0)
    assert run.task_id and run.completion_tokens > 0
    candidate = Candidate.objects.get(run=run)
    assert [t["role"] for t in candidate.content["turns"]] == ["client", "counselor", "client", "counselor"]
    put_in_campaign([counselor], [candidate])  # a counselor sees only their campaigns' candidates
    assert candidate.lineage["model"] == "smollm2-135m-instruct"
    assert candidate.lineage["prompt_version"] == "dialogue/v1"
    assert not candidate.has_open_risk, list(candidate.flags.values("code", "detail"))
    # This team lets one counselor approve outside campaigns (the default asks two, or one senior clinician).
    review_policy_set(
        user=factories.make_user(roles.CURATOR), min_senior_approvals=1, min_counselor_approvals=1, min_mean=3.0
    )
    original = candidate.content["turns"][1]["text"]

    login(page, live_server.url, counselor.username, factories.PASSWORD)
    page.goto(f"{live_server.url}/")
    page.click(f"a.candidate-link[href='/candidates/{candidate.pk}/']")
    turn = page.locator(".turn[data-index='1']")
    turn.locator("button.edit-turn").click()
    turn.locator("textarea[name=text]").fill(EDITED)
    turn.locator("button.save-turn").click()
    expect(page.locator(".turn[data-index='1'] .turn-text")).to_contain_text(EDITED)
    for criterion in DIALOGUE_RUBRIC["criteria"]:
        page.check(f"input[name=score_{criterion['key']}][value='4']")
    page.check("input[name=decision][value=approve]")
    page.fill("textarea[name=comment]", "Good after the edit of turn 2.")
    page.click("#submit-review")
    expect(page.locator("body")).to_contain_text("approved")

    candidate.refresh_from_db()
    assert candidate.status == Candidate.Status.APPROVED
    assert Review.objects.get(candidate=candidate).revision.number == 1
    assert AuditEvent.objects.filter(candidate=candidate, action="candidate.edit").exists()

    export = tmp_path / "sft.jsonl"
    call_command("export_sft", "--out", str(export), stdout=StringIO())
    lines = export.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["messages"][2] == {"role": "assistant", "content": EDITED}
    assert original not in lines[0]
    assert record["metadata"]["candidate_id"] == candidate.pk
    assert record["metadata"]["revision"] == 1
    assert record["metadata"]["reviewers"] == [counselor.pk]
