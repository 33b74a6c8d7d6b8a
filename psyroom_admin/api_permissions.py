"""What the REST API shares: permission classes built on ``roles``, the 400 shape of a service's errors, bounded paging.

The permission classes answer the same questions as the web pages' access helpers (``annotations.views``), from the
same functions of ``psyroom_admin.roles``; the services check the role again, so a forgotten class cannot open a
door. An anonymous request gets 401 (with ``WWW-Authenticate: Token``), a user without the role 403.
"""

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import pagination, serializers
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.settings import api_settings

from . import roles


class CanSeeCandidates(BasePermission):
    """Any role in PsyRoom: counselors, senior clinicians, curators and admins read candidates."""

    message = gettext_lazy("You have no role in PsyRoom: ask an administrator for one.")

    def has_permission(self, request, view) -> bool:
        return roles.user_can_see_candidates(request.user)


class CanReview(BasePermission):
    message = gettext_lazy("Only counselors and senior clinicians may edit and review.")

    def has_permission(self, request, view) -> bool:
        return roles.user_can_review(request.user)


class CanSignOffRisk(BasePermission):
    message = gettext_lazy("Only a senior clinician may sign off a risk flag.")

    def has_permission(self, request, view) -> bool:
        return roles.user_can_sign_off_risk(request.user)


class CanRunGeneration(BasePermission):
    """Generation runs hold GPUs for hours: only curators and admins see or start them."""

    message = gettext_lazy("Only curators and admins may see and start generation runs.")

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


# Bounds for integer input, so that a huge number is a 400 and never reaches the database: an id (BigAutoField), a
# PostgreSQL integer column (versions, counts, seconds), a user's id (Django's auth app keeps a 32-bit AutoField).
MAX_ID = 2**63 - 1
MAX_INT = 2**31 - 1
MAX_USER_ID = MAX_INT

MAX_LIMIT = 200
# Past a 32-bit offset a page is always empty; a larger number would only overflow the database's LIMIT/OFFSET.
MAX_OFFSET = 2**31 - 1


class PageInput(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, required=False)
    offset = serializers.IntegerField(min_value=0, max_value=MAX_OFFSET, required=False)


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """DRF's ``?limit=&offset=`` paging, with both bounded: a value out of bounds or not a whole number is a 400 that
    names the parameter (DRF's own class ignores a bad value, and passes a huge one to the database)."""

    max_limit = MAX_LIMIT

    def paginate_queryset(self, queryset, request, view=None):
        page = PageInput(data=request.query_params)
        page.is_valid(raise_exception=True)
        self.page_input = page.validated_data
        return super().paginate_queryset(queryset, request, view=view)

    def get_limit(self, request) -> int:
        return self.page_input.get("limit", self.default_limit)

    def get_offset(self, request) -> int:
        return self.page_input.get("offset", 0)


def paginated_response(*, request, view, queryset, serializer_class) -> Response:
    """One page of ``queryset`` (``?limit=&offset=``), as ``{count, next, previous, results}``."""
    # The stubs type the setting as its dotted path; api_settings imports it and gives the class.
    pagination_class: type[pagination.BasePagination] = api_settings.DEFAULT_PAGINATION_CLASS  # type: ignore[assignment]
    paginator = pagination_class()
    page: list | None = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True, context={"request": request}).data)


# The query parameters of ``paginated_response``, for ``extend_schema(parameters=...)``.
PAGE_PARAMETERS = [
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        description=f"items per page (default {api_settings.PAGE_SIZE}, at most {MAX_LIMIT})",
    ),
    OpenApiParameter("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}, description="items to skip"),
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
