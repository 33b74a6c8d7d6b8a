"""The campaign API (see docs/api.md): campaigns, the queue (next, release), reviews with an idempotency key,
adjudications and drafts.

Each view checks the role with a permission class and calls ``annotations.services``, which checks it again (a
counselor only ever reaches their own campaigns and assignments). Missing or out-of-scope records are 404.
"""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation import selectors as gen_selectors
from psyroom_admin import edge, roles
from psyroom_admin.api_permissions import (
    MAX_ID,
    MAX_INT,
    MAX_USER_ID,
    CanReview,
    CanSeeCandidates,
    CanSignOffRisk,
    service_error,
)
from psyroom_admin.idempotency import idempotent

from ..models import Assignment, CampaignItem, Review, RiskCode
from ..selectors import gold as gold_selectors
from ..selectors import queues, visibility
from ..services import adjudication, campaigns, drafts, gold, policy, queue, reviews

DECISIONS = Review.Decision.choices


class CanCreateCampaign(BasePermission):
    message = "Only curators and administrators create campaigns."

    def has_permission(self, request, view) -> bool:
        if request.method != "POST":
            return True
        return roles.user_has_role(request.user, *campaigns.CAMPAIGN_MANAGERS)


# --- Campaigns ---------------------------------------------------------------------------------------------------


class CampaignOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    overlap = serializers.IntegerField(help_text="k: reviews per candidate")
    blind = serializers.BooleanField()
    status = serializers.CharField()
    guidelines = serializers.CharField()
    policy = serializers.SerializerMethodField()
    lease_seconds = serializers.IntegerField()
    rubric = serializers.CharField(source="rubric.__str__")
    items = serializers.SerializerMethodField()

    def get_policy(self, campaign) -> dict:
        return visibility.campaign_policy_for(user=self.context["request"].user, campaign=campaign)

    def get_items(self, campaign) -> dict:
        return visibility.campaign_item_counts(user=self.context["request"].user, campaign=campaign)


class CampaignCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    kind = serializers.CharField(default="dialogue", max_length=32)
    # The ranges are the service's rules (campaigns.campaign_create); these bounds only keep a huge number out.
    overlap = serializers.IntegerField(
        min_value=-MAX_INT, max_value=MAX_INT, help_text="k: reviews per candidate (1 to 20)"
    )
    members = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_USER_ID), max_length=10_000, help_text="user ids"
    )
    guidelines = serializers.CharField(required=False, allow_blank=True, default="")
    blind = serializers.BooleanField(default=True)
    policy = serializers.DictField(required=False)
    lease_seconds = serializers.IntegerField(
        default=1800, min_value=-MAX_INT, max_value=MAX_INT, help_text="30 seconds to 7 days"
    )
    filters = serializers.DictField(
        required=False, help_text='{"sub_emotions", "scenarios", "run", "sources", "status"}'
    )
    candidate_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), max_length=100_000, required=False
    )


