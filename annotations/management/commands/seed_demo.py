import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from generation.importers.dialogues import dialogues_import
from psyroom_admin import roles

DEMO_DIALOGUES = Path(settings.BASE_DIR) / "generation" / "data" / "demo" / "psyroom-example-sample.json"
DEMO_ACCOUNTS = [
    ("counselor", roles.COUNSELOR, False),
    ("senior", roles.SENIOR_CLINICIAN, False),
    ("curator", roles.CURATOR, True),
]
DEMO_CAMPAIGN = "Demo campaign"


class Command(BaseCommand):
    help = "Embedded mode only: demo dialogues and demo accounts (a counselor, a senior clinician, a curator)."

    def handle(self, *args, **options):
        if not settings.EMBEDDED:
            raise CommandError("seed_demo creates accounts with printed passwords: embedded mode (SQLite) only.")
        roles.roles_ensure()
        result = dialogues_import(path=DEMO_DIALOGUES, format="psyroom")
        self.stdout.write(f"Demo dialogues: {result.created} imported ({result.duplicates} already there).")
        User = get_user_model()
        lines = []
        for username, role, staff in DEMO_ACCOUNTS:
            # A fresh password each time: demo credentials never outlive the session that printed them.
            password = secrets.token_urlsafe(9)
            user, _ = User.objects.get_or_create(username=username)
            user.set_password(password)
            user.is_staff = staff
            user.save()
            user.groups.add(Group.objects.get(name=role))
            lines.append(f"  {username:<10} {password}   ({role.replace('_', ' ')})")
        self._demo_campaign(User)
        credentials = Path(settings.VAR_DIR) / "demo-accounts.txt"
        credentials.write_text("\n".join(lines) + "\n", encoding="utf-8")
        credentials.chmod(0o600)
        self.stdout.write("Demo accounts (also in var/demo-accounts.txt):\n" + "\n".join(lines))

    def _demo_campaign(self, User) -> None:
        """A blind campaign (k=2) of the demo dialogues for the demo counselor and senior clinician: a counselor sees
        only the candidates of their campaigns, so without it the demo counselor would see nothing."""
        from annotations.models import Campaign, CampaignItem
        from annotations.services import campaigns
        from generation import selectors as gen_selectors

        members = list(User.objects.filter(username__in=["counselor", "senior"]))
        campaign = Campaign.objects.filter(name=DEMO_CAMPAIGN).first()
        if campaign is None:
            campaign = campaigns.campaign_create(
                creator=User.objects.get(username="curator"),
                name=DEMO_CAMPAIGN,
                kind="dialogue",
                overlap=2,
                members=members,
                blind=True,
                guidelines="Rate each demo dialogue with the rubric; flag any risk.",
            )
        else:
            campaign.members.add(*members)
            for candidate in gen_selectors.candidate_list_reviewable().filter(kind="dialogue"):
                CampaignItem.objects.get_or_create(campaign=campaign, candidate=candidate)
        self.stdout.write(f"Demo campaign: {campaign.name!r}, {campaign.items.count()} dialogues, k=2, blind.")
