"""What a locked-out client is told (``AXES_LOCKOUT_CALLABLE``), and the client address axes counts failures by.

An API client gets JSON; a browser gets the login page again, with the reason and no form. Both with 429.
"""

from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.translation import ngettext

LOCKED_OUT = 429


def _minutes() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)


def locked_out_detail() -> dict:
    return {
        "detail": ngettext(
            "Too many failed logins for this account from your address: locked for %(minutes)d minute. Try again "
            "later, or ask an administrator to unlock it.",
            "Too many failed logins for this account from your address: locked for %(minutes)d minutes. Try again "
            "later, or ask an administrator to unlock it.",
            _minutes(),
        )
        % {"minutes": _minutes()},
        "code": "locked_out",
    }


def lockout_response(request, original_response=None, credentials=None):
    if request.path.startswith("/api/"):
        return JsonResponse(locked_out_detail(), status=LOCKED_OUT)
    return render(request, "registration/locked_out.html", {"minutes": _minutes()}, status=LOCKED_OUT)


def client_ip(request) -> str:
    """The address a login comes from.

    Behind ``TRUSTED_PROXY_COUNT`` reverse proxies, each appending to ``X-Forwarded-For``, the client is that many
    entries from the right (anything further left is the client's own say). With no proxy: ``REMOTE_ADDR``.
    """
    count = settings.TRUSTED_PROXY_COUNT
    if count:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= count:
            return forwarded[-count]
    return request.META.get("REMOTE_ADDR", "")
