"""The generation API: runs, for curators and admins only (a run holds a GPU for hours).

Each view checks access, validates with its Input serializer, calls one service from ``generation.services`` and
answers with its Output serializer. The service's ValidationError messages become a 400 under the field they name.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from psyroom_admin.api_permissions import (
    MAX_ID,
    MAX_INT,
    PAGE_PARAMETERS,
    CanRunGeneration,
    page_of,
    paginated_response,
    service_error,
)
from psyroom_admin.idempotency import idempotent

from . import selectors
from .models import ClientProfile, GenerationRun, Language, ModelSpec, Scenario
from .runs.kinds import RUN_KINDS
from .services.runs import PARAMETER_BOUNDS, run_cancel, run_create, run_resume


def _get_run(pk: int) -> GenerationRun:
    try:
        return selectors.run_get(run_id=pk)
    except GenerationRun.DoesNotExist:
        raise Http404(f"no generation run {pk}") from None


class RunSummaryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.SerializerMethodField()
    count = serializers.IntegerField(help_text="items asked for")
    done = serializers.IntegerField(help_text="items saved as candidates")
    failed = serializers.IntegerField(help_text="items given up, each in `errors` (run detail)")
    progress = serializers.SerializerMethodField()
    model_spec = serializers.CharField(source="model_spec.name")
    language = serializers.CharField(help_text="what the run writes in: en or zh")
    sub_emotion = serializers.CharField(source="sub_emotion.key", allow_null=True, help_text="the first target's")
    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    heartbeat_at = serializers.DateTimeField(
        allow_null=True, help_text="the last sign of life of the worker executing the run"
    )

    @extend_schema_field(serializers.ChoiceField(choices=selectors.RUN_STATUSES))
    def get_status(self, run: GenerationRun) -> str:
        """The stored status, except `stalled`: running, with no heartbeat for PSYROOM_RUN_STALE_S seconds."""
        return selectors.run_status(run)

    @extend_schema_field(OpenApiTypes.FLOAT)
    def get_progress(self, run: GenerationRun) -> float:
        """Percent of the items settled (saved or failed)."""
        return round(100 * (run.done + run.failed) / run.count, 1) if run.count else 0.0


class ChunkProgressOutput(serializers.Serializer):
    stage = serializers.CharField(required=False, help_text='where the chunk is, e.g. "turn 3 of 6", "supervisor"')
    calls = serializers.IntegerField(required=False, help_text="batched model calls made for the chunk")
    prompt_tokens = serializers.IntegerField(required=False)
    completion_tokens = serializers.IntegerField(required=False)
    updated_at = serializers.DateTimeField(required=False)


class ModelSpecOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    backend = serializers.CharField()
    path = serializers.CharField()


class RunFailureOutput(serializers.Serializer):
    index = serializers.IntegerField(help_text="the item's position in the run")
    reason = serializers.CharField()
    raw = serializers.CharField(help_text="the model's text that could not be used")
    turn = serializers.IntegerField(required=False, help_text="dialogue runs: the turn that failed")
    section = serializers.CharField(required=False, help_text="plan runs: the section that failed")


class RunDetailOutput(RunSummaryOutput):
    """A run in full: what it was asked for, how far it is, what failed (with the model's raw text)."""

    model_spec = ModelSpecOutput()  # type: ignore[assignment]  # the detail has the whole spec, the summary its name
    scenario = serializers.IntegerField(source="scenario_id", allow_null=True)
    targets = serializers.ListField(
        child=serializers.DictField(), help_text="item i is made from targets[i % len(targets)]"
    )
    parameters = serializers.DictField(help_text="sampling and pipeline parameters, the model's defaults included")
    seed = serializers.IntegerField()
    prompt_version = serializers.CharField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    chunk_progress = ChunkProgressOutput(
        help_text="the chunk in flight, not yet saved (its tokens are not yet in prompt_tokens and completion_tokens); "
        "empty between chunks and once the run has finished"
    )
    resumes = serializers.IntegerField(help_text="how many times the run was resumed after it stalled")
    stats = serializers.DictField(help_text="what the parsers caught and mended, counted")
    # A field named like Serializer.errors: this serializer only writes output, so nothing reads .errors.
    errors = RunFailureOutput(many=True)  # type: ignore[assignment]
    error = serializers.CharField(help_text="why the whole run failed, if it did")
    task_id = serializers.CharField()
    is_finished = serializers.BooleanField()


class RunListFilter(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[(k.value, k.label) for k in RUN_KINDS], required=False)
    status = serializers.ChoiceField(choices=selectors.RUN_STATUSES, required=False)


def _id_list(help_text: str) -> serializers.ListField:
    """An optional list of row ids (at most 10,000)."""
    ids = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    return serializers.ListField(child=ids, required=False, default=list, max_length=10_000, help_text=help_text)


class RunCreateInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[(k.value, k.label) for k in RUN_KINDS])
    sub_emotions = serializers.SlugRelatedField(
        many=True,
        slug_field="key",
        queryset=selectors.sub_emotion_list(),
        required=False,
        help_text="dialogue and scenario runs: sub-emotion keys (anxiety.1, ...); the items cycle through them",
    )
    scenarios = _id_list("dialogue runs: scenario ids, instead of sub-emotions")
    dialogues = _id_list("dialogue candidate ids: a plan run writes a plan for each, a dialogue run reconstructs each")
    questions = _id_list("question runs: ids of imported choice-question candidates; each model answers each one")
    profiles = _id_list("course runs: client profile ids; the items cycle through them")
    sessions = serializers.IntegerField(
        default=3, min_value=0, max_value=MAX_INT, help_text="course runs: sessions per course"
    )
    count = serializers.IntegerField(
        min_value=0,
        max_value=MAX_INT,
        required=False,
        allow_null=True,
        default=None,
        help_text="how many items (with `dialogues` or `questions`: one per id)",
    )
    turns = serializers.IntegerField(
        default=6, min_value=0, max_value=MAX_INT, help_text="turns per dialogue or session, client first"
    )
    model_spec = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=200,
        help_text="a model spec's name or id (default: PSYROOM_MODEL)",
    )
    seed = serializers.IntegerField(default=0, min_value=-(2**63), max_value=2**63 - 1)
    language = serializers.ChoiceField(
        choices=Language.choices,
        required=False,
        allow_null=True,
        default=None,
        help_text="en or zh: the prompts, labels and candidates' language (default: the sources', else en)",
    )
    parameters = serializers.DictField(
        required=False,
        default=dict,
        help_text=f"any of: {', '.join(PARAMETER_BOUNDS)}",
    )

    def validate_scenarios(self, ids: list[int]) -> list[Scenario]:
        return self._rows(Scenario.objects.select_related("sub_emotion"), ids, "scenario")

    def validate_dialogues(self, ids: list[int]):
        # Any candidate: the service says which ones are not dialogues.
        return self._rows(selectors.candidate_list(), ids, "candidate")

    def validate_questions(self, ids: list[int]):
        # Any candidate: the service says which ones are not choice questions.
        return self._rows(selectors.candidate_list(), ids, "candidate")

    def validate_profiles(self, ids: list[int]) -> list[ClientProfile]:
        return self._rows(ClientProfile.objects.all(), ids, "client profile")

    def validate_model_spec(self, value: str) -> ModelSpec | None:
        value = value.strip()
        if not value:
            return None
        # An id is ASCII digits within an id's range ("¹".isdigit() is true, and int() refuses it); anything else is
        # a name, which is then simply not found.
        is_id = value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_ID
        lookup = {"pk": int(value)} if is_id else {"name": value}
        try:
            return ModelSpec.objects.get(**lookup)
        except ModelSpec.DoesNotExist:
            raise serializers.ValidationError(f"no model spec named or numbered {value!r}") from None

    @staticmethod
    def _rows(queryset, ids: list[int], what: str) -> list:
        rows = queryset.in_bulk(ids)
        missing = [i for i in ids if i not in rows]
        if missing:
            raise serializers.ValidationError(f"no {what} with id {', '.join(map(str, missing))}")
        return [rows[i] for i in ids]


