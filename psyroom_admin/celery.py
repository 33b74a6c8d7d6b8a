"""The Celery app, configured from Django settings (every ``CELERY_*`` setting)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psyroom_admin.settings")

app = Celery("psyroom_admin")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
