"""seed_demo: safe to run twice (the same passwords, one campaign of the demo dialogues only), and --reset."""

import io
import stat

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from annotations.management.commands.seed_demo import DEMO_CAMPAIGN, DEMO_DIALOGUES
from annotations.models import AuditEvent, Campaign, CampaignItem
from annotations.selectors import visibility
from generation.importers.dialogues import dialogues_import
from generation.models import Candidate
from generation.services.candidates import candidate_flag_risk
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def embedded(settings, tmp_path, taxonomy):
    settings.EMBEDDED = True
    settings.VAR_DIR = tmp_path
    return tmp_path


def _seed(*args) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def _printed_passwords(output: str) -> dict[str, str]:
    lines = output.split("Demo accounts (also in var/demo-accounts.txt):\n", 1)[1].splitlines()
    return {line.split()[0]: line.split()[1] for line in lines if line.strip()}


def _demo_ids() -> set[int]:
    return set(Candidate.objects.filter(source__file=DEMO_DIALOGUES.name).values_list("pk", flat=True))


def test_the_demo_counselor_sees_the_demo_campaign(embedded):
    _seed()
    campaign = Campaign.objects.get(name=DEMO_CAMPAIGN)
    assert campaign.blind and campaign.overlap == 2
    assert set(campaign.members.values_list("username", flat=True)) == {"counselor", "senior"}
    demo_counselor = get_user_model().objects.get(username="counselor")
    assert campaign.items.count() > 0
    assert visibility.candidate_list_visible_to(user=demo_counselor).count() == campaign.items.count()


def test_run_twice_keeps_passwords_and_the_campaign(embedded):
    first = _printed_passwords(_seed())
    file_first = (embedded / "demo-accounts.txt").read_text()
    items_first = set(Campaign.objects.get(name=DEMO_CAMPAIGN).items.values_list("candidate_id", flat=True))
    # Dialogues that arrive between two starts (an import, a run) are not demo items.
    others = [factories.make_candidate() for _ in range(3)]

    second = _printed_passwords(_seed())

    assert set(first) == {"counselor", "senior", "curator"}
    assert second == first
    assert (embedded / "demo-accounts.txt").read_text() == file_first
    User = get_user_model()
    for username, password in first.items():
        assert User.objects.get(username=username).check_password(password)
    assert Campaign.objects.filter(name=DEMO_CAMPAIGN).count() == 1
    items = set(Campaign.objects.get(name=DEMO_CAMPAIGN).items.values_list("candidate_id", flat=True))
    assert items == items_first == _demo_ids()
    assert not items & {c.pk for c in others}
    assert Candidate.objects.filter(source__file=DEMO_DIALOGUES.name).count() == len(items)  # imported once


def test_the_campaign_holds_demo_dialogues_only_never_flagged_ones(embedded):
    # What was in the database before the first start: other dialogues, and one demo dialogue flagged for risk.
    dialogues_import(path=DEMO_DIALOGUES, format="psyroom")
    flagged = Candidate.objects.filter(source__file=DEMO_DIALOGUES.name).order_by("pk").first()
    candidate_flag_risk(candidate=flagged, flags=[{"code": "self_harm", "detail": "mentions a plan"}])
    other = factories.make_candidate()

    _seed()

    items = set(Campaign.objects.get(name=DEMO_CAMPAIGN).items.values_list("candidate_id", flat=True))
    assert items == _demo_ids() - {flagged.pk}
    assert flagged.pk not in items and other.pk not in items


def test_a_changed_password_is_kept_and_not_printed(embedded):
    first = _printed_passwords(_seed())
    curator = get_user_model().objects.get(username="curator")
    curator.set_password("my own choice 42")
    curator.save()

    output = _seed()

    curator.refresh_from_db()
    assert curator.check_password("my own choice 42")
    assert "(unchanged: not the one printed before" in output
    assert first["curator"] not in output
    kept = (embedded / "demo-accounts.txt").read_text()
    assert "curator" not in kept and first["counselor"] in kept


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00\x00\xff\xfe", b"counselor\n", ("x " * 100_000).encode()],
    ids=["empty", "nul", "short", "huge"],
)
def test_a_damaged_credentials_file_changes_no_password(embedded, garbage):
    first = _printed_passwords(_seed())
    (embedded / "demo-accounts.txt").write_bytes(garbage)

    output = _seed()

    User = get_user_model()
    for username, password in first.items():
        assert User.objects.get(username=username).check_password(password), username
        assert password not in output
    assert output.count("(unchanged:") == 3


def test_the_credentials_file_is_private(embedded):
    _seed()
    mode = stat.S_IMODE((embedded / "demo-accounts.txt").stat().st_mode)
    assert mode == 0o600


# --reset flushes the database, which PostgreSQL refuses inside the test's own transaction.
@pytest.mark.django_db(transaction=True)
def test_reset_starts_afresh(embedded):
    first = _printed_passwords(_seed())
    other = factories.make_candidate()
    factories.make_user(username="someone-else")

    output = _seed("--reset")

    second = _printed_passwords(output)
    assert set(second) == set(first)
    assert all(second[name] != first[name] for name in first)
    User = get_user_model()
    for username, password in second.items():
        assert User.objects.get(username=username).check_password(password)
    assert not Candidate.objects.filter(pk=other.pk).exists()
    campaign = Campaign.objects.get(name=DEMO_CAMPAIGN)
    assert not get_user_model().objects.filter(username="someone-else").exists()
    # The campaign was made again, and its creation is the only one the (emptied) audit log holds.
    assert list(AuditEvent.objects.filter(action="campaign.create").values_list("data__campaign", flat=True)) == [
        campaign.pk
    ]
    assert set(campaign.items.values_list("candidate_id", flat=True)) == _demo_ids()


def test_refused_outside_embedded_mode(settings, tmp_path, taxonomy):
    settings.EMBEDDED = False
    settings.VAR_DIR = tmp_path
    with pytest.raises(CommandError, match="embedded mode"):
        _seed("--reset")
    assert not get_user_model().objects.filter(username__in=["counselor", "senior", "curator"]).exists()
    assert not Candidate.objects.exists()
    assert not (tmp_path / "demo-accounts.txt").exists()


# --reset flushes the database, which PostgreSQL refuses inside the test's own transaction.
@pytest.mark.django_db(transaction=True)
def test_a_campaign_filled_by_an_earlier_version_is_kept_and_said(embedded):
    _seed()
    campaign = Campaign.objects.get(name=DEMO_CAMPAIGN)
    stray = factories.make_candidate()
    CampaignItem.objects.create(campaign=campaign, candidate=stray)

    output = _seed()

    assert "also holds 1 dialogues that are not demo dialogues" in output
    assert campaign.items.filter(candidate=stray).exists()  # nothing deleted behind anyone's back
    assert "also holds" not in _seed("--reset")
