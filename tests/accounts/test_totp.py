"""Two-factor sign-in (TOTP, django-otp): enrolment, the code step after the password on every way in (pages, the
Django admin, a session's API calls, POST /api/auth/token/), the lock after wrong codes, the required roles, the
audit trail (accounts.services, accounts.selectors, accounts.middleware, accounts.views, accounts.api)."""

import re
import time
from base64 import b32encode
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts import services
from accounts.services import token_create
from annotations.models import AuditEvent
from psyroom_admin import roles
from psyroom_admin import settings as project_settings
from tests import factories

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
TOKEN = "/api/auth/token/"
OTP = "/accounts/otp/"
VERIFY = "/accounts/otp/verify/"
QUEUE = "/"
API_PAGE = "/api/candidates/"


def code_for(device: TOTPDevice) -> str:
    """The code the user's app shows now, computed from the device's key as an app would.

    django-otp accepts each time step once; a test that needs a second code in the same 30 seconds gets the next
    step's (within the device's tolerance of one step).
    """
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    if totp.t() <= device.last_t:
        totp.time += device.step * (device.last_t + 1 - totp.t())
    return f"{totp.token():0{device.digits}d}"


def wrong_code(device: TOTPDevice) -> str:
    right = int(code_for(device))
    return f"{(right + 1) % 10**device.digits:0{device.digits}d}"


def enrolled(user) -> TOTPDevice:
    device = services.totp_device_start(user=user)
    return services.totp_device_confirm(user=user, code=code_for(device))


def password_login(client, user):
    response = client.post(LOGIN, {"username": user.username, "password": factories.PASSWORD})
    assert response.status_code == 302, response.content
    return response


def events(action: str, user=None):
    qs = AuditEvent.objects.filter(action=action)
    return list(qs.filter(data__user=user.pk) if user is not None else qs)


def _token(user, **extra):
    body = {"username": user.username, "password": factories.PASSWORD, **extra}
    return APIClient().post(TOKEN, body, format="json")


@pytest.fixture
def superuser(db):
    return factories.make_user(None, is_superuser=True, is_staff=True)


# --- Enrolment --------------------------------------------------------------------------------------------------


def test_a_senior_enrols_by_scanning_and_confirming_a_code(client, senior):
    client.force_login(senior)
    page = client.get(OTP)
    assert page.status_code == 200
    assert "Add an authenticator app" in page.content.decode()
    assert not TOTPDevice.objects.exists()  # a GET makes nothing

    assert client.post(reverse("accounts:otp_start")).status_code == 302
    device = TOTPDevice.objects.get(user=senior)
    assert device.confirmed is False

    html = client.get(OTP).content.decode()
    secret = b32encode(device.bin_key).decode()
    assert f"otpauth://totp/PsyRoom%20Admin%3A{senior.username}?secret={secret}" in html
    assert 'src="data:image/svg+xml;base64,' in html
    # The key, grouped for typing, is on the page.
    assert " ".join(re.findall(".{1,4}", secret.rstrip("="))) in html

    # A wrong code confirms nothing and is recorded.
    response = client.post(reverse("accounts:otp_confirm"), {"code": wrong_code(device)})
    assert response.status_code == 200
    assert "That code is not right" in response.content.decode()
    device.refresh_from_db()
    assert device.confirmed is False
    assert [e.data["via"] for e in events("otp.failure", senior)] == ["enrol"]
    assert events("otp.enrol") == []

    response = client.post(reverse("accounts:otp_confirm"), {"code": code_for(device)})
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.confirmed is True
    assert device.throttling_failure_count == 0
    [event] = events("otp.enrol", senior)
    assert event.actor == senior
    # The session that confirmed counts as verified: the pages open, with no second code.
    assert client.get(QUEUE).status_code == 200
    assert "On: every sign-in asks for a code" in client.get(OTP).content.decode()


def test_starting_again_keeps_the_secret_being_enrolled(senior):
    first = services.totp_device_start(user=senior)
    again = services.totp_device_start(user=senior)
    assert again.pk == first.pk and again.key == first.key
    assert TOTPDevice.objects.filter(user=senior).count() == 1


def test_an_enrolled_user_cannot_start_a_second_device(client, curator):
    enrolled(curator)
    with pytest.raises(services.ValidationError):
        services.totp_device_start(user=curator)
    assert TOTPDevice.objects.filter(user=curator).count() == 1


