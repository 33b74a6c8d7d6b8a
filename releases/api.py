"""The releases API (see docs/api.md): create a release from a spec, list them, read one's status and manifest,
download its files.

Curators and admins only. Anyone else is told 403 on the list and on create, and 404 for a release by id: a release
they may not see is answered as one that does not exist (``selectors.release_list_for``).
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from psyroom_admin import roles
from psyroom_admin.api_permissions import (
    PAGE_PARAMETERS,
    CanSeeCandidates,
    page_of,
    paginated_response,
    service_error,
)
from psyroom_admin.idempotency import idempotent

from . import selectors, services


class CanManageReleases(BasePermission):
    message = "Only curators and administrators see and create releases."

    def has_permission(self, request, view) -> bool:
        return roles.user_has_role(request.user, *roles.RELEASE_MANAGERS)


class ReleaseCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=100, help_text="lower-case letters, digits, - and _")
    version = serializers.CharField(max_length=32, help_text="e.g. 1.0.0; a name and version are built once")
    spec = serializers.DictField(
        help_text="what the release selects and writes: formats (sft, sharegpt, dpo, grpo, reasoning-sft, courses, "
        "plans), kinds, campaigns, sub_emotions, categories, languages, dates {from, to}, min_approvals, min_mean "
        "{criterion: 1-5}, min_agreement (-1 to 1), edited_only, model_specs, prompt_versions, splits {train, "
        "validation, test, seed}, dedup {exact, near}, dpo {max_similarity}, pii {action: block|redact, detectors}, "
        "parquet (see docs/architecture.md, Releases)"
    )


class ReleaseFileOutput(serializers.Serializer):
    name = serializers.CharField()
    rows = serializers.IntegerField()
    bytes = serializers.IntegerField()
    sha256 = serializers.CharField()


class ReleaseSummaryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    version = serializers.CharField()
    status = serializers.CharField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    built_at = serializers.DateTimeField(allow_null=True)


class PiiHitOutput(serializers.Serializer):
    candidate = serializers.IntegerField()
    where = serializers.CharField(
        help_text="e.g. turns[3].text, or 'revision 0 turns[3].text' (a DPO pair's model side)"
    )
    detector = serializers.CharField()
    match = serializers.CharField(help_text="the matched text, masked")


class ReleaseDetailOutput(ReleaseSummaryOutput):
    spec = serializers.DictField()
    files = ReleaseFileOutput(many=True)
    manifest = serializers.DictField()
    error = serializers.CharField()
    pii_hits = PiiHitOutput(many=True, help_text="a build the PII scan blocked: what it found")


class ReleasesApi(APIView):
    """GET: the releases, newest first. POST: create a release from a spec and queue its build."""

    permission_classes = [CanManageReleases]

    @extend_schema(
        operation_id="releases_list",
        summary="List dataset releases (curators and admins)",
        parameters=PAGE_PARAMETERS,
        responses={200: page_of(ReleaseSummaryOutput, name="ReleasePage")},
        tags=["releases"],
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            request=request,
            view=self,
            queryset=selectors.release_list_for(user=request.user),
            serializer_class=ReleaseSummaryOutput,
        )

    @extend_schema(
        operation_id="releases_create",
        summary="Create a release from a spec and queue its build (curators and admins)",
        request=ReleaseCreateInput,
        responses={
            201: ReleaseDetailOutput,
            400: OpenApiResponse(description="invalid input: {field: [messages]}; a spec's field as spec.<path>"),
        },
        tags=["releases"],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = ReleaseCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            release = services.release_create(
                name=data["name"], version=data["version"], spec=data["spec"], user=request.user
            )
        except DjangoValidationError as error:
            raise _release_error(error) from None
        return Response(ReleaseDetailOutput(release).data, status=status.HTTP_201_CREATED)


def _release_error(error: DjangoValidationError) -> serializers.ValidationError:
    """A service's refusal as a 400: name and version under their own keys, a spec field under ``spec.<path>``."""
    if not hasattr(error, "error_dict"):
        return service_error(error, fields=ReleaseCreateInput().fields)
    detail: dict[str, list[str]] = {}
    for field, messages in error.message_dict.items():
        key = field if field in ("name", "version", "spec") else f"spec.{field}"
        detail.setdefault(key, []).extend(messages)
    return serializers.ValidationError(detail)


def _release(request, pk):
    return get_object_or_404(selectors.release_list_for(user=request.user), pk=pk)


class ReleaseDetailApi(APIView):
    permission_classes = [CanSeeCandidates]

    @extend_schema(
        operation_id="releases_retrieve",
        summary="A release's status, files and manifest",
        responses={200: ReleaseDetailOutput},
        tags=["releases"],
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(ReleaseDetailOutput(_release(request, pk)).data)


class ReleaseCancelConflict(serializers.Serializer):
    detail = serializers.CharField()
    status = serializers.CharField(help_text="the release's status, unchanged")


class ReleaseCancelApi(APIView):
    permission_classes = [CanSeeCandidates]

    @extend_schema(
        operation_id="releases_cancel",
        summary="Cancel a queued or building release; its build stops at its next batch and leaves no files "
        "(curators and admins)",
        request=None,
        responses={
            200: ReleaseDetailOutput,
            409: OpenApiResponse(ReleaseCancelConflict, description="the release is ready, failed or cancelled"),
        },
        tags=["releases"],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        release = _release(request, pk)
        try:
            release = services.release_cancel(release=release, user=request.user)
        except DjangoValidationError as error:
            body = {"detail": " ".join(error.messages), "status": release.status}
            return Response(ReleaseCancelConflict(body).data, status=status.HTTP_409_CONFLICT)
        return Response(ReleaseDetailOutput(release).data)


class ReleaseFileApi(APIView):
    permission_classes = [CanSeeCandidates]

    @extend_schema(
        operation_id="releases_file",
        summary="Download one file of a ready release (manifest.json, or a name in its files); recorded in the "
        "audit log",
        parameters=[OpenApiParameter("path", str, OpenApiParameter.PATH, description="e.g. sft/train.jsonl")],
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="the file's bytes")
        },
        tags=["releases"],
    )
    def get(self, request: Request, pk: int, path: str) -> FileResponse:
        release = _release(request, pk)
        found = services.release_download(release=release, name=path, user=request.user)
        if found is None:
            raise Http404("no such file in this release")
        return FileResponse(
            found.open("rb"),
            as_attachment=True,
            filename=path.replace("/", "-"),
            content_type="application/octet-stream",
        )
