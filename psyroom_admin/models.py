"""The API's own table: the answers kept for idempotency keys (``psyroom_admin.idempotency``)."""

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


class IdempotencyKey(models.Model):
    """One user's ``Idempotency-Key`` and the first successful answer given to it, for 24 hours.

    A row is written in the same transaction as the write it answers, so that it exists (for other connections) only
    with that write; the unique (user, key) makes a twin request wait for that transaction and then read the row.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=64)
    endpoint = models.CharField(max_length=300, help_text='the method and path it was used on: "POST /api/reviews/"')
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the request's body, canonical JSON")
    status_code = models.PositiveSmallIntegerField(null=True)
    body = models.JSONField(null=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")]

    def __str__(self) -> str:
        return f"{self.key} ({self.endpoint})"
