"""The review API: candidates (read), turn edits, reviews and risk sign-offs.

The same rules as the review pages (``annotations.views``): anyone with a role reads every candidate, its revisions
and its reviews; counselors and senior clinicians edit and review; only senior clinicians sign off risk. Each view
checks access, validates with its Input serializer, calls one service from ``annotations.services`` and answers with
its Output serializer. A service's ValidationError is a 400 naming the field; a save on a stale version is a 409.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation import selectors as gen_selectors
from generation.models import Candidate, CandidateKind, Language, Revision
from generation.schemas import ContentError
from generation.services.candidates import StaleVersion
from psyroom_admin import roles
from psyroom_admin.api_permissions import (
    MAX_ID,
    MAX_INT,
    PAGE_PARAMETERS,
    CanReview,
    CanSeeCandidates,
    CanSignOffRisk,
    page_of,
    paginated_response,
    service_error,
)
from psyroom_admin.idempotency import idempotent

from ..forms.reviews import seconds_since, started_at_token
from ..models import Review, RiskCode, Rubric
from ..selectors import visibility
from ..services import adjudication, edits, reviews
from ..services.rubrics import rubric_get_default


def _scoped(user):
    return visibility.candidate_scope(user=user, queryset=gen_selectors.candidate_list())


def _get_candidate(pk: int, user) -> Candidate:
    """The candidate or 404. The view's permission class has already refused a user without a role (403 first);
    a counselor gets 404 for a candidate outside their campaigns."""
    return get_object_or_404(_scoped(user), pk=pk)


def _default_rubric(kind: str) -> Rubric | None:
    try:
        return rubric_get_default(kind=kind)
    except DjangoValidationError:
        return None  # a kind with no rubric yet (courses, questions): readable, not reviewable


def _turns(candidate: Candidate) -> list[dict]:
    return candidate.content.get("turns", []) if isinstance(candidate.content, dict) else []


# --- Shared output shapes ---------------------------------------------------------------------------------------


class SubEmotionOutput(serializers.Serializer):
    key = serializers.CharField()
    label_en = serializers.CharField()
    label_zh = serializers.CharField()


class RiskFlagOutput(serializers.Serializer):
    id = serializers.IntegerField(help_text="name it when signing off")
    code = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # an API field named like a DRF Field attribute
    detail = serializers.CharField(help_text="empty for another reviewer's flag in a blind campaign")
    source = serializers.CharField(help_text="screen, agent, review or inherited")  # type: ignore[assignment]  # an API field named like a DRF Field attribute
    on = serializers.CharField(help_text='for a course, the session it is on ("session 2"); else empty')
    revision = serializers.IntegerField(help_text="the revision it was raised on")
    open = serializers.BooleanField()
    signed_off_by = serializers.CharField(allow_null=True)
    signed_off_at = serializers.DateTimeField(allow_null=True)
    note = serializers.CharField()


class RiskOutput(serializers.Serializer):
    flags = RiskFlagOutput(many=True)
    open = serializers.BooleanField(help_text="a flag is open (not signed off): no approval")


def _risk(user, candidate: Candidate) -> dict:
    return visibility.candidate_view(user=user, candidate=candidate).risk


class TurnOutput(serializers.Serializer):
    index = serializers.IntegerField()
    role = serializers.CharField()
    text = serializers.CharField()
    strategy = serializers.CharField(required=False)


def _turn(candidate: Candidate, index: int) -> dict | None:
    turns = _turns(candidate)
    return {"index": index, **turns[index]} if 0 <= index < len(turns) else None


# --- Candidates -------------------------------------------------------------------------------------------------


class CandidateListFilter(serializers.Serializer):
    kind = serializers.ChoiceField(choices=CandidateKind.choices, required=False)
    status = serializers.ChoiceField(choices=Candidate.Status.choices, required=False)
    sub_emotion = serializers.SlugRelatedField(
        slug_field="key", queryset=gen_selectors.sub_emotion_list(), required=False, help_text="e.g. anxiety.1"
    )
    run = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, help_text="a generation run's id")
    language = serializers.ChoiceField(choices=Language.choices, required=False)
    reviewable = serializers.BooleanField(
        allow_null=True, default=None, help_text="true: only what waits for review (the queue)"
    )
    has_risk_flag = serializers.BooleanField(allow_null=True, default=None, help_text="any risk flag raised")
    open_risk = serializers.BooleanField(allow_null=True, default=None, help_text="a flag not yet signed off")


class CandidateListOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    language = serializers.CharField()
    version = serializers.IntegerField()
    sub_emotion = serializers.CharField(source="sub_emotion.key", allow_null=True)
    run = serializers.IntegerField(source="run_id", allow_null=True)
    run_index = serializers.IntegerField(allow_null=True)
    parent = serializers.IntegerField(source="parent_id", allow_null=True)  # type: ignore[assignment]  # an API field named like a DRF Field attribute
    has_risk_flag = serializers.SerializerMethodField()
    open_risk = serializers.BooleanField(source="has_open_risk")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_has_risk_flag(self, candidate: Candidate) -> bool:
        return bool(candidate.flagged)  # type: ignore[attr-defined]  # annotated by generation.selectors.with_risk


class CandidateListApi(APIView):
    permission_classes = [CanSeeCandidates]

    @extend_schema(
        operation_id="candidates_list",
        summary="List candidates",
        parameters=[CandidateListFilter, *PAGE_PARAMETERS],
        responses={200: page_of(CandidateListOutput, name="CandidatePage")},
        tags=["candidates"],
    )
    def get(self, request: Request) -> Response:
        filters = CandidateListFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = dict(filters.validated_data)
        if data.get("sub_emotion") is not None:
            data["sub_emotion"] = data["sub_emotion"].key
        return paginated_response(
            request=request,
            view=self,
            queryset=visibility.candidate_scope(
                user=request.user, queryset=gen_selectors.candidate_search(filters=data)
            ),
            serializer_class=CandidateListOutput,
        )


class CriterionOutput(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # an API field named like a DRF Field attribute
    help = serializers.CharField(required=False)
    anchors = serializers.DictField(child=serializers.CharField(), help_text="score (as text) -> what it means")


class RubricOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    version = serializers.IntegerField()
    criteria = CriterionOutput(many=True)


class RevisionOutput(serializers.Serializer):
    number = serializers.IntegerField()
    category = serializers.CharField()
    author = serializers.CharField(help_text='a name, "model / import", or "another reviewer" (blind)')
    reason = serializers.CharField(help_text="empty for another person's edit in a blind campaign")
    base_number = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class ReviewOutput(serializers.Serializer):
    id = serializers.IntegerField()
    reviewer = serializers.CharField()
    revision = serializers.IntegerField(help_text="the revision it judged")
    rubric = serializers.CharField()
    scores = serializers.DictField(child=serializers.IntegerField())
    decision = serializers.CharField()
    comment = serializers.CharField()
    risk_flags = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()


class ScenarioOutput(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()


class ProfileRefOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class CandidateDetailOutput(serializers.Serializer):
    id = serializers.IntegerField(source="candidate.id")
    kind = serializers.CharField(source="candidate.kind")
    status = serializers.CharField()
    language = serializers.CharField(source="candidate.language")
    version = serializers.IntegerField(
        source="candidate.version", help_text="send it back with an edit or a review (optimistic locking)"
    )
    revision = serializers.IntegerField(source="latest.number", help_text="the latest revision's number")
    content = serializers.JSONField(source="latest.content", help_text="the latest revision's content")
    sub_emotion = SubEmotionOutput(source="candidate.sub_emotion", allow_null=True)
    scenario = ScenarioOutput(source="candidate.scenario", allow_null=True)
    profile = ProfileRefOutput(source="candidate.profile", allow_null=True)
    parent = serializers.IntegerField(source="candidate.parent_id", allow_null=True)  # type: ignore[assignment]  # an API field named like a DRF Field attribute
    sequence = serializers.IntegerField(source="candidate.sequence", allow_null=True)
    run = serializers.IntegerField(source="candidate.run_id", allow_null=True)
    run_index = serializers.IntegerField(source="candidate.run_index", allow_null=True)
    lineage = serializers.JSONField(source="candidate.lineage")
    ai_review = serializers.JSONField(
        allow_null=True, help_text="the supervisor agent's judgement; null where you review blind"
    )
    approved_revision = serializers.IntegerField(
        source="candidate.approved_revision.number", allow_null=True, help_text="the revision people approved"
    )
    source = serializers.JSONField(source="candidate.source", help_text="dataset, licence, attribution (imports)")  # type: ignore[assignment]  # an API field named like a DRF Field attribute
    risk = RiskOutput()
    revisions = RevisionOutput(many=True)
    reviews = ReviewOutput(many=True)
    rubric = RubricOutput(allow_null=True, help_text="the rubric a review is scored on; null: this kind has none")
    can_review = serializers.BooleanField()
    can_sign_off = serializers.BooleanField()
    started_at = serializers.CharField(
        allow_null=True,
        help_text="reviewers only: send it back with the review, so that the server measures the time it took",
    )
    created_at = serializers.DateTimeField(source="candidate.created_at")
    updated_at = serializers.DateTimeField(source="candidate.updated_at")


class CandidateDetailApi(APIView):
    permission_classes = [CanSeeCandidates]

    @extend_schema(
        operation_id="candidates_retrieve",
        summary="A candidate with its latest content, risk flags, revisions and reviews",
        responses={200: CandidateDetailOutput},
        tags=["candidates"],
    )
    def get(self, request: Request, pk: int) -> Response:
        candidate = _get_candidate(pk, request.user)
        can_review = roles.user_can_review(request.user)
        view = visibility.candidate_view(user=request.user, candidate=candidate)
        ai_review = {k: v for k, v in view.ai_review.items() if k != "lineage"}
        data = {
            "candidate": candidate,
            "status": view.status,
            "latest": gen_selectors.candidate_latest_revision(candidate=candidate),
            "revisions": view.revisions,
            "reviews": view.reviews,
            "ai_review": None if view.blind else ai_review,
            "risk": view.risk,
            "rubric": _default_rubric(candidate.kind),
            "can_review": can_review,
            "can_sign_off": roles.user_can_sign_off_risk(request.user),
            "started_at": started_at_token() if can_review else None,
        }
        return Response(CandidateDetailOutput(data).data)


class StaleOutput(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField(help_text='"stale_version"')
    version = serializers.IntegerField(help_text="the candidate's current version")


class CandidateTurnInput(serializers.Serializer):
    text = serializers.CharField(max_length=100_000)
    version = serializers.IntegerField(
        min_value=1, max_value=MAX_INT, help_text="the candidate's version the edit is based on"
    )
    category = serializers.ChoiceField(
        choices=[(v, label) for v, label in Revision.Category.choices if v != Revision.Category.ORIGINAL],
        default=Revision.Category.WORDING,
    )
    reason = serializers.CharField(max_length=1000, allow_blank=True, default="")


class CandidateTurnOutput(serializers.Serializer):
    candidate = serializers.IntegerField(source="candidate.id")
    version = serializers.IntegerField(source="candidate.version", help_text="the new version")
    revision = serializers.IntegerField(source="revision.number")
    turn = TurnOutput()
    risk = RiskOutput(help_text="an edit that mentions self-harm raises a flag")


class CandidateTurnConflict(StaleOutput):
    turn = TurnOutput(allow_null=True, help_text="the turn as it reads now")
    draft = serializers.CharField(help_text="the text you sent, not saved")


class CandidateTurnApi(APIView):
    permission_classes = [CanReview]

    @extend_schema(
        operation_id="candidates_turn_edit",
        summary="Edit one turn: a new revision",
        request=CandidateTurnInput,
        responses={
            201: CandidateTurnOutput,
            400: OpenApiResponse(description="invalid input: {field: [messages]}"),
            404: OpenApiResponse(description="no such candidate or turn"),
            409: OpenApiResponse(CandidateTurnConflict, description="the candidate changed since `version`"),
        },
        tags=["candidates"],
    )
    @idempotent
    def post(self, request: Request, pk: int, index: int) -> Response:
        candidate = _get_candidate(pk, request.user)
        if _turn(candidate, index) is None:
            raise NotFound(f"{candidate} has no turn {index}.")
        serializer = CandidateTurnInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            revision = edits.turn_edit(
                candidate=candidate,
                editor=request.user,
                index=index,
                text=data["text"],
                base_version=data["version"],
                category=data["category"],
                reason=data["reason"],
            )
        except StaleVersion as stale:
            # Nothing was written: answer with what the turn says now, and the draft so that it is not lost.
            current = stale.candidate
            body = {
                "detail": f"{current} changed since version {data['version']}: nothing was saved. "
                f"Read the turn as it is now (version {current.version}) and edit it again.",
                "code": "stale_version",
                "version": current.version,
                "turn": _turn(current, index),
                "draft": data["text"],
            }
            return Response(CandidateTurnConflict(body).data, status=status.HTTP_409_CONFLICT)
        except DjangoValidationError as error:
            raise service_error(error, fields=CandidateTurnInput().fields) from None
        except ContentError as error:
            raise serializers.ValidationError({"text": [str(error)]}) from None
        body = {
            "candidate": candidate,
            "revision": revision,
            "turn": _turn(candidate, index),
            "risk": _risk(request.user, candidate),
        }
        return Response(CandidateTurnOutput(body).data, status=status.HTTP_201_CREATED)


class CandidateSignOffInput(serializers.Serializer):
    note = serializers.CharField(max_length=10_000, help_text="why the risk is handled acceptably in this item")
    version = serializers.IntegerField(
        min_value=1, max_value=MAX_INT, help_text="the candidate's version you read: a stale one is a 409"
    )
    flags = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        allow_empty=False,
        help_text="the ids of the open flags you read and sign off; flags not named stay open",
    )


class CandidateSignOffOutput(serializers.Serializer):
    candidate = serializers.IntegerField(source="candidate.id")
    status = serializers.CharField(source="candidate.status")
    risk = RiskOutput()


class CandidateSignOffApi(APIView):
    permission_classes = [CanSignOffRisk]

    @extend_schema(
        operation_id="candidates_sign_off",
        summary="Sign off a candidate's risk flags (senior clinicians)",
        request=CandidateSignOffInput,
        responses={
            200: CandidateSignOffOutput,
            400: OpenApiResponse(description="no note, or a flag that is not open: {field: [messages]}"),
            409: OpenApiResponse(StaleOutput, description="the candidate changed since `version`: nothing signed"),
        },
        tags=["candidates"],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        candidate = _get_candidate(pk, request.user)
        serializer = CandidateSignOffInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        adjudication.risk_sign_off(
            candidate=candidate,
            clinician=request.user,
            note=data["note"],
            flag_ids=data["flags"],
            base_version=data["version"],
        )
        body = {"candidate": candidate, "risk": _risk(request.user, candidate)}
        return Response(CandidateSignOffOutput(body).data)


# --- Reviews ----------------------------------------------------------------------------------------------------


_DOES_NOT_EXIST = serializers.PrimaryKeyRelatedField.default_error_messages["does_not_exist"]


class ReviewCreateInput(serializers.Serializer):
    candidate = serializers.PrimaryKeyRelatedField(queryset=gen_selectors.candidate_list())
    version = serializers.IntegerField(
        min_value=1, max_value=MAX_INT, help_text="the candidate's version the review judged"
    )
    scores = serializers.DictField(
        # The scale itself is the rubric's rule (reviews.validate_scores); the bounds here only keep a huge number out.
        child=serializers.IntegerField(min_value=-MAX_INT, max_value=MAX_INT),
        help_text="criterion key -> score, for every criterion of the rubric",
    )
    decision = serializers.ChoiceField(choices=Review.Decision.choices)
    comment = serializers.CharField(max_length=10_000, allow_blank=True, default="")
    risk_flags = serializers.ListField(
        child=serializers.ChoiceField(choices=RiskCode.choices), default=list, help_text="needs a comment"
    )
    started_at = serializers.CharField(
        allow_blank=True,
        default="",
        max_length=200,
        help_text="the candidate detail's `started_at`, to measure the time spent",
    )


class ReviewCreateOutput(serializers.Serializer):
    id = serializers.IntegerField()
    candidate = serializers.IntegerField(source="candidate_id")
    candidate_status = serializers.CharField(
        source="candidate.status", help_text="after the decision: approved only once the review policy is met"
    )
    revision = serializers.IntegerField(source="revision.number", help_text="the revision it judged")
    rubric = serializers.CharField(source="rubric.__str__")
    scores = serializers.DictField(child=serializers.IntegerField())
    decision = serializers.CharField()
    comment = serializers.CharField()
    risk_flags = serializers.ListField(child=serializers.CharField())
    time_spent_s = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class ReviewCreateApi(APIView):
    permission_classes = [CanReview]

    @extend_schema(
        operation_id="reviews_create",
        summary="Review a candidate: scores, a decision, risk flags",
        request=ReviewCreateInput,
        responses={
            201: ReviewCreateOutput,
            400: OpenApiResponse(description="invalid input: {field: [messages]}"),
            409: OpenApiResponse(StaleOutput, description="the candidate changed since `version`: nothing saved"),
        },
        tags=["reviews"],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = ReviewCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        candidate = data["candidate"]
        if not visibility.candidate_scope(
            user=request.user, queryset=Candidate.objects.filter(pk=candidate.pk)
        ).exists():
            # Outside the counselor's campaigns: answered as if it did not exist.
            return Response(
                # DRF's own words for an unknown id (and its translations): nothing tells the two apart.
                {"candidate": [_DOES_NOT_EXIST.format(pk_value=candidate.pk)]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        review = reviews.review_submit(
            candidate=candidate,
            reviewer=request.user,
            scores=data["scores"],
            decision=data["decision"],
            comment=data["comment"],
            risk_flags=data["risk_flags"],
            base_version=data["version"],
            time_spent_s=seconds_since(data["started_at"]),
        )
        review.candidate.refresh_from_db()
        return Response(ReviewCreateOutput(review).data, status=status.HTTP_201_CREATED)


# --- Psyche-R1 questions -----------------------------------------------------------------------------------------


class QuestionListFilter(serializers.Serializer):
    difficulty = serializers.ChoiceField(choices=["hard", "easy"], required=False)
    status = serializers.ChoiceField(choices=Candidate.Status.choices, required=False)


class QuestionAnswerOutput(serializers.Serializer):
    model = serializers.CharField()
    answer = serializers.CharField(allow_null=True)
    correct = serializers.BooleanField()
    rationale = serializers.CharField(allow_blank=True, default="")
    error = serializers.CharField(required=False)
    raw = serializers.CharField(allow_blank=True)


class QuestionListOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    version = serializers.IntegerField()
    subject = serializers.CharField(source="content.subject", default="")
    question_type = serializers.CharField(source="content.question_type")
    question = serializers.CharField(source="content.question")
    options = serializers.DictField(source="content.options", child=serializers.CharField())
    answer = serializers.CharField(source="content.answer")
    difficulty = serializers.CharField(source="content.difficulty", default=None, allow_null=True)
    run = serializers.IntegerField(source="run_id", allow_null=True)
    parent = serializers.IntegerField(source="parent_id", allow_null=True)  # type: ignore[assignment]  # an API field named like a DRF Field attribute


class QuestionDetailOutput(QuestionListOutput):
    explanation = serializers.CharField(source="content.explanation", default="")
    answers = QuestionAnswerOutput(source="content.answers", many=True, default=list)
    selection = serializers.DictField(source="content.selection", default=None, allow_null=True)
    chosen = serializers.IntegerField(source="content.chosen", default=None, allow_null=True)
    source = serializers.DictField()  # type: ignore[assignment]  # an API field named like a DRF Field attribute


class QuestionListApi(APIView):
    permission_classes = [CanSeeCandidates]

    @extend_schema(
        operation_id="questions_list",
        summary="List questions (Psyche-R1), optionally only the hard or the easy ones",
        parameters=[QuestionListFilter, *PAGE_PARAMETERS],
        responses={200: page_of(QuestionListOutput, name="QuestionPage")},
        tags=["questions"],
    )
    def get(self, request: Request) -> Response:
        filters = QuestionListFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = visibility.candidate_scope(
            user=request.user, queryset=gen_selectors.question_list(difficulty=filters.validated_data.get("difficulty"))
        )
        if filters.validated_data.get("status"):
            queryset = queryset.filter(status=filters.validated_data["status"])
        return paginated_response(request=request, view=self, queryset=queryset, serializer_class=QuestionListOutput)


class QuestionDetailApi(APIView):
    permission_classes = [CanSeeCandidates]

    @extend_schema(
        operation_id="questions_detail",
        summary="A question with every model's answer and rationale",
        responses={200: QuestionDetailOutput},
        tags=["questions"],
    )
    def get(self, request: Request, pk: int) -> Response:
        question = get_object_or_404(_scoped(request.user).filter(kind=CandidateKind.QUESTION), pk=pk)
        return Response(QuestionDetailOutput(question).data)
