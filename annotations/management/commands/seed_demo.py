import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from generation.importers import dialogues_import
from psyroom_admin import roles

DEMO_DIALOGUES = Path(settings.BASE_DIR) / "generation" / "data" / "demo" / "psyroom-example-sample.json"
DEMO_ACCOUNTS = [
    ("counselor", roles.COUNSELOR, False),
    ("senior", roles.SENIOR_CLINICIAN, False),
    ("curator", roles.CURATOR, True),
]


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
        credentials = Path(settings.VAR_DIR) / "demo-accounts.txt"
        credentials.write_text("\n".join(lines) + "\n", encoding="utf-8")
        credentials.chmod(0o600)
        self.stdout.write("Demo accounts (also in var/demo-accounts.txt):\n" + "\n".join(lines))
