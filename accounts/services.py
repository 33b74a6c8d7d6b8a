"""API tokens: made for a user, hashed at rest (django-rest-knox keeps only a digest), revoked together.

A token is shown once, when it is made; the database holds its SHA-512 digest and its first 15 characters (to find
the row), never the token itself. Each expires after ``REST_KNOX["TOKEN_TTL"]`` (``API_TOKEN_TTL_HOURS``).
"""

from django.conf import settings
from django.db import transaction
from knox.models import AuthToken


def token_create(*, user) -> tuple[AuthToken, str]:
    """A new token for ``user``: the row and the raw token, which exists nowhere else once this returns.

    A user keeps at most ``API_TOKENS_PER_USER`` live tokens: making one more drops the oldest, so that a script
    that asks for a token on each run does not pile them up.
    """
    with transaction.atomic():
        instance, raw = AuthToken.objects.create(user=user)
        keep = settings.API_TOKENS_PER_USER
        stale = AuthToken.objects.filter(user=user).order_by("-created").values_list("pk", flat=True)[keep:]
        AuthToken.objects.filter(pk__in=list(stale)).delete()
    return instance, raw


def tokens_revoke(*, user) -> int:
    """Delete every API token of ``user``; returns how many there were."""
    deleted, _ = AuthToken.objects.filter(user=user).delete()
    return deleted
