"""Delete the API's idempotency keys older than 24 hours (they are ignored already; this frees their rows)."""

from django.core.management.base import BaseCommand

from psyroom_admin.idempotency import keys_purge


class Command(BaseCommand):
    help = "Delete idempotency keys older than 24 hours (run it daily, e.g. from cron)."

    def handle(self, *args, **options):
        self.stdout.write(f"{keys_purge()} idempotency keys deleted")