class CampaignsApi(APIView):
    permission_classes = [CanSeeCandidates, CanCreateCampaign]

    @extend_schema(operation_id="campaigns_list", responses={200: CampaignOutput(many=True)}, tags=["campaigns"])
    def get(self, request: Request) -> Response:
        rows = visibility.campaign_list_for(user=request.user)
        return Response(CampaignOutput(rows, many=True, context={"request": request}).data)

    @extend_schema(
        operation_id="campaigns_create",
        request=CampaignCreateInput,
        responses={201: CampaignOutput, 400: OpenApiResponse(description="{field: [messages]}")},
        tags=["campaigns"],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = CampaignCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        ids = data.pop("members")
        members = list(get_user_model().objects.filter(pk__in=ids))
        missing = sorted(set(ids) - {u.pk for u in members})
        if missing:
            raise serializers.ValidationError({"members": [f"no user with id {', '.join(map(str, missing))}"]})
        try:
            campaign = campaigns.campaign_create(creator=request.user, members=members, **data)
        except DjangoValidationError as error:
            raise service_error(error, fields=CampaignCreateInput().fields) from None
        return Response(CampaignOutput(campaign, context={"request": request}).data, status=status.HTTP_201_CREATED)


def _campaign(request, pk):
    return get_object_or_404(visibility.campaign_list_for(user=request.user), pk=pk)


class CampaignDetailApi(APIView):
    permission_classes = [CanSeeCandidates]

    @extend_schema(operation_id="campaigns_retrieve", responses={200: CampaignOutput}, tags=["campaigns"])
    def get(self, request: Request, pk: int) -> Response:
        return Response(CampaignOutput(_campaign(request, pk), context={"request": request}).data)


# --- The review policy outside campaigns -------------------------------------------------------------------------


class ReviewPolicyInput(serializers.Serializer):
    # The ranges are the service's rules (policy.review_policy_set); these bounds only keep a huge number out.
    min_senior_approvals = serializers.IntegerField(
        min_value=-MAX_INT, max_value=MAX_INT, help_text="senior clinicians whose approval suffices (1-10)"
    )
    min_counselor_approvals = serializers.IntegerField(
        min_value=-MAX_INT, max_value=MAX_INT, help_text="counselors whose approval suffices (1-20)"
    )
    min_mean = serializers.FloatField(help_text="every criterion's mean over the approving reviews reaches this (1-5)")


class ReviewPolicyOutput(ReviewPolicyInput):
    updated_by = serializers.CharField(source="updated_by.username", allow_null=True, default=None)
    updated_at = serializers.DateTimeField()


class CanSetReviewPolicy(BasePermission):
    message = "Only curators and administrators set the review policy."

    def has_permission(self, request, view) -> bool:
        return request.method in ("GET", "HEAD") or roles.user_has_role(request.user, roles.CURATOR, roles.ADMIN)


class ReviewPolicyApi(APIView):
    """When reviews outside any campaign approve a candidate (a campaign has its own policy)."""

    permission_classes = [CanSeeCandidates, CanSetReviewPolicy]

    @extend_schema(operation_id="review_policy_retrieve", responses={200: ReviewPolicyOutput}, tags=["campaigns"])
    def get(self, request: Request) -> Response:
        return Response(ReviewPolicyOutput(policy.review_policy_get()).data)

    @extend_schema(
        operation_id="review_policy_update",
        request=ReviewPolicyInput,
        responses={200: ReviewPolicyOutput, 400: OpenApiResponse(description="{field: [messages]}")},
        tags=["campaigns"],
    )
    @idempotent
    def put(self, request: Request) -> Response:
        serializer = ReviewPolicyInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        review_policy = policy.review_policy_set(user=request.user, **serializer.validated_data)
        return Response(ReviewPolicyOutput(review_policy).data)


# --- The queue ---------------------------------------------------------------------------------------------------


class AssignmentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = serializers.IntegerField(source="item.campaign_id")
    candidate = serializers.IntegerField(source="item.candidate_id")
    version = serializers.IntegerField(source="item.candidate.version")
    status = serializers.CharField()
    claimed_at = serializers.DateTimeField()
    lease_expires_at = serializers.DateTimeField()


class CampaignNextApi(APIView):
    permission_classes = [CanReview]

    @extend_schema(
        operation_id="campaigns_next",
        request=None,
        responses={200: AssignmentOutput, 204: OpenApiResponse(description="nothing left for you")},
        tags=["campaigns"],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        campaign = _campaign(request, pk)
        assignment = queue.queue_claim_next(campaign=campaign, counselor=request.user)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(AssignmentOutput(assignment).data)


def _assignment(request, pk) -> Assignment:
    qs = Assignment.objects.select_related("item__campaign__rubric", "item__candidate")
    return get_object_or_404(qs, pk=pk, counselor=request.user)


class AssignmentReleaseApi(APIView):
    permission_classes = [CanReview]

    @extend_schema(operation_id="assignments_release", request=None, responses={204: None}, tags=["campaigns"])
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        assignment = _assignment(request, pk)
        try:
            queue.assignment_release(assignment=assignment, counselor=request.user)
        except DjangoValidationError as error:
            raise service_error(error, fields={"assignment"}) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class CampaignReviewInput(serializers.Serializer):
    scores = serializers.DictField(child=serializers.IntegerField(min_value=1, max_value=5))
    decision = serializers.ChoiceField(choices=DECISIONS)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)
    risk_flags = serializers.ListField(child=serializers.ChoiceField(choices=RiskCode.choices), required=False)
    version = serializers.IntegerField(
        min_value=1, max_value=MAX_INT, help_text="the candidate version the review was written against"
    )
    time_spent_s = serializers.IntegerField(required=False, default=0, min_value=0, max_value=MAX_INT)
    idempotency_key = serializers.CharField(
        required=False, max_length=64, help_text="or the Idempotency-Key header: a retry with it saves nothing new"
    )


class CampaignReviewOutput(serializers.Serializer):
    id = serializers.IntegerField()
    candidate = serializers.IntegerField(source="candidate_id")
    campaign = serializers.IntegerField(source="campaign_id")
    decision = serializers.CharField()
    scores = serializers.DictField()
    idempotency_key = serializers.CharField(allow_null=True)


class AssignmentReviewApi(APIView):
    permission_classes = [CanReview]

    @extend_schema(
        operation_id="assignments_review",
        request=CampaignReviewInput,
        responses={
            201: CampaignReviewOutput,
            400: OpenApiResponse(description="{field: [messages]}"),
            409: OpenApiResponse(description="the candidate changed since `version`: nothing saved"),
        },
        tags=["campaigns"],
    )
    @idempotent(body_field="idempotency_key")
    def post(self, request: Request, pk: int) -> Response:
        assignment = _assignment(request, pk)
        serializer = CampaignReviewInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        key = data.get("idempotency_key") or request.headers.get("Idempotency-Key") or None
        review = reviews.review_submit(
            candidate=assignment.item.candidate,
            assignment=assignment,
            reviewer=request.user,
            scores=data["scores"],
            decision=data["decision"],
            comment=data["comment"],
            risk_flags=data.get("risk_flags") or [],
            base_version=data["version"],
            time_spent_s=data["time_spent_s"],
            idempotency_key=key,
        )
        return Response(CampaignReviewOutput(review).data, status=status.HTTP_201_CREATED)


# --- Adjudication ------------------------------------------------------------------------------------------------


class ItemOutput(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = serializers.IntegerField(source="campaign_id")
    candidate = serializers.IntegerField(source="candidate_id")
    version = serializers.IntegerField(source="candidate.version")
    state = serializers.CharField()
    reviews_done = serializers.IntegerField()
    open_risk = serializers.BooleanField(source="candidate.has_open_risk")


class AdjudicationsApi(APIView):
    permission_classes = [CanSignOffRisk]

    @extend_schema(operation_id="adjudications_queue", responses={200: ItemOutput(many=True)}, tags=["campaigns"])
    def get(self, request: Request) -> Response:
        items = queues.adjudication_queue(clinician=request.user)[:200]
        return Response(ItemOutput(items, many=True).data)


class AdjudicateInput(serializers.Serializer):
    decision = serializers.ChoiceField(choices=DECISIONS)
    reason = serializers.CharField(max_length=10_000)
    version = serializers.IntegerField(min_value=1, max_value=MAX_INT)
    flags = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        default=list,
        help_text="the ids of the open risk flags you read: approving signs them off; a flag not named stays open",
    )


class AdjudicationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    candidate = serializers.IntegerField(source="candidate_id")
    campaign = serializers.IntegerField(source="campaign_id")
    decision = serializers.CharField()
    reason = serializers.CharField()


class AdjudicateApi(APIView):
    permission_classes = [CanSignOffRisk]

    @extend_schema(
        operation_id="adjudications_decide",
        request=AdjudicateInput,
        responses={
            201: AdjudicationOutput,
            400: OpenApiResponse(
                description="a rule refused it (not waiting for adjudication, you rated it, a flag "
                "you did not read): {field: [messages]}"
            ),
            409: OpenApiResponse(description="stale version: nothing saved"),
        },
        tags=["campaigns"],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        item = get_object_or_404(CampaignItem.objects.select_related("campaign", "candidate"), pk=pk)
        serializer = AdjudicateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        decided = adjudication.adjudicate(
            item=item,
            clinician=request.user,
            decision=data["decision"],
            reason=data["reason"],
            base_version=data["version"],
            flag_ids=data["flags"],
        )
        return Response(AdjudicationOutput(decided).data, status=status.HTTP_201_CREATED)


# --- Drafts ------------------------------------------------------------------------------------------------------


class DraftApi(APIView):
    permission_classes = [CanReview]
    # A draft is a JSON object (what the review form holds so far); a form or multipart body is a 415.
    parser_classes = [edge.JSONParser]

    def _candidate(self, request, pk):
        visible = visibility.candidate_scope(user=request.user, queryset=gen_selectors.candidate_list())
        return get_object_or_404(visible, pk=pk)

    @extend_schema(
        operation_id="drafts_retrieve",
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="the draft; {} when there is none")},
        tags=["campaigns"],
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(drafts.draft_get(user=request.user, candidate=self._candidate(request, pk)))

    @extend_schema(
        operation_id="drafts_save",
        request=OpenApiTypes.OBJECT,
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="the draft as saved"),
            400: OpenApiResponse(description="not an object, an unknown field or too long: {data: [message]}"),
        },
        tags=["campaigns"],
    )
    @idempotent
    def put(self, request: Request, pk: int) -> Response:
        candidate = self._candidate(request, pk)
        # A JSON body may be any value; the service refuses what is not an object (a list, a number) with a 400.
        data = dict(request.data) if isinstance(request.data, dict) else request.data
        try:
            draft = drafts.draft_save(user=request.user, candidate=candidate, data=data)
        except DjangoValidationError as error:
            raise service_error(error, fields={"data"}) from None
        return Response(draft.data)


