"""Pages for two-factor sign-in: the code step after the password, and the account page where senior clinicians,
curators and admins add or remove their authenticator app. Every rule is in ``accounts.services``."""

import base64
import math
from binascii import unhexlify

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST
from django.views.i18n import set_language
from django_otp import login as otp_login

from psyroom_admin import roles

from . import selectors, services
from .forms import CodeForm
from .lockout import LOCKED_OUT

WRONG_CODE = gettext_lazy("That code is not right. Type the six digits your authenticator app shows now.")


def _next(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return reverse("annotations:queue")


def _minutes_left(error: services.OTPLocked) -> int:
    return max(1, math.ceil((error.until - timezone.now()).total_seconds() / 60))


@login_required
def otp_verify(request):
    """The second step of signing in: a code from the user's confirmed device makes this session verified."""
    target = _next(request)
    device = selectors.totp_device_for(user=request.user)
    if device is None or request.user.is_verified():
        return redirect(target)
    form = CodeForm(request.POST or None)
    context = {"form": form, "next": target}
    if request.method == "POST" and form.is_valid():
        try:
            device = services.totp_verify(user=request.user, code=form.cleaned_data["code"], via="login")
        except services.OTPLocked as error:
            context["locked_minutes"] = _minutes_left(error)
            return render(request, "accounts/otp_verify.html", context, status=LOCKED_OUT)
        except services.OTPCodeWrong:
            form.add_error("code", WRONG_CODE)
        else:
            # A session that gains a privilege gets a new key, as Django's login does.
            request.session.cycle_key()
            otp_login(request, device)
            return redirect(target)
    return render(request, "accounts/otp_verify.html", context)


def _qr_data_uri(url: str) -> str:
    svg = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2).to_string()
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def _secret(device) -> str:
    """The secret as an app's manual entry wants it: base32, in groups of four."""
    text = base64.b32encode(unhexlify(device.key)).decode("ascii").rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def _account_page(request, *, form=None, status=200, extra=None):
    user = request.user
    confirmed = selectors.totp_device_for(user=user)
    pending = None if confirmed else selectors.totp_device_for(user=user, confirmed=False)
    if confirmed is None and not roles.user_can_enrol_otp(user):
        raise PermissionDenied(_("Two-factor sign-in is for senior clinicians, curators and admins."))
    context = {
        "device": confirmed,
        "pending": pending,
        "form": form or CodeForm(),
        "required": selectors.otp_enrolment_required(user=user),
        **(extra or {}),
    }
    if pending is not None:
        context["otpauth_url"] = pending.config_url
        context["qr_data_uri"] = _qr_data_uri(pending.config_url)
        context["secret"] = _secret(pending)
    return render(request, "accounts/otp.html", context, status=status)


@login_required
def otp_account(request):
    return _account_page(request)


@login_required
@require_POST
def otp_start(request):
    try:
        services.totp_device_start(user=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    return redirect("accounts:otp")


@login_required
@require_POST
def otp_confirm(request):
    form = CodeForm(request.POST)
    if not form.is_valid():
        return _account_page(request, form=form)
    try:
        device = services.totp_device_confirm(user=request.user, code=form.cleaned_data["code"])
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("accounts:otp")
    except services.OTPLocked as error:
        return _locked_account(request, form, error)
    except services.OTPCodeWrong:
        form.add_error("code", WRONG_CODE)
        return _account_page(request, form=form)
    request.session.cycle_key()
    otp_login(request, device)
    messages.success(request, _("Two-factor sign-in is on: every sign-in now asks for a code from your app."))
    return redirect("accounts:otp")


def _locked_account(request, form, error):
    return _account_page(request, form=form, status=LOCKED_OUT, extra={"locked_minutes": _minutes_left(error)})


@login_required
@require_POST
def otp_remove(request):
    form = CodeForm(request.POST)
    if not form.is_valid():
        return _account_page(request, form=form)
    if selectors.totp_device_for(user=request.user) is None:
        return redirect("accounts:otp")
    try:
        services.totp_device_remove(user=request.user, code=form.cleaned_data["code"])
    except services.OTPLocked as error:
        return _locked_account(request, form, error)
    except services.OTPCodeWrong:
        form.add_error("code", WRONG_CODE)
        return _account_page(request, form=form)
    messages.success(request, _("Your authenticator app is removed: sign-ins ask for the password alone."))
    return redirect("accounts:otp")


@require_POST
def language_set(request):
    """The header's language switcher, on every page (signed out too): Django's ``set_language`` keeps the choice
    in the language cookie and goes back to ``next``; a signed-in user's profile keeps it too, so that it follows
    them to another browser and to the API."""
    response = set_language(request)
    language = request.POST.get("language", "")
    if language not in dict(settings.LANGUAGES):
        messages.error(request, _("That language is not offered here: nothing was changed."))
        return response
    if request.user.is_authenticated:
        services.profile_set_language(user=request.user, language=language)
    return response
