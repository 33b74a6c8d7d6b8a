"""The activity page: the audit trail for curators and admins, with run starts in it; nobody else reads it."""

import datetime
import json

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from annotations.models import AuditEvent
from annotations.selectors.activity import activity_list
from annotations.services.audit import audit_record
from generation import selectors as gen_selectors
from generation.services import runs as run_services
from generation.services.runs import run_create
from psyroom_admin import roles
from tests import factories

pytestmark = pytest.mark.django_db
URL = reverse("annotations:activity")


def _actions(response) -> list[str]:
    """The actions a page lists, without the role changes that making the test's users wrote."""
    return [e.action for e in response.context["page"] if not e.action.startswith("permission.")]


@pytest.fixture
def events(curator, counselor, candidate):
    audit_record(actor=counselor, action="review.submit", candidate=candidate, data={"decision": "approve"})
    audit_record(actor=curator, action="export.sft", data={"count": 3})
    audit_record(actor=None, action="import.dialogues", data={"format": "messages", "created": 2})
    return AuditEvent.objects.order_by("id")


def test_a_run_start_is_audited_with_who_started_it(taxonomy, curator, monkeypatch):
    monkeypatch.setattr(run_services, "run_queue", lambda run_id: None)
    run = run_create(
        kind="dialogue", sub_emotion=gen_selectors.sub_emotion_get(key="anxiety.1"), count=2, created_by=curator
    )
    [event] = AuditEvent.objects.filter(action="run.create")
    assert event.actor == curator
    assert event.data == {"run": run.pk, "kind": "dialogue", "count": 2, "model_spec": run.model_spec.name,
                          "sub_emotion": "anxiety.1", "regeneration": False}  # fmt: skip


def test_a_refused_run_start_writes_no_event(taxonomy, counselor):
    with pytest.raises(PermissionDenied):
        run_create(kind="dialogue", sub_emotion=gen_selectors.sub_emotion_get(key="anxiety.1"), count=2,
                   created_by=counselor)  # fmt: skip
    assert not AuditEvent.objects.filter(action="run.create").exists()


@pytest.mark.parametrize("role", [roles.CURATOR, roles.ADMIN])
def test_curators_and_admins_read_every_event_newest_first(client, events, role):
    client.force_login(factories.make_user(role))
    response = client.get(URL)
    assert response.status_code == 200
    assert _actions(response) == ["import.dialogues", "export.sft", "review.submit"]
    body = response.content.decode()
    assert "review.submit" in body and "import.dialogues" in body


@pytest.mark.parametrize("role", [roles.COUNSELOR, roles.SENIOR_CLINICIAN, None])
def test_nobody_else_reads_the_activity_log(client, events, role):
    user = factories.make_user(role)
    client.force_login(user)
    assert client.get(URL).status_code == 403
    with pytest.raises(PermissionDenied):
        activity_list(user=user)


def test_anonymous_is_sent_to_sign_in(client, events):
    response = client.get(URL)
    assert response.status_code == 302 and "login" in response["Location"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"kind": "reviews"}, ["review.submit"]),
        ({"kind": "exports"}, ["export.sft"]),
        ({"kind": "imports"}, ["import.dialogues"]),
        ({"actor": "-"}, ["import.dialogues"]),
        ({"kind": "runs"}, []),
    ],
)
def test_filters_by_kind_and_person(client, curator, events, query, expected):
    client.force_login(curator)
    response = client.get(URL, query)
    assert response.status_code == 200
    assert _actions(response) == expected


def test_filters_by_person_and_by_day(client, curator, counselor, events):
    client.force_login(curator)
    response = client.get(URL, {"actor": counselor.username})
    assert _actions(response) == ["review.submit"]
    today = datetime.date.today()
    response = client.get(URL, {"since": today.isoformat(), "until": today.isoformat()})
    assert len(_actions(response)) == 3
    response = client.get(URL, {"until": (today - datetime.timedelta(days=1)).isoformat()})
    assert len(response.context["page"]) == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"kind": "secrets"}, "kind"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-12-03", "until": "2026-12-01"}, "until"),
        ({"actor": "x" * 151}, "actor"),
    ],
)
def test_bad_filters_are_a_400_naming_the_field_and_show_nothing(client, curator, events, query, field):
    client.force_login(curator)
    response = client.get(URL, query)
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert len(response.context["page"]) == 0


def test_a_nul_byte_in_a_filter_is_a_400_that_lists_nothing(client, curator, events):
    client.force_login(curator)
    response = client.get(URL, {"actor": "a\x00b"})
    assert response.status_code == 400 and b"activity-row" not in response.content


def test_a_page_number_out_of_range_shows_the_last_page(client, curator, events):
    client.force_login(curator)
    response = client.get(URL, {"page": "999999999999999999999"})
    assert response.status_code == 200 and len(_actions(response)) == 3


def test_the_selector_refuses_an_unknown_kind(curator):
    with pytest.raises(ValueError, match="kind"):
        activity_list(user=curator, kind="everything")


def _messages_file(tmp_path, lines):
    path = tmp_path / "dialogues.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _dialogue(n):
    messages = [
        {"role": "user", "content": f"I cannot sleep, night {n}."},
        {"role": "assistant", "content": "What keeps you awake?"},
    ]
    return json.dumps({"messages": messages})


def test_an_import_from_the_command_line_is_audited_with_its_counts(taxonomy, tmp_path):
    from django.core.management import call_command

    path = _messages_file(tmp_path, [_dialogue(1), _dialogue(2), _dialogue(1)])
    call_command("import_dialogues", str(path), "--format", "messages", stdout=None)
    [event] = AuditEvent.objects.filter(action="import.dialogues")
    assert event.actor is None
    assert event.data == {"path": "dialogues.jsonl", "format": "messages", "created": 2, "duplicates": 1, "files": 1}
    assert [e.action for e in activity_list(user=factories.make_user(roles.CURATOR), kind="imports")] == [
        "import.dialogues"
    ]


def test_a_refused_import_writes_no_event(taxonomy, tmp_path):
    from django.core.management import CommandError, call_command

    path = _messages_file(tmp_path, [_dialogue(1), "{not json"])
    with pytest.raises(CommandError):
        call_command("import_dialogues", str(path), "--format", "messages")
    assert not AuditEvent.objects.filter(action__startswith="import.").exists()
