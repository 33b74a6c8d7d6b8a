"""The gate in front of every page, the Django admin and the API for a signed-in session that owes a TOTP code.

A password alone signs a user in (Django's login form or the admin's); if they have a confirmed device, that
session reaches nothing but the code page until it gives a code (``accounts.selectors.otp_step``), and a user whose
role requires a device (``PSYROOM_OTP_REQUIRED_ROLES``) reaches nothing but enrolment. One gate for all paths, so
the admin, the API docs and a session's API calls are covered by the same rule.
"""

from urllib.parse import urlencode

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django_htmx.http import HttpResponseClientRedirect

from . import selectors


def _open_paths(step: str) -> tuple[str, ...]:
    """What a session owing ``step`` may still open: signing out (or in as someone else), the language switcher,
    static files, the token endpoint (which asks for the code itself), and the page that settles the step."""
    always = (
        reverse("login"),
        reverse("logout"),
        reverse("accounts:language"),
        "/" + settings.STATIC_URL.lstrip("/"),
        reverse("api:auth-token"),
    )
    if step == selectors.VERIFY:
        return (*always, reverse("accounts:otp_verify"))
    return (*always, reverse("accounts:otp"))


def _api(path: str) -> bool:
    return path.startswith("/api/") and not path.startswith(reverse("api-docs"))


class OTPGateMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        step = selectors.otp_step(user=request.user)
        # For the navigation (psyroom_admin.context_processors): asked once per request.
        request.otp_step = step
        if step is None or request.path.startswith(_open_paths(step)):
            return self.get_response(request)
        if _api(request.path):
            if step == selectors.VERIFY:
                detail = _("This session has not given its two-factor code: finish signing in first.")
            else:
                detail = _("Your role requires two-factor sign-in: set up an authenticator app first.")
            return JsonResponse({"detail": detail, "code": f"otp_{step}_required"}, status=403)
        if step == selectors.VERIFY:
            target = reverse("accounts:otp_verify") + "?" + urlencode({"next": request.get_full_path()})
        else:
            target = reverse("accounts:otp")
        if getattr(request, "htmx", False):
            return HttpResponseClientRedirect(target)
        return redirect(target)


def activate_profile_language(request, user) -> None:
    """Speak ``user``'s profile language for the rest of ``request``, where they chose one."""
    language = selectors.profile_language(user=user)
    if language:
        translation.activate(language)
        request.LANGUAGE_CODE = language


class ProfileLanguageMiddleware:
    """A signed-in user's profile language over the cookie's or the browser's (which LocaleMiddleware chose).

    After AuthenticationMiddleware: the user must be known. LocaleMiddleware's response step then says the language
    in ``Content-Language``. A token's user is known only inside the API view: ``accounts.auth`` does the same there.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        activate_profile_language(request, request.user)
        return self.get_response(request)