# --- Reference items (gold) --------------------------------------------------------------------------------------


class CanMarkGold(BasePermission):
    message = "Only curators and administrators mark reference items."

    def has_permission(self, request, view) -> bool:
        return roles.user_has_role(request.user, *gold.GOLD_MANAGERS)


class GoldMarkInput(serializers.Serializer):
    candidate = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="an approved candidate's id")
    # Checked by the service against the campaign's rubric, which names a bad criterion or score.
    scores = serializers.DictField(help_text="the reference score of each criterion of the campaign's rubric")
    decision = serializers.ChoiceField(choices=DECISIONS, help_text="the reference decision")


class GoldItemOutput(serializers.Serializer):
    campaign = serializers.IntegerField(source="item.campaign_id")
    candidate = serializers.IntegerField(source="item.candidate_id")
    scores = serializers.DictField(child=serializers.IntegerField())
    decision = serializers.CharField()
    active = serializers.BooleanField(help_text="served to counselors; false once unmarked")
    marked_by = serializers.CharField(source="marked_by.get_username", allow_null=True, default=None)
    marked_at = serializers.DateTimeField()
    reviews = serializers.IntegerField(source="review_count", default=0, help_text="counselors' reviews of it")


class CampaignGoldApi(APIView):
    permission_classes = [CanMarkGold]

    @extend_schema(operation_id="campaigns_gold_list", responses={200: GoldItemOutput(many=True)}, tags=["campaigns"])
    def get(self, request: Request, pk: int) -> Response:
        rows = gold_selectors.gold_list(campaign=_campaign(request, pk), user=request.user)
        return Response(GoldItemOutput(rows, many=True).data)

    @extend_schema(
        operation_id="campaigns_gold_mark",
        request=GoldMarkInput,
        responses={201: GoldItemOutput, 400: OpenApiResponse(description="{field: [messages]}")},
        tags=["campaigns"],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        campaign = _campaign(request, pk)
        serializer = GoldMarkInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        candidate = get_object_or_404(gen_selectors.candidate_list(), pk=data["candidate"])
        try:
            marked = gold.gold_mark(
                campaign=campaign,
                candidate=candidate,
                user=request.user,
                scores=data["scores"],
                decision=data["decision"],
            )
        except DjangoValidationError as error:
            raise service_error(error, fields=GoldMarkInput().fields) from None
        return Response(GoldItemOutput(marked).data, status=status.HTTP_201_CREATED)


class CampaignGoldItemApi(APIView):
    permission_classes = [CanMarkGold]

    @extend_schema(operation_id="campaigns_gold_unmark", request=None, responses={204: None}, tags=["campaigns"])
    @idempotent
    def delete(self, request: Request, pk: int, candidate: int) -> Response:
        campaign = _campaign(request, pk)
        found = get_object_or_404(gen_selectors.candidate_list(), pk=candidate)
        try:
            gold.gold_unmark(campaign=campaign, candidate=found, user=request.user)
        except DjangoValidationError as error:
            raise service_error(error, fields={"candidate"}) from None
        return Response(status=status.HTTP_204_NO_CONTENT)
