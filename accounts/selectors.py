"""Reads for two-factor sign-in: a user's TOTP device, and what a signed-in session still owes before it may go on.

A user has at most one TOTP device (``services.totp_device_start``): unconfirmed while they enrol, confirmed from the
moment they gave a first code. Only a confirmed device asks for codes.
"""

from datetime import datetime

from django.conf import settings
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from psyroom_admin import roles

from .models import Profile

# What a signed-in session owes (otp_step).
VERIFY = "verify"
ENROL = "enrol"


def totp_device_for(*, user, confirmed: bool = True) -> TOTPDevice | None:
    if not user.is_authenticated:
        return None
    return TOTPDevice.objects.filter(user=user, confirmed=confirmed).order_by("pk").first()


def otp_enrolment_required(*, user) -> bool:
    """Whether the operator requires this user's role to sign in with a code (``PSYROOM_OTP_REQUIRED_ROLES``)."""
    return roles.user_has_role(user, *settings.PSYROOM_OTP_REQUIRED_ROLES)


def otp_step(*, user) -> str | None:
    """What a signed-in session must do before any other page: ``VERIFY`` (give a code: the user has a confirmed
    device and this session has not given one), ``ENROL`` (their role requires a device and they have none), or
    ``None``. Needs ``django_otp.middleware.OTPMiddleware`` (``user.is_verified``)."""
    if not user.is_authenticated:
        return None
    # A request that did not pass OTPMiddleware (a RequestFactory's) has given no code.
    is_verified = getattr(user, "is_verified", None)
    if is_verified is not None and is_verified():
        return None
    if totp_device_for(user=user) is not None:
        return VERIFY
    if otp_enrolment_required(user=user):
        return ENROL
    return None


def totp_locked_until(device: TOTPDevice) -> datetime | None:
    """When ``device`` takes codes again, if ``PSYROOM_OTP_FAILURE_LIMIT`` wrong codes in a row locked it; else
    ``None``. The lock runs from the last failure: a wrong code after a lock ends locks it again at once."""
    last = device.throttling_failure_timestamp
    if device.throttling_failure_count < settings.PSYROOM_OTP_FAILURE_LIMIT or last is None:
        return None
    until = last + settings.PSYROOM_OTP_COOLOFF
    return until if timezone.now() < until else None


def profile_language(*, user) -> str:
    """The language ``user`` chose in their profile (a code of ``LANGUAGES``), or ``""``: follow the browser."""
    if not user.is_authenticated:
        return ""
    # The profile row is read once per request: user.profile would raise where there is none.
    language = Profile.objects.filter(user=user).values_list("language", flat=True).first()
    return language or ""
