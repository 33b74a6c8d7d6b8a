"""django-axes on both ways in: the login form and POST /api/auth/token/ (accounts.api, accounts.lockout)."""

import io

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import RequestFactory
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.lockout import client_ip
from tests import factories

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
TOKEN = "/api/auth/token/"


def _form_login(client, user, password, **extra):
    return client.post(LOGIN, {"username": user.username, "password": password}, **extra)


def _token(api, user, password, **extra):
    return api.post(TOKEN, {"username": user.username, "password": password}, format="json", **extra)


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_the_login_form_locks_after_five_failures_even_for_the_right_password(client, counselor):
    for _ in range(4):
        response = _form_login(client, counselor, "wrong-password")
        assert response.status_code == 200  # the form again, with its error
    response = _form_login(client, counselor, "wrong-password")
    assert response.status_code == 429

    response = _form_login(client, counselor, factories.PASSWORD)
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert "locked for 15 minutes" in response.content.decode()
    assert not _logged_in(client)


def test_the_token_endpoint_locks_after_five_failures_even_for_the_right_password(counselor):
    api = APIClient()
    for _ in range(4):
        assert _token(api, counselor, "wrong-password").status_code == 400
    assert _token(api, counselor, "wrong-password").status_code == 429

    response = _token(api, counselor, factories.PASSWORD)
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "locked_out"
    assert "locked for 15 minutes" in response.json()["detail"]
    assert not AuthToken.objects.exists()


def test_failures_on_either_way_in_count_together(client, counselor):
    for _ in range(3):
        _form_login(client, counselor, "wrong-password")
    api = APIClient()
    for _ in range(2):
        _token(api, counselor, "wrong-password")
    assert _token(api, counselor, factories.PASSWORD).status_code == 429
    assert _form_login(client, counselor, factories.PASSWORD).status_code == 429


def test_another_user_from_the_same_address_is_not_locked(client, counselor, other_counselor):
    for _ in range(5):
        _form_login(client, counselor, "wrong-password")
    response = _form_login(client, other_counselor, factories.PASSWORD)
    assert response.status_code == 302
    assert _logged_in(client)
    assert _token(APIClient(), other_counselor, factories.PASSWORD).status_code == 200


def test_the_same_user_from_another_address_is_not_locked(client, counselor):
    for _ in range(5):
        _form_login(client, counselor, "wrong-password", REMOTE_ADDR="203.0.113.7")
    assert _form_login(client, counselor, factories.PASSWORD, REMOTE_ADDR="203.0.113.7").status_code == 429
    assert _form_login(client, counselor, factories.PASSWORD, REMOTE_ADDR="198.51.100.2").status_code == 302


@pytest.mark.parametrize("command", ["axes_reset", "axes_reset_username"])
def test_an_admin_can_unlock_with_axes_reset(client, counselor, command):
    for _ in range(5):
        _form_login(client, counselor, "wrong-password")
    assert AccessAttempt.objects.filter(username=counselor.username).exists()

    call_command(command, *([counselor.username] if command == "axes_reset_username" else []), stdout=io.StringIO())

    assert not AccessAttempt.objects.exists()
    assert _form_login(client, counselor, factories.PASSWORD).status_code == 302


def test_a_success_before_the_limit_clears_the_failures(client, counselor):
    for _ in range(4):
        _form_login(client, counselor, "wrong-password")
    assert _form_login(client, counselor, factories.PASSWORD).status_code == 302
    client.logout()
    for _ in range(4):
        assert _form_login(client, counselor, "wrong-password").status_code == 200


def test_the_limit_comes_from_settings(client, counselor, settings):
    settings.AXES_FAILURE_LIMIT = 2
    _form_login(client, counselor, "wrong-password")
    assert _form_login(client, counselor, "wrong-password").status_code == 429


def test_the_admin_login_is_covered_too(client, curator):
    for _ in range(5):
        client.post(reverse("admin:login"), {"username": curator.username, "password": "wrong-password"})
    response = client.post(reverse("admin:login"), {"username": curator.username, "password": factories.PASSWORD})
    assert response.status_code == 429
    assert not _logged_in(client)


def test_the_client_address_behind_trusted_proxies(settings):
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9, 10.0.0.1")
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(request) == "10.0.0.2"
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(request) == "10.0.0.1"
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_ip(request) == "203.0.113.9"
    settings.TRUSTED_PROXY_COUNT = 5  # fewer entries than proxies: the header cannot be trusted
    assert client_ip(request) == "10.0.0.2"
