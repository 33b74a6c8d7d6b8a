import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from generation import selectors as gen_selectors
from generation.importers.dialogues import dialogues_import
from psyroom_admin import roles

DEMO_DIALOGUES = Path(settings.BASE_DIR) / "generation" / "data" / "demo" / "psyroom-example-sample.json"
DEMO_ACCOUNTS = [
    ("counselor", roles.COUNSELOR, False),
    ("senior", roles.SENIOR_CLINICIAN, False),
    ("curator", roles.CURATOR, True),
]
DEMO_CAMPAIGN = "Demo campaign"


def credentials_path() -> Path:
    return Path(settings.VAR_DIR) / "demo-accounts.txt"


def _read_credentials() -> dict[str, str]:
    """The passwords printed before, by username (``var/demo-accounts.txt``: one ``username password (role)`` a
    line); an unreadable or missing file is no passwords."""
    try:
        text = credentials_path().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    known = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            known[parts[0]] = parts[1]
    return known


def _write_credentials(lines: list[str]) -> None:
    # Created readable by its owner only: the file never exists with wider permissions, even for a moment.
    path = credentials_path()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    path.chmod(0o600)


class Command(BaseCommand):
    help = (
        "Embedded mode only: demo dialogues, demo accounts (a counselor, a senior clinician, a curator) and a demo "
        "campaign. Safe to run again: the accounts keep their passwords and the campaign is made once. --reset "
        "empties the embedded database first."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset",
            action="store_true",
            help="delete everything in the embedded database (flush), then seed it afresh with new passwords",
        )

    def handle(self, *args, **options):
        if not settings.EMBEDDED:
            raise CommandError("seed_demo creates accounts with printed passwords: embedded mode (SQLite) only.")
        if options["reset"]:
            self._reset()
        roles.roles_ensure()
        result = dialogues_import(path=DEMO_DIALOGUES, format="psyroom")
        self.stdout.write(f"Demo dialogues: {result.created} imported ({result.duplicates} already there).")
        User = get_user_model()
        known = _read_credentials()
        lines = []
        for username, role, staff in DEMO_ACCOUNTS:
            user, created = User.objects.get_or_create(username=username)
            password = known.get(username)
            if created or not user.has_usable_password():
                # A new account gets a fresh password, printed and kept in var/demo-accounts.txt.
                password = secrets.token_urlsafe(9)
                user.set_password(password)
            elif password is None or not user.check_password(password):
                # The account's password is not the one printed (changed since, or the file is gone): it is kept,
                # and nobody's password is replaced behind their back.
                password = "(unchanged: not the one printed before; `make demo-reset` starts afresh)"
            user.is_staff = staff
            user.save()
            user.groups.add(Group.objects.get(name=role))
            lines.append(f"  {username:<10} {password}   ({role.replace('_', ' ')})")
        self._demo_campaign(User)
        _write_credentials([line for line in lines if "(unchanged:" not in line])
        self.stdout.write("Demo accounts (also in var/demo-accounts.txt):\n" + "\n".join(lines))

    def _reset(self) -> None:
        """Empty the embedded database and load the reference data again: what a first ``make run`` finds."""
        self.stdout.write("Emptying the embedded database for a fresh demo.")
        call_command("flush", interactive=False, verbosity=0)
        credentials_path().unlink(missing_ok=True)
        call_command("load_taxonomy", stdout=self.stdout)
        call_command("load_scenarios", stdout=self.stdout)

    def _demo_campaign(self, User) -> None:
        """A blind campaign (k=2) of the demo dialogues for the demo counselor and senior clinician: a counselor sees
        only the candidates of their campaigns, so without it the demo counselor would see nothing.

        Made once, of the demo file's dialogues only: never the other dialogues in the database (imports, runs), and
        never a flagged one (a demo should not open on self-harm content). Run again, it only makes sure the demo
        accounts are members.
        """
        from annotations.models import Campaign
        from annotations.services import campaigns

        members = list(User.objects.filter(username__in=["counselor", "senior"]))
        campaign = Campaign.objects.filter(name=DEMO_CAMPAIGN).first()
        if campaign is None:
            demo_ids = list(
                gen_selectors.candidate_list_reviewable(filters={"kind": "dialogue"})
                .filter(source__file=DEMO_DIALOGUES.name, flagged=False)
                .values_list("pk", flat=True)
            )
            campaign = campaigns.campaign_create(
                creator=User.objects.get(username="curator"),
                name=DEMO_CAMPAIGN,
                kind="dialogue",
                overlap=2,
                members=members,
                blind=True,
                guidelines="Rate each demo dialogue with the rubric; flag any risk.",
                candidate_ids=demo_ids,
            )
        else:
            campaign.members.add(*members)
            # A campaign an earlier version filled with every dialogue in the database is left as it is (it may hold
            # reviews), and said.
            # (Counted as all less the demo ones: an exclude() on a JSON key would skip rows without the key.)
            others = campaign.items.count() - campaign.items.filter(candidate__source__file=DEMO_DIALOGUES.name).count()
            if others:
                self.stdout.write(
                    f"Note: the demo campaign also holds {others} dialogues that are not demo dialogues; "
                    "`make demo-reset` starts afresh."
                )
        self.stdout.write(f"Demo campaign: {campaign.name!r}, {campaign.items.count()} dialogues, k=2, blind.")