class RunsApi(APIView):
    """GET: the runs, newest first. POST: create a run and queue it."""

    permission_classes = [CanRunGeneration]

    @extend_schema(
        operation_id="runs_list",
        summary="List generation runs (curators and admins)",
        parameters=[RunListFilter, *PAGE_PARAMETERS],
        responses={200: page_of(RunSummaryOutput, name="RunPage")},
        tags=["runs"],
    )
    def get(self, request: Request) -> Response:
        filters = RunListFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return paginated_response(
            request=request,
            view=self,
            queryset=selectors.run_list(filters=filters.validated_data),
            serializer_class=RunSummaryOutput,
        )

    @extend_schema(
        operation_id="runs_create",
        summary="Create a generation run and queue it (curators and admins)",
        request=RunCreateInput,
        responses={
            201: RunDetailOutput,
            400: OpenApiResponse(description="invalid input: {field: [messages]}"),
            503: OpenApiResponse(description='the task queue is unreachable: {"detail", "code": "queue_unavailable"}'),
        },
        tags=["runs"],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = RunCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            run = run_create(
                kind=data["kind"],
                sub_emotions=data.get("sub_emotions", []),
                scenarios=data["scenarios"],
                dialogues=data["dialogues"],
                questions=data["questions"],
                profiles=data["profiles"],
                sessions=data["sessions"],
                count=data["count"],
                turns=data["turns"],
                model_spec=data["model_spec"],
                seed=data["seed"],
                parameters=data["parameters"],
                created_by=request.user,
                language=data["language"],
            )
        except DjangoValidationError as error:
            raise service_error(error, fields=RunCreateInput().fields) from None
        return Response(RunDetailOutput(selectors.run_get(run_id=run.pk)).data, status=status.HTTP_201_CREATED)


class RunDetailApi(APIView):
    permission_classes = [CanRunGeneration]

    @extend_schema(
        operation_id="runs_retrieve",
        summary="A generation run: status, progress, failures, tokens (curators and admins)",
        responses={200: RunDetailOutput},
        tags=["runs"],
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(RunDetailOutput(_get_run(pk)).data)


class RunCancelConflict(serializers.Serializer):
    detail = serializers.CharField()
    status = serializers.CharField(help_text="the run's status, unchanged")


class RunCancelApi(APIView):
    permission_classes = [CanRunGeneration]

    @extend_schema(
        operation_id="runs_cancel",
        summary="Cancel a run that has not finished; the worker stops at its next model call and saves nothing more",
        request=None,
        responses={
            200: RunDetailOutput,
            409: OpenApiResponse(RunCancelConflict, description="the run has already finished"),
        },
        tags=["runs"],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        run = _get_run(pk)
        try:
            run = run_cancel(run=run, user=request.user)
        except DjangoValidationError as error:
            body = {"detail": " ".join(error.messages), "status": run.status}
            return Response(RunCancelConflict(body).data, status=status.HTTP_409_CONFLICT)
        return Response(RunDetailOutput(run).data)


class RunResumeConflict(serializers.Serializer):
    detail = serializers.CharField()
    status = serializers.CharField(help_text="the run's status as shown, unchanged")


class RunResumeApi(APIView):
    permission_classes = [CanRunGeneration]

    @extend_schema(
        operation_id="runs_resume",
        summary="Queue a stalled run again: what was saved is kept, the rest is generated (curators and admins)",
        request=None,
        responses={
            200: RunDetailOutput,
            409: OpenApiResponse(RunResumeConflict, description="the run is not stalled"),
            503: OpenApiResponse(description='the task queue is unreachable: {"detail", "code": "queue_unavailable"}'),
        },
        tags=["runs"],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        run = _get_run(pk)
        try:
            run = run_resume(run=run, user=request.user)
        except DjangoValidationError as error:
            body = {"detail": " ".join(error.messages), "status": selectors.run_status(run)}
            return Response(RunResumeConflict(body).data, status=status.HTTP_409_CONFLICT)
        return Response(RunDetailOutput(run).data)
