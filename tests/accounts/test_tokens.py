"""API tokens (accounts.services, accounts.signals): hashed at rest, expiring, revoked by a password change."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.services import token_create
from tests import factories

pytestmark = pytest.mark.django_db

TOKEN = "/api/auth/token/"
PROTECTED = "/api/candidates/"


def _api(key: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api


def _obtain(user) -> dict:
    response = APIClient().post(TOKEN, {"username": user.username, "password": factories.PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_the_endpoint_answers_a_token_and_its_expiry(counselor, settings):
    body = _obtain(counselor)
    assert set(body) == {"token", "expiry"}
    assert len(body["token"]) == 64
    row = AuthToken.objects.get(user=counselor)
    assert row.expiry == pytest.approx(timezone.now() + settings.REST_KNOX["TOKEN_TTL"], abs=timedelta(seconds=30))
    assert _api(body["token"]).get(PROTECTED).status_code == 200


def test_the_database_never_holds_the_raw_token(counselor):
    key = _obtain(counselor)["token"]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {AuthToken._meta.db_table}")
        rows = cursor.fetchall()
    assert len(rows) == 1
    assert not any(key in str(value) for value in rows[0])


def test_an_expired_token_is_401_and_is_deleted(counselor):
    instance, key = token_create(user=counselor)
    AuthToken.objects.filter(pk=instance.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    response = _api(key).get(PROTECTED)
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}
    assert not AuthToken.objects.exists()


def test_a_password_change_revokes_every_token(counselor, other_counselor):
    _, first = token_create(user=counselor)
    _, second = token_create(user=counselor)
    _, others = token_create(user=other_counselor)

    counselor.set_password("a-new-and-long-passphrase")
    counselor.save()

    assert _api(first).get(PROTECTED).status_code == 401
    assert _api(second).get(PROTECTED).status_code == 401
    assert not AuthToken.objects.filter(user=counselor).exists()
    assert AuthToken.objects.filter(user=other_counselor).count() == 1
    assert _api(others).get(PROTECTED).status_code == 200


def test_the_password_change_page_revokes_the_tokens(client, counselor):
    _, key = token_create(user=counselor)
    client.force_login(counselor)
    response = client.post(
        "/accounts/password_change/",
        {
            "old_password": factories.PASSWORD,
            "new_password1": "a-new-and-long-passphrase",
            "new_password2": "a-new-and-long-passphrase",
        },
    )
    assert response.status_code == 302
    assert _api(key).get(PROTECTED).status_code == 401


def test_other_saves_of_the_user_keep_the_tokens(counselor):
    _, key = token_create(user=counselor)
    counselor.email = "new@example.org"
    counselor.save()
    counselor.save(update_fields=["last_login"])
    # A new token (a login: last_login is saved) leaves the first one alone.
    _obtain(counselor)
    assert _api(key).get(PROTECTED).status_code == 200


def test_rehashing_the_same_password_keeps_the_tokens(counselor, settings):
    """check_password() re-hashes with a newer hasher (e.g. after an upgrade) without the password changing."""
    _, key = token_create(user=counselor)
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    counselor.refresh_from_db()
    assert counselor.check_password(factories.PASSWORD)
    counselor.refresh_from_db()
    assert counselor.password.startswith("pbkdf2_sha1$")
    assert _api(key).get(PROTECTED).status_code == 200


def test_a_user_keeps_at_most_the_configured_number_of_tokens(counselor, settings):
    settings.API_TOKENS_PER_USER = 3
    keys = [token_create(user=counselor)[1] for _ in range(5)]
    assert AuthToken.objects.filter(user=counselor).count() == 3
    assert _api(keys[0]).get(PROTECTED).status_code == 401
    assert _api(keys[-1]).get(PROTECTED).status_code == 200


def test_the_old_plain_token_header_of_another_scheme_is_not_accepted(counselor):
    """A 40-character key of the former plain-text tokens means nothing now."""
    assert _api("9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b").get(PROTECTED).status_code == 401
