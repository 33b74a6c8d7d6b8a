"""API tokens and two-factor sign-in.

API tokens: made for a user, hashed at rest (django-rest-knox keeps only a digest), revoked together. A token is
shown once, when it is made; the database holds its SHA-512 digest and its first 15 characters (to find the row),
never the token itself. Each expires after ``REST_KNOX["TOKEN_TTL"]`` (``API_TOKEN_TTL_HOURS``).

Two-factor sign-in (django-otp's ``TOTPDevice``): senior clinicians, curators and admins may enrol an authenticator
app; from then on every way in (the code page after the password, ``POST /api/auth/token/``) asks for a code, checked
here only (``totp_verify``), with its own lock after ``PSYROOM_OTP_FAILURE_LIMIT`` wrong codes. Enrolment, removal
and every refused code are sent as ``otp_event`` (annotations writes them to the audit log: accounts knows nothing
of the other apps).
"""

import re
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.dispatch import Signal
from django.utils.translation import gettext as _
from django_otp.plugins.otp_totp.models import TOTPDevice
from knox.models import AuthToken

from psyroom_admin import roles

from . import selectors
from .models import Profile

# Sent with ``user``, ``action`` ("otp.enrol", "otp.remove", "otp.failure", "otp.unlock"), ``actor`` and ``data``,
# inside the transaction that made the change (a refused code: the one that counted it).
otp_event = Signal()


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


# --- Two-factor sign-in -----------------------------------------------------------------------------------------


class OTPCodeWrong(Exception):
    """The code was not the device's current one (or not a code at all); the failure was counted."""


class OTPLocked(Exception):
    """Too many wrong codes in a row: no code is checked until ``until``."""

    def __init__(self, until: datetime):
        self.until = until
        super().__init__(f"locked until {until.isoformat()}")


def _code(raw) -> str | None:
    """The digits of a code as an app shows them ("123 456" too); anything else is no code. ``str.isdigit`` and
    ``int()`` would take other scripts' digits, so only ASCII ones count."""
    if not isinstance(raw, str):
        return None
    code = re.sub(r"[ \t]", "", raw)
    return code if re.fullmatch(r"[0-9]{6,8}", code) else None


def _check(*, device: TOTPDevice, raw, via: str) -> datetime | bool:
    """Check ``raw`` against ``device`` (locked by the caller), counting a failure and sending ``otp.failure``.

    Returns True (right), False (wrong) or, while the device is locked, when it unlocks (the code is not checked).
    Nothing is raised here, so that the caller's transaction keeps the failure it counted and recorded.
    """
    until = selectors.totp_locked_until(device)
    if until is not None:
        _failure_event(device=device, via=via, reason="locked")
        return until
    code = _code(raw)
    if code is not None and device.verify_token(code):  # resets the failures, and refuses a code used before
        return True
    if code is None:
        device.throttle_increment()  # verify_token counts its own failures
    _failure_event(device=device, via=via, reason="wrong")
    return False


def _raise_unless_right(outcome: datetime | bool) -> None:
    if outcome is True:
        return
    if outcome is False:
        raise OTPCodeWrong()
    raise OTPLocked(outcome)


def _failure_event(*, device: TOTPDevice, via: str, reason: str) -> None:
    data = {"via": via, "reason": reason, "failures": device.throttling_failure_count}
    otp_event.send(sender=TOTPDevice, user=device.user, actor=device.user, action="otp.failure", data=data)


def totp_verify(*, user, code, via: str) -> TOTPDevice:
    """Check a code from ``user``'s confirmed device (``via``: "login", "token", ... for the audit log).

    Returns the device; raises OTPCodeWrong (the failure is counted and recorded) or OTPLocked. The device row is
    locked while it is checked, so two requests with guesses are counted one after the other and one code is never
    accepted twice (django-otp keeps the last time step used).
    """
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).order_by("pk").first()
        if device is None:
            raise ValueError(f"{user} has no confirmed TOTP device")
        outcome = _check(device=device, raw=code, via=via)
    _raise_unless_right(outcome)
    return device


def totp_device_start(*, user) -> TOTPDevice:
    """The device ``user`` is enrolling: a new one with a new secret, or the one they started before (so that the
    secret they scanned stays the one that counts). Refused for a role that may not enrol and for a user who has a
    confirmed device already."""
    if not roles.user_can_enrol_otp(user):
        raise PermissionDenied(_("Two-factor sign-in is for senior clinicians, curators and admins."))
    with transaction.atomic():
        # The user row is the lock: two starts at once make one device.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
            raise ValidationError(_("You already have an authenticator app: remove it before you add another."))
        device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
        if device is None:
            device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
    return device


def totp_device_confirm(*, user, code) -> TOTPDevice:
    """Confirm the device ``user`` is enrolling with a first code from it: from now on every sign-in asks for one.

    The user's API tokens, made with a password alone, are revoked. Raises OTPCodeWrong / OTPLocked (counted like a
    sign-in's), ValidationError when nothing is being enrolled.
    """
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).order_by("pk").first()
        if device is None:
            raise ValidationError(_("Nothing is being enrolled: start again."))
        outcome = _check(device=device, raw=code, via="enrol")
        if outcome is True:
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            revoked = tokens_revoke(user=user)
            otp_event.send(
                sender=TOTPDevice,
                user=user,
                actor=user,
                action="otp.enrol",
                data={"device": device.pk, "tokens_revoked": revoked},
            )
    _raise_unless_right(outcome)
    return device


def totp_device_remove(*, user, code) -> None:
    """Remove ``user``'s authenticator app, given a current code from it (whoever has the open session must also
    have the app). Their sign-ins ask for no code after this, unless their role requires one (then the next page is
    enrolment). Raises OTPCodeWrong / OTPLocked."""
    device = totp_verify(user=user, code=code, via="remove")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        otp_event.send(
            sender=TOTPDevice, user=user, actor=user, action="otp.remove", data={"device": device.pk, "by": "user"}
        )


def totp_devices_delete(*, user, actor) -> int:
    """An admin removes ``user``'s devices (a lost phone): the user signs in with the password alone, or enrols
    again. Returns how many there were."""
    with transaction.atomic():
        pks = list(TOTPDevice.objects.filter(user=user).values_list("pk", flat=True))
        TOTPDevice.objects.filter(pk__in=pks).delete()
        if pks:
            otp_event.send(
                sender=TOTPDevice, user=user, actor=actor, action="otp.remove", data={"device": pks[0], "by": "admin"}
            )
    return len(pks)


def totp_device_unlock(*, device: TOTPDevice, actor) -> None:
    """An admin lifts a device's lock after wrong codes (the owner proved who they are some other way)."""
    with transaction.atomic():
        device.throttle_reset()
        otp_event.send(
            sender=TOTPDevice, user=device.user, actor=actor, action="otp.unlock", data={"device": device.pk}
        )


def profile_set_language(*, user, language: str):
    """Keep ``language`` (a code of ``LANGUAGES``, or ``""`` to follow the browser) as ``user``'s choice."""
    if not user.is_authenticated:
        raise PermissionDenied(_("Sign in to keep a language in your profile."))
    if not isinstance(language, str) or (language and language not in dict(settings.LANGUAGES)):
        message = _("%(value)s is not a language of this site: choose one of %(choices)s.")
        params = {"value": repr(language)[:40], "choices": ", ".join(dict(settings.LANGUAGES))}
        raise ValidationError({"language": ValidationError(message, code="invalid", params=params)})
    with transaction.atomic():
        profile, _created = Profile.objects.update_or_create(user=user, defaults={"language": language})
    return profile