def test_enrolment_revokes_tokens_made_with_the_password_alone(senior):
    _, key = token_create(user=senior)
    enrolled(senior)
    assert not AuthToken.objects.filter(user=senior).exists()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get(API_PAGE).status_code == 401


def test_a_counselor_cannot_enrol_and_is_asked_for_nothing(client, counselor):
    client.force_login(counselor)
    assert client.get(OTP).status_code == 403
    assert client.post(reverse("accounts:otp_start")).status_code == 403
    assert not TOTPDevice.objects.exists()
    assert "Two-factor" not in client.get(QUEUE).content.decode()

    client.logout()
    password_login(client, counselor)
    assert client.get(QUEUE).status_code == 200
    assert _token(counselor).status_code == 200


# --- Signing in with a code -------------------------------------------------------------------------------------


def test_after_the_password_every_page_waits_for_the_code(client, senior, candidate):
    device = enrolled(senior)
    password_login(client, senior)

    for url in [QUEUE, reverse("annotations:candidate", args=[candidate.pk]), OTP, "/accounts/password_change/"]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == f"{VERIFY}?next={url.replace('/', '%2F')}", url
    # The session's API calls too, answered in JSON.
    response = client.get(API_PAGE)
    assert response.status_code == 403
    assert response.json()["code"] == "otp_verify_required"
    # An htmx request is told to go to the code page as a whole.
    response = client.get(QUEUE, headers={"HX-Request": "true"})
    assert response.headers["HX-Redirect"].startswith(VERIFY)

    page = client.get(VERIFY, {"next": QUEUE})
    assert page.status_code == 200
    assert "Review queue" not in page.content.decode()  # no navigation that would not open

    response = client.post(VERIFY, {"code": wrong_code(device), "next": QUEUE})
    assert response.status_code == 200
    assert "That code is not right" in response.content.decode()
    assert client.get(QUEUE).status_code == 302
    [failure] = events("otp.failure", senior)
    assert failure.data == {"user": senior.pk, "via": "login", "reason": "wrong", "failures": 1}

    response = client.post(VERIFY, {"code": code_for(device), "next": QUEUE})
    assert response.status_code == 302
    assert response["Location"] == QUEUE
    assert client.get(QUEUE).status_code == 200
    assert client.get(API_PAGE).status_code == 200
    device.refresh_from_db()
    assert device.throttling_failure_count == 0


def test_a_code_is_accepted_once(client, senior):
    device = enrolled(senior)
    password_login(client, senior)
    code = code_for(device)
    assert client.post(VERIFY, {"code": code}).status_code == 302
    # The same code again, on the token endpoint: refused.
    response = _token(senior, otp=code)
    assert response.status_code == 400
    assert "otp" in response.json()
    assert not AuthToken.objects.exists()


def test_digits_of_other_scripts_are_not_a_code(client, senior):
    """int() reads '١٢٣٤٥٦' as 123456: only ASCII digits are a code."""
    device = enrolled(senior)
    password_login(client, senior)
    arabic = code_for(device).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    response = client.post(VERIFY, {"code": arabic})
    assert response.status_code == 200
    assert client.get(QUEUE).status_code == 302
    assert events("otp.failure", senior)[0].data["reason"] == "wrong"


def test_a_code_with_a_space_as_apps_show_it_is_accepted(client, senior):
    device = enrolled(senior)
    password_login(client, senior)
    code = code_for(device)
    assert client.post(VERIFY, {"code": f"{code[:3]} {code[3:]}"}).status_code == 302
    assert client.get(QUEUE).status_code == 200


def test_the_code_page_does_not_redirect_off_site(client, senior):
    device = enrolled(senior)
    password_login(client, senior)
    response = client.post(VERIFY, {"code": code_for(device), "next": "https://evil.example/"})
    assert response["Location"] == reverse("annotations:queue")


def test_a_user_without_a_device_signs_in_with_the_password(client, senior):
    password_login(client, senior)
    assert client.get(QUEUE).status_code == 200
    assert client.get(VERIFY).status_code == 302  # nothing to verify


def test_logging_out_is_open_before_the_code(client, senior):
    enrolled(senior)
    password_login(client, senior)
    assert client.post(reverse("logout")).status_code in (200, 302)
    assert "_auth_user_id" not in client.session


