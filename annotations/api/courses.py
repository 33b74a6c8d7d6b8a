"""The API of courses and client profiles (see docs/api.md): the same rules as the course pages.

Anyone with a role reads profiles and courses (with every session's turns and memory); curators and admins create
and change profiles (``generation.services.courses.profile_save``, which checks the role again); counselors and senior
clinicians edit a session's memory (``course_services.session_memory_edit``: 409 on a stale version). Reviews of
sessions and courses go through ``POST /api/reviews/`` with the session and course rubrics.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation.models import CandidateKind, ClientProfile, Language, Revision
from generation.schemas import MEMORY_FIELDS
from generation.selectors import course_sessions
from generation.services.courses import profile_save
from psyroom_admin.api_permissions import (
    MAX_INT,
    PAGE_PARAMETERS,
    CanReview,
    CanSeeCandidates,
    page_of,
    paginated_response,
    service_error,
)
from psyroom_admin.idempotency import idempotent

from ..selectors import visibility
from ..services import courses as course_services


class ProfileInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    background = serializers.CharField(allow_blank=True, default="")
    personality = serializers.CharField(allow_blank=True, default="")
    assessment = serializers.CharField(allow_blank=True, default="")
    goals = serializers.CharField(allow_blank=True, default="")
    language = serializers.ChoiceField(choices=Language.choices, default=Language.ENGLISH)


class ProfileOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    background = serializers.CharField()
    personality = serializers.CharField()
    assessment = serializers.CharField()
    goals = serializers.CharField()
    language = serializers.CharField()
    history = serializers.JSONField(help_text="imported per-session memories and client cards")
    source = serializers.JSONField()  # type: ignore[assignment]  # an API field named like a DRF Field attribute


class ProfilesApi(APIView):
    permission_classes = [CanSeeCandidates]

    @extend_schema(
        operation_id="profiles_list",
        summary="List the client profiles you may read, by name, paginated",
        parameters=PAGE_PARAMETERS,
        responses={200: page_of(ProfileOutput, name="ProfilePage")},
        tags=["courses"],
    )
    def get(self, request: Request) -> Response:
        profiles = visibility.profile_scope(user=request.user, queryset=ClientProfile.objects.order_by("name", "id"))
        return paginated_response(request=request, view=self, queryset=profiles, serializer_class=ProfileOutput)

    @extend_schema(
        operation_id="profiles_create",
        request=ProfileInput,
        responses={201: ProfileOutput, 403: OpenApiResponse(description="not a curator or admin")},
        tags=["courses"],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = ProfileInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            profile = profile_save(user=request.user, data=serializer.validated_data)
        except DjangoValidationError as error:
            raise service_error(error, fields=ProfileInput().fields) from None
        return Response(ProfileOutput(profile).data, status=status.HTTP_201_CREATED)


class SessionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    sequence = serializers.IntegerField()
    status = serializers.CharField()
    version = serializers.IntegerField()
    turns = serializers.JSONField(source="content.turns")
    memory = serializers.JSONField(source="content.memory")


class CourseOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    version = serializers.IntegerField()
    profile = serializers.IntegerField(source="profile_id", allow_null=True)
    content = serializers.JSONField(help_text="profile snapshot, sessions, goals, notes")
    sessions = SessionOutput(many=True)


class CourseDetailApi(APIView):
    permission_classes = [CanSeeCandidates]

    @extend_schema(operation_id="courses_read", responses=CourseOutput, tags=["courses"])
    def get(self, request: Request, pk: int) -> Response:
        course = get_object_or_404(visibility.course_scope(user=request.user, kind=CandidateKind.COURSE), pk=pk)
        course.sessions = list(course_sessions(course=course))  # type: ignore[attr-defined]  # for CourseOutput
        return Response(CourseOutput(course).data)


class MemoryInput(serializers.Serializer):
    memory = serializers.DictField(child=serializers.CharField(allow_blank=True), help_text=", ".join(MEMORY_FIELDS))
    version = serializers.IntegerField(min_value=1, max_value=MAX_INT)
    category = serializers.ChoiceField(
        choices=[(v, label) for v, label in Revision.Category.choices if v != Revision.Category.ORIGINAL],
        default=Revision.Category.CLINICAL,
    )
    reason = serializers.CharField(max_length=1000, allow_blank=True, default="")


class SessionMemoryApi(APIView):
    permission_classes = [CanReview]

    @extend_schema(
        operation_id="sessions_memory_edit",
        request=MemoryInput,
        responses={201: SessionOutput, 409: OpenApiResponse(description="the session changed since `version`")},
        tags=["courses"],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        session = get_object_or_404(visibility.course_scope(user=request.user, kind=CandidateKind.SESSION), pk=pk)
        serializer = MemoryInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        course_services.session_memory_edit(
            session=session,
            editor=request.user,
            memory=data["memory"],
            base_version=data["version"],
            category=data["category"],
            reason=data["reason"],
        )
        return Response(SessionOutput(session).data, status=status.HTTP_201_CREATED)
