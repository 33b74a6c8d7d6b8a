"""A curator starts a dialogue run and then a plan run from the browser and watches them finish: a real worker with
the bundled model, Chromium driving the run console."""

import re

import pytest
from playwright.sync_api import expect

from generation.models import Candidate, GenerationRun
from generation.services.taxonomy import taxonomy_load
from psyroom_admin import roles
from tests import factories
from tests.worker import celery_worker

from .conftest import login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def start_run(page, live_server_url: str, fill) -> GenerationRun:
    page.goto(f"{live_server_url}/runs/")
    page.click("text=New run")
    fill()
    page.click("#start-run")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    return GenerationRun.objects.get(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]))


def test_a_curator_runs_dialogues_and_plans_from_the_browser(live_server, page, tmp_path):
    taxonomy_load()
    curator = factories.make_user(roles.CURATOR, is_staff=True)
    login(page, live_server.url, curator.username, factories.PASSWORD)

    def dialogue_form():
        page.select_option("select[name=kind]", "dialogue")
        page.select_option("select[name=sub_emotions]", ["anxiety.1"])
        page.fill("input[name=count]", "1")
        page.fill("input[name=turns]", "2")
        page.fill("input[name=max_new_tokens]", "32")
        page.uncheck("input[name=supervisor]")

    with celery_worker(tmp_path / "worker.log"):
        run = start_run(page, live_server.url, dialogue_form)
        # The progress bar polls the server until the run has finished.
        expect(page.locator("#run-status")).to_have_text("Succeeded", timeout=300_000)
        expect(page.locator("#run-counts")).to_have_text("1 done, 0 failed of 1")
        dialogue = Candidate.objects.get(run=run)
        assert dialogue.ai_review["emotion"]["target"] == "anxiety.1"  # the classifier ran (on by default)

        def plan_form():
            page.select_option("select[name=kind]", "plan")
            page.fill("input[name=dialogues]", str(dialogue.pk))
            page.fill("input[name=max_new_tokens]", "48")

        plans = start_run(page, live_server.url, plan_form)
        expect(page.locator("#run-status")).to_have_text(re.compile("Succeeded|Failed"), timeout=300_000)
    plans.refresh_from_db()
    assert (plans.kind, plans.count, plans.done + plans.failed) == ("plan", 1, 1), (tmp_path / "worker.log").read_text()
    if plans.done:
        plan = Candidate.objects.get(run=plans)
        page.click(f"a[href='/candidates/{plan.pk}/']")
        expect(page.locator("section.plan h2")).to_have_text("Treatment plan")
    else:
        # The small model may write a plan section that does not parse: the failure is shown with its raw text.
        expect(page.locator("section.failures")).to_contain_text(plans.errors[0]["reason"])