# --- The Django admin -------------------------------------------------------------------------------------------


def test_the_admin_waits_for_the_code_after_its_own_login_form(client, curator):
    device = enrolled(curator)
    response = client.post(reverse("admin:login"), {"username": curator.username, "password": factories.PASSWORD})
    assert response.status_code == 302
    assert "_auth_user_id" in client.session
    for url in [reverse("admin:index"), reverse("admin:generation_scenario_changelist")]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(VERIFY), url

    client.post(VERIFY, {"code": code_for(device)})
    assert client.get(reverse("admin:index")).status_code == 200


def test_the_admin_lists_devices_without_their_secret_and_deletes_through_the_service(client, senior, superuser):
    device = enrolled(senior)
    client.force_login(superuser)
    changelist = client.get(reverse("admin:otp_totp_totpdevice_changelist"))
    assert changelist.status_code == 200
    assert senior.username in changelist.content.decode()
    detail = client.get(reverse("admin:otp_totp_totpdevice_change", args=[device.pk]))
    assert detail.status_code == 200
    html = detail.content.decode()
    assert device.key not in html and b32encode(device.bin_key).decode() not in html
    assert client.get(reverse("admin:otp_totp_totpdevice_add")).status_code == 403

    response = client.post(reverse("admin:otp_totp_totpdevice_delete", args=[device.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not TOTPDevice.objects.exists()
    [event] = events("otp.remove", senior)
    assert event.actor == superuser and event.data["by"] == "admin"


# --- Wrong codes lock -------------------------------------------------------------------------------------------


def test_five_wrong_codes_lock_the_device_for_fifteen_minutes_even_for_the_right_code(client, senior):
    device = enrolled(senior)
    password_login(client, senior)
    for _ in range(5):
        assert client.post(VERIFY, {"code": wrong_code(device)}).status_code == 200

    response = client.post(VERIFY, {"code": code_for(device)})
    assert response.status_code == 429
    assert "Too many wrong codes" in response.content.decode()
    assert "15 minutes" in response.content.decode()
    assert client.get(QUEUE).status_code == 302
    reasons = [e.data["reason"] for e in reversed(events("otp.failure", senior))]
    assert reasons == ["wrong"] * 5 + ["locked"]

    # Fifteen minutes after the last failure, the right code opens again.
    TOTPDevice.objects.filter(pk=device.pk).update(
        throttling_failure_timestamp=timezone.now() - timedelta(minutes=15, seconds=1)
    )
    assert client.post(VERIFY, {"code": code_for(device)}).status_code == 302
    assert client.get(QUEUE).status_code == 200


def test_the_code_page_and_the_token_endpoint_count_together(client, senior):
    device = enrolled(senior)
    password_login(client, senior)
    for _ in range(3):
        client.post(VERIFY, {"code": wrong_code(device)})
    for _ in range(2):
        assert _token(senior, otp=wrong_code(device)).status_code == 400

    response = _token(senior, otp=code_for(device))
    assert response.status_code == 429
    assert response.json()["code"] == "otp_locked"
    assert not AuthToken.objects.exists()
    assert client.post(VERIFY, {"code": code_for(device)}).status_code == 429


def test_the_lock_is_per_account_whatever_the_address(client, senior):
    device = enrolled(senior)
    password_login(client, senior)
    for n in range(5):
        client.post(VERIFY, {"code": wrong_code(device)}, REMOTE_ADDR=f"203.0.113.{n}")
    response = client.post(VERIFY, {"code": code_for(device)}, REMOTE_ADDR="198.51.100.9")
    assert response.status_code == 429


def test_the_limit_comes_from_settings(client, senior, settings):
    settings.PSYROOM_OTP_FAILURE_LIMIT = 2
    device = enrolled(senior)
    password_login(client, senior)
    for _ in range(2):
        client.post(VERIFY, {"code": wrong_code(device)})
    assert client.post(VERIFY, {"code": code_for(device)}).status_code == 429


def test_an_admin_unlocks_a_device(client, senior, superuser):
    device = enrolled(senior)
    for _ in range(5):
        with pytest.raises(services.OTPCodeWrong):
            services.totp_verify(user=senior, code=wrong_code(device), via="login")
    client.force_login(superuser)
    response = client.post(
        reverse("admin:otp_totp_totpdevice_changelist"), {"action": "unlock", "_selected_action": [device.pk]}
    )
    assert response.status_code == 302
    assert services.totp_verify(user=senior, code=code_for(device), via="login") == device
    [event] = events("otp.unlock", senior)
    assert event.actor == superuser


# --- The token endpoint -----------------------------------------------------------------------------------------


def test_the_token_endpoint_asks_for_the_code(senior):
    device = enrolled(senior)

    missing = _token(senior)
    assert missing.status_code == 400
    assert list(missing.json()) == ["otp"]
    assert not AuthToken.objects.exists()
    assert events("otp.failure") == []  # no code is not a guess

    wrong = _token(senior, otp=wrong_code(device))
    assert wrong.status_code == 400
    assert wrong.json() == {"otp": ["That code is not right."]}
    assert not AuthToken.objects.exists()
    assert [e.data["via"] for e in events("otp.failure", senior)] == ["token"]

    right = _token(senior, otp=code_for(device))
    assert right.status_code == 200
    assert AuthToken.objects.filter(user=senior).count() == 1
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {right.json()['token']}")
    assert api.get(API_PAGE).status_code == 200


def test_a_wrong_password_with_a_right_code_checks_no_code(senior):
    device = enrolled(senior)
    code = code_for(device)
    response = APIClient().post(
        TOKEN, {"username": senior.username, "password": "wrong-password", "otp": code}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()) == ["non_field_errors"]
    assert not AuthToken.objects.exists()
    device.refresh_from_db()
    assert device.throttling_failure_count == 0
    # The code was not used up: with the right password it still gives a token.
    assert _token(senior, otp=code).status_code == 200


# --- Required roles ---------------------------------------------------------------------------------------------


def test_a_required_role_is_sent_to_enrolment_first(client, senior, curator, settings):
    settings.PSYROOM_OTP_REQUIRED_ROLES = (roles.SENIOR_CLINICIAN,)
    password_login(client, senior)
    response = client.get(QUEUE)
    assert response.status_code == 302
    assert response["Location"] == OTP
    assert client.get(API_PAGE).json()["code"] == "otp_enrol_required"
    assert "requires two-factor sign-in" in client.get(OTP).content.decode()

    token = _token(senior)
    assert token.status_code == 403
    assert token.json()["code"] == "otp_enrolment_required"
    assert not AuthToken.objects.exists()

    # Enrolling opens everything.
    client.post(reverse("accounts:otp_start"))
    device = TOTPDevice.objects.get(user=senior)
    assert client.post(reverse("accounts:otp_confirm"), {"code": code_for(device)}).status_code == 302
    assert client.get(QUEUE).status_code == 200

    # Another role is not required.
    client.force_login(curator)
    assert client.get(QUEUE).status_code == 200
    assert _token(curator).status_code == 200


def test_the_setting_refuses_roles_that_cannot_enrol(monkeypatch):
    monkeypatch.setenv("PSYROOM_OTP_REQUIRED_ROLES", "senior_clinician, counselor")
    with pytest.raises(ImproperlyConfigured, match="counselor"):
        project_settings.env_roles("PSYROOM_OTP_REQUIRED_ROLES", project_settings._OTP_ROLES)
    monkeypatch.setenv("PSYROOM_OTP_REQUIRED_ROLES", "curator,admin,curator")
    assert project_settings.env_roles("PSYROOM_OTP_REQUIRED_ROLES", project_settings._OTP_ROLES) == (
        "curator",
        "admin",
    )
    assert project_settings._OTP_ROLES == roles.OTP_ROLES


# --- Removal ----------------------------------------------------------------------------------------------------


def test_removing_the_app_takes_a_current_code(client, senior):
    device = enrolled(senior)
    client.force_login(senior)
    client.post(VERIFY, {"code": code_for(device)})

    response = client.post(reverse("accounts:otp_remove"), {"code": wrong_code(device)})
    assert response.status_code == 200
    assert TOTPDevice.objects.filter(pk=device.pk).exists()
    assert [e.data["via"] for e in events("otp.failure", senior)] == ["remove"]

    response = client.post(reverse("accounts:otp_remove"), {"code": code_for(device)})
    assert response.status_code == 302
    assert not TOTPDevice.objects.exists()
    [event] = events("otp.remove", senior)
    assert event.actor == senior and event.data["by"] == "user"

    client.logout()
    password_login(client, senior)
    assert client.get(QUEUE).status_code == 200
