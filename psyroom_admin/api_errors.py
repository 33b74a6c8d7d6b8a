"""The API's one exception handler: a service's refusal becomes the same JSON answer on every endpoint.

- ``django.core.exceptions.ValidationError`` (a service refusing input or a rule) -> 400 ``{field: [messages]}``;
- ``generation.services.candidates.StaleVersion`` (a write based on a version someone changed since) -> 409
  ``{"detail", "code": "stale_version", "version"}``;
- ``generation.schemas.ContentError`` (content that does not fit its kind's schema) -> 400 ``{"content": [message]}``;
- ``PermissionDenied`` -> 403 and ``Http404`` -> 404, as DRF already answers them;
- a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` -> 413 ``{"detail"}``, and Django's other refusals of a request's
  shape (too many form fields, ...) -> 400 ``{"detail"}``, rather than Django's HTML error page.

Views therefore call one service and let its exceptions through; nothing was written when any of these is raised.
"""

from django.core.exceptions import NON_FIELD_ERRORS, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext as _
from rest_framework import status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from generation.schemas import ContentError
from generation.services.candidates import StaleVersion
from generation.services.runs import QueueUnavailable


def validation_detail(error: DjangoValidationError) -> dict[str, list[str]]:
    """A service's ValidationError as ``{field: [messages]}``; a message that names no field is a non-field error."""
    detail: dict[str, list[str]] = {}
    if hasattr(error, "error_dict"):
        for field, messages in error.message_dict.items():
            key = api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field
            detail.setdefault(key, []).extend(messages)
    else:
        detail[api_settings.NON_FIELD_ERRORS_KEY] = list(error.messages)
    return detail


def exception_handler(exc, context):
    if isinstance(exc, StaleVersion):
        candidate = exc.candidate
        body = {
            "detail": _(
                "%(item)s changed since the version you sent: nothing was saved. Read it again (version "
                "%(version)s) and send it again."
            )
            % {"item": candidate, "version": candidate.version},
            "code": "stale_version",
            "version": candidate.version,
        }
        return Response(body, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, QueueUnavailable):
        body = {"detail": str(exc), "code": "queue_unavailable"}
        return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "60"})
    if isinstance(exc, DjangoValidationError):
        return Response(validation_detail(exc), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ContentError):
        return Response({"content": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": str(exc)}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, SuspiciousOperation):
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)
