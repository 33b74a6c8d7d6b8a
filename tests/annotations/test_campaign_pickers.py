"""Creating a campaign with pickers (sub-emotions, scenarios, runs, sources) and the live count of what they select:
the count is the selector campaign_create makes its items of, for curators only, and hostile filters are a 400."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotations.management.commands.seed_demo import DEMO_DIALOGUES
from annotations.models import Campaign
from annotations.selectors.campaigns import campaign_selection
from annotations.services import campaigns
from generation.importers.dialogues import dialogues_import
from generation.models import Candidate, Scenario, SubEmotion
from tests import factories

pytestmark = pytest.mark.django_db

COUNT = reverse("annotations:campaign_selection_count")
CREATE = reverse("annotations:campaign_create")
DEMO_DATASET = "AI PsyRoom example"


@pytest.fixture
def world(taxonomy):
    scenario = Scenario.objects.create(
        sub_emotion=SubEmotion.objects.get(key="anxiety.1"), title="Finals week", description="Cannot sleep."
    )
    anxious = [factories.make_candidate(scenario=scenario) for _ in range(2)]
    other = factories.make_candidate(sub_emotion_key="anxiety.2")
    done = factories.make_candidate(status=Candidate.Status.APPROVED)
    dialogues_import(path=DEMO_DIALOGUES, format="psyroom")
    imported = list(Candidate.objects.filter(source__dataset=DEMO_DATASET))
    return {"scenario": scenario, "anxious": anxious, "other": other, "done": done, "imported": imported}


def _count(client, **params) -> tuple[int, str]:
    response = client.get(COUNT, {"kind": "dialogue", **params})
    return response.status_code, response.content.decode()


def _count_value(body: str) -> int:
    return int(body.split('id="selection-count-value">', 1)[1].split("<", 1)[0])


def test_the_form_offers_pickers_not_text_boxes(client, curator, world):
    client.force_login(curator)
    body = client.get(CREATE).content.decode()
    assert '<select name="sub_emotions"' in body and "multiple" in body.split('<select name="sub_emotions"')[1][:200]
    assert '<optgroup label="Anxiety">' in body and '<option value="anxiety.1">anxiety.1 · ' in body
    assert f'<option value="{world["scenario"].pk}">anxiety.1 · Finals week (#{world["scenario"].pk})</option>' in body
    assert f'<option value="{DEMO_DATASET}">{DEMO_DATASET}</option>' in body
    assert 'hx-get="' + COUNT + '"' in body
    assert '<input type="text" name="sub_emotions"' not in body


def test_the_count_is_what_the_campaign_then_holds(client, curator, counselor, world):
    client.force_login(curator)
    cases = [
        (
            {"sub_emotions": ["anxiety.1"]},
            2 + sum(c.sub_emotion_id == world["anxious"][0].sub_emotion_id for c in world["imported"]),
        ),
        ({"scenarios": [str(world["scenario"].pk)]}, 2),
        ({"sources": [DEMO_DATASET]}, len(world["imported"])),
        ({"status": "approved"}, 1),
    ]
    for index, (params, expected) in enumerate(cases):
        status, body = _count(client, **params)
        assert status == 200, body
        assert _count_value(body) == expected, params
        form = {"name": f"C{index}", "kind": "dialogue", "overlap": 1, "members": [counselor.pk], "lease_minutes": 30}
        response = client.post(CREATE, {**form, "min_mean": "3", **params})
        assert response.status_code == 302, response.content.decode()[:1500]
        assert Campaign.objects.get(name=f"C{index}").items.count() == expected, params


def test_no_filter_counts_what_waits_for_review(client, curator, world):
    client.force_login(curator)
    status, body = _count(client)
    waiting = Candidate.objects.filter(kind="dialogue").exclude(status=Candidate.Status.APPROVED).count()
    assert status == 200 and _count_value(body) == waiting
    assert world["done"].pk not in campaign_selection(kind="dialogue", filters={}).values_list("pk", flat=True)


def test_only_curators_count(client, counselor, senior, world):
    for user in (counselor, senior):
        client.force_login(user)
        assert client.get(COUNT, {"kind": "dialogue"}).status_code == 403
    client.logout()
    assert client.get(COUNT).status_code == 302
    assert client.post(COUNT).status_code in (302, 405)


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"sub_emotions": ["\x00"]}, "NUL character"),  # refused before the view, naming the field
        ({"sub_emotions": ["nope.9"]}, "nope.9 is not one of the available choices"),
        ({"sub_emotions": ["anxiety.1"] * 5 + ["x" * 100_000]}, "is not one of the available choices"),
        ({"scenarios": ["abc"]}, "abc is not one of the available choices"),
        ({"run": "99999999999999999999"}, "is not one of the available choices"),
        ({"sources": ["<script>alert(1)</script>"]}, "&lt;script&gt;"),
        ({"kind": "evil"}, "evil is not one of the available choices"),
        ({"status": "deleted"}, "deleted is not one of the available choices"),
    ],
)
def test_hostile_filters_are_a_400_that_says_what(client, curator, world, params, said):
    client.force_login(curator)
    before = Campaign.objects.count()
    response = client.get(COUNT, {"kind": "dialogue", **params})
    assert response.status_code == 400
    body = response.content.decode()
    assert said in body and "<script>alert" not in body
    assert Campaign.objects.count() == before


def test_the_service_checks_sources(curator, world):
    with pytest.raises(ValidationError, match="sources: no candidate was imported from Elsewhere"):
        campaigns.campaign_filters_validate(filters={"sources": ["Elsewhere"]})
    for bad in ("CPsyCounD", [1], [""], ["x" * 201]):
        with pytest.raises(ValidationError, match="sources: a list of dataset names"):
            campaigns.campaign_filters_validate(filters={"sources": bad})
    campaign = campaigns.campaign_create(
        creator=curator, name="Imports", kind="dialogue", overlap=1, members=[], filters={"sources": [DEMO_DATASET]}
    )
    assert set(campaign.items.values_list("candidate_id", flat=True)) == {c.pk for c in world["imported"]}
