"""What the REST API shares: permission classes built on ``roles``, the 400 shape of a service's errors, paging.

The permission classes answer the same questions as the web pages' access helpers (``annotations.views``), from the
same functions of ``psyroom_admin.roles``; the services check the role again, so a forgotten class cannot open a
door. An anonymous request gets 401 (with ``WWW-Authenticate: Token``), a user without the role 403.
"""

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.settings import api_settings

from . import roles


class CanSeeCandidates(BasePermission):
    """Any role in PsyRoom: counselors, senior clinicians, curators and admins read candidates."""

    message = "You have no role in PsyRoom: ask an administrator for one."

    def has_permission(self, request, view) -> bool:
        return roles.user_can_see_candidates(request.user)


class CanReview(BasePermission):
    message = "Only counselors and senior clinicians may edit and review."

    def has_permission(self, request, view) -> bool:
        return roles.user_can_review(request.user)


class CanSignOffRisk(BasePermission):
    message = "Only a senior clinician may sign off a risk flag."

    def has_permission(self, request, view) -> bool:
        return roles.user_can_sign_off_risk(request.user)


class CanRunGeneration(BasePermission):
    """Generation runs hold GPUs for hours: only curators and admins see or start them."""

    message = "Only curators and admins may see and start generation runs."

    def has_permission(self, request, view) -> bool:
        return roles.user_can_run_generation(request.user)


def service_error(error: DjangoValidationError, *, fields) -> serializers.ValidationError:
    """A service's ``ValidationError`` as the API's 400 body: each message under the input field it names.

    Services name the field either as the key of an error dict (``{"scores": ...}``) or as the start of the message
    (``"count: must be between 1 and 10000"``, ``"parameters.top_p: ..."``); a message that names no field of the
    input goes under ``non_field_errors``. The message itself is kept as the service wrote it.
    """
    detail: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        key = field if field in fields else api_settings.NON_FIELD_ERRORS_KEY
        detail.setdefault(key, []).append(message)

    if hasattr(error, "error_dict"):
        for field, messages in error.message_dict.items():
            for message in messages:
                add("" if field == NON_FIELD_ERRORS else field, message)
    else:
        for message in error.messages:
            named, colon, _ = message.partition(":")
            add(named.split(".")[0].strip() if colon else "", message)
    return serializers.ValidationError(detail)


def paginated_response(*, request, view, queryset, serializer_class) -> Response:
    """One page of ``queryset`` (``?limit=&offset=``), as ``{count, next, previous, results}``."""
    paginator = api_settings.DEFAULT_PAGINATION_CLASS()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True, context={"request": request}).data)


# The query parameters of ``paginated_response``, for ``extend_schema(parameters=...)``.
PAGE_PARAMETERS = [
    OpenApiParameter("limit", OpenApiTypes.INT, description="items per page (default 50)"),
    OpenApiParameter("offset", OpenApiTypes.INT, description="items to skip"),
]


def page_of(serializer_class, *, name: str):
    """The schema of ``paginated_response``'s body, for ``extend_schema(responses=...)``."""
    return inline_serializer(
        name=name,
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer_class(many=True),
        },
    )
