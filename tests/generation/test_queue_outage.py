"""A broker outage: a run is kept only with its task. The API answers 503, the pages say so, nothing is left queued."""

import time

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotations.models import AuditEvent
from annotations.services import campaigns, queue
from generation.models import GenerationRun
from generation.services import runs as run_services
from generation.tasks import generate_run
from psyroom_admin.celery import app
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker_down(monkeypatch):
    """The app's broker is a Redis port where nothing listens (a real connection attempt, refused)."""
    before = (app.conf.broker_url, app.conf.broker_transport_options)
    # Celery reads CELERY_BROKER_URL from the environment before its configuration (CI sets it).
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    app.conf.broker_transport_options = {}
    app._pool = None
    app.amqp._producer_pool = None
    yield
    app.conf.broker_url, app.conf.broker_transport_options = before
    app._pool = None
    app.amqp._producer_pool = None


def test_the_api_answers_503_and_keeps_no_run(broker_down, curator, taxonomy):
    api = APIClient()
    api.force_authenticate(curator)
    started = time.monotonic()
    response = api.post(
        reverse("api:run-list"), {"kind": "dialogue", "sub_emotions": ["anxiety.1"], "count": 1}, format="json"
    )
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "60"
    body = response.json()
    assert body["code"] == "queue_unavailable"
    assert "the run was not started and nothing was saved" in body["detail"]
    assert not GenerationRun.objects.exists()
    assert time.monotonic() - started < 30


def test_the_run_form_says_so_and_keeps_no_run(broker_down, client, curator, taxonomy):
    client.force_login(curator)
    data = {"kind": "dialogue", "sub_emotions": ["anxiety.1"], "count": "1", "turns": "4", "seed": "0"}
    response = client.post(reverse("generation:run-new"), data)
    assert response.status_code == 503
    assert "The task queue is unreachable: the run was not started" in response.content.decode()
    assert not GenerationRun.objects.exists()


def test_a_regeneration_says_so_and_keeps_no_run(broker_down, client, curator, counselor, taxonomy):
    candidate = factories.make_candidate()
    campaign = campaigns.campaign_create(
        creator=curator, name="k1", kind="dialogue", overlap=1, members=[counselor], candidate_ids=[candidate.pk]
    )
    queue.queue_claim_next(campaign=campaign, counselor=counselor)
    client.force_login(counselor)
    url = reverse("annotations:campaign_regenerate", args=[campaign.pk, candidate.pk])
    response = client.post(url, {"critique": "Reflect her fear before asking questions."}, follow=True)
    assert "The task queue is unreachable" in response.content.decode()
    assert not GenerationRun.objects.exists()
    assert not AuditEvent.objects.filter(action="candidate.regenerate").exists()


def test_a_run_task_is_sent_by_the_name_of_the_task_and_routed_to_the_generation_queue():
    # services.runs sends the task by name (it does not import the task module that calls it).
    assert generate_run.name == run_services.GENERATE_TASK
    assert app.amqp.router.route({}, run_services.GENERATE_TASK, (1,), {})["queue"].name == "generation"
