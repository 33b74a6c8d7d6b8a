"""The dashboards' numbers as JSON (see docs/api.md): ``GET /api/dashboards/campaigns/<id>/agreement/``.

Who sees what is decided in ``dashboards.selectors`` (on ``annotations.selectors.visibility``); the view checks the
role, validates the filters and serialises what the selector returns. An undefined number is ``{"value": null,
"reason": "..."}``, never 0 or 1.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations.models import Campaign
from psyroom_admin.api_permissions import CanSeeCandidates

from . import selectors
from .forms import category_exists, model_exists, prompt_version_exists, sub_emotion_exists, unknown_parameters
from .selectors import AgreementFilters
from .selectors.calibration import CalibrationFilters, calibration_for
from .selectors.coverage import coverage_get
from .selectors.funnel import GROUPS, STAGES, FunnelFilters, funnel_for
from .selectors.gold import gold_accuracy_for

# DRF reads ?format= to choose a renderer (json, api): it is no filter, but no error either.
RENDERER_PARAMETER = "format"


class QueryFilterInput(serializers.Serializer):
    """Filters read from a query string, each dashboard's starting with a date range. DRF reads a parameter sent
    empty (``?since=``) as if it were absent; the schema says a date, a number or a choice, so an empty one is
    refused by name (text filters may be empty)."""

    since = serializers.DateField(required=False, input_formats=["iso-8601"])
    until = serializers.DateField(required=False, input_formats=["iso-8601"])

    def to_internal_value(self, data):
        empty = {
            name: ["may be left out, but not sent empty"]
            for name, field in self.fields.items()
            if data.get(name) == "" and not isinstance(field, serializers.CharField)
        }
        if empty:
            raise serializers.ValidationError(empty)
        return super().to_internal_value(data)

    def validate(self, attrs):
        since, until = attrs.get("since"), attrs.get("until")
        if since and until and since > until:
            raise serializers.ValidationError({"until": ["must be on or after since"]})
        return attrs


class AgreementFilterInput(QueryFilterInput):
    sub_emotion = serializers.CharField(required=False, max_length=32, validators=[sub_emotion_exists])
    model = serializers.CharField(required=False, max_length=100, validators=[model_exists])


class EstimateOutput(serializers.Serializer):
    value = serializers.FloatField(allow_null=True, help_text="null when the number is undefined")
    reason = serializers.CharField(help_text="why the value is undefined; empty when it is defined")


class IntervalOutput(serializers.Serializer):
    low = EstimateOutput()
    high = EstimateOutput()


class AgreementMetricOutput(serializers.Serializer):
    key = serializers.CharField(help_text="a rubric criterion's key, 'decision', or a risk-flag code ('any': any flag)")
    label = serializers.CharField()  # type: ignore[assignment]  # an API field named like a DRF Field attribute
    level = serializers.CharField(help_text="Krippendorff's level of measurement: ordinal or nominal")
    items = serializers.IntegerField(help_text="items rated by two or more raters")
    ratings = serializers.IntegerField()
    alpha = EstimateOutput(help_text="Krippendorff's alpha")
    alpha_ci = IntervalOutput(help_text="95% bootstrap interval of alpha (items resampled, 1,000 draws, seeded)")
    percent_agreement = EstimateOutput(help_text="share of agreeing pairs of ratings of the same item")
    agreement_ci = IntervalOutput(help_text="95% bootstrap interval of the percent agreement")


class PairKappaOutput(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # an API field named like a DRF Field attribute
    kappa = EstimateOutput(help_text="Cohen's kappa: quadratic weights for scores, unweighted for the decision")


class RaterPairOutput(serializers.Serializer):
    rater_a = serializers.CharField()
    rater_b = serializers.CharField()
    shared_items = serializers.IntegerField()
    kappas = PairKappaOutput(many=True)


class RaterConsensusOutput(serializers.Serializer):
    rater = serializers.CharField(help_text='a name, or "Rater n" where you work blind')
    own = serializers.BooleanField(help_text="this row is yours")
    reviews = serializers.IntegerField()
    shared_items = serializers.IntegerField(help_text="reviews of items another rater also rated")
    mad = EstimateOutput(help_text="mean absolute difference from the others' mean score, all criteria")
    kappa = EstimateOutput(help_text="quadratic kappa against the others' mean score rounded, all criteria")
    decision_agreement = EstimateOutput(help_text="share of decisions equal to the others' majority")


class RaterWeekOutput(RaterConsensusOutput):
    week = serializers.CharField(help_text="ISO week, e.g. 2026-W49")


class AgreementCampaignOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    blind = serializers.BooleanField()


class AgreementFiltersOutput(serializers.Serializer):
    since = serializers.DateField(allow_null=True)
    until = serializers.DateField(allow_null=True)
    sub_emotion = serializers.CharField(allow_null=True)
    model = serializers.CharField(allow_null=True)


class AgreementOutput(serializers.Serializer):
    campaign = AgreementCampaignOutput()
    filters = AgreementFiltersOutput()
    scope = serializers.CharField(help_text='"all": every rater\'s numbers; "own": only your own rows')
    reviews = serializers.IntegerField()
    items = serializers.IntegerField()
    raters = serializers.IntegerField()
    criteria = AgreementMetricOutput(many=True)
    decision = AgreementMetricOutput(allow_null=True)
    risk_flags = AgreementMetricOutput(many=True)
    pairs = RaterPairOutput(many=True, help_text=f"pairs with at least {selectors.MIN_SHARED_ITEMS} shared items")
    per_rater = RaterConsensusOutput(many=True, source="rater_rows")
    per_rater_weekly = RaterWeekOutput(many=True, source="weekly")


class GoldCriterionOutput(serializers.Serializer):
    criterion = serializers.CharField()
    mad = EstimateOutput(help_text="mean absolute difference from the reference score")


class GoldRowOutput(serializers.Serializer):
    rater = serializers.CharField(help_text='a name, or "Rater n" where you work blind')
    own = serializers.BooleanField(help_text="this row is yours")
    items = serializers.IntegerField(help_text="reference items reviewed")
    decision_accuracy = EstimateOutput(help_text="share of decisions equal to the reference decision")
    decision_ci = IntervalOutput(help_text="95% Wilson interval of the decision accuracy")
    mad = EstimateOutput(help_text="mean absolute difference from the reference scores, all criteria")
    criteria = serializers.SerializerMethodField()

    @extend_schema_field(GoldCriterionOutput(many=True))
    def get_criteria(self, row) -> list[dict]:
        return [dict(GoldCriterionOutput({"criterion": c, "mad": m}).data) for c, m in row.criteria]


class GoldAccuracyOutput(serializers.Serializer):
    campaign = AgreementCampaignOutput()
    scope = serializers.CharField(
        help_text='"all": every reviewer; "own": only your own row, over your reviews submitted before today'
    )
    criteria = serializers.ListField(child=serializers.CharField(), help_text="the rubric's criteria, in order")
    rows = GoldRowOutput(many=True)


# The query parameters of a campaign's agreement and of its reviewers' accuracy on reference items.
AGREEMENT_PARAMETERS = [
    OpenApiParameter("since", OpenApiTypes.DATE, description="reviews submitted on or after this date"),
    OpenApiParameter("until", OpenApiTypes.DATE, description="reviews submitted on or before this date"),
    OpenApiParameter("sub_emotion", OpenApiTypes.STR, description="candidates of this sub-emotion (its key)"),
    OpenApiParameter(
        "model",
        OpenApiTypes.STR,
        description="candidates generated by this model spec (its name); senior clinicians, curators, admins",
    ),
]


def _agreement_filters(request: Request) -> AgreementFilters:
    """The agreement's filters read from the query string: the ones this user may use, each checked."""
    _check_unknown(request, selectors.filter_names(user=request.user))
    params = AgreementFilterInput(data=request.query_params)
    params.is_valid(raise_exception=True)
    return AgreementFilters(**params.validated_data)


class CampaignAgreementApi(APIView):
    permission_classes = [CanSeeCandidates]

    @extend_schema(
        operation_id="dashboards_campaign_agreement",
        parameters=AGREEMENT_PARAMETERS,
        responses={200: AgreementOutput},
        tags=["dashboards"],
    )
    def get(self, request: Request, pk: int) -> Response:
        campaign = selectors.campaign_get(user=request.user, campaign_id=pk)
        filters = _agreement_filters(request)
        agreement = selectors.agreement_for(user=request.user, campaign=campaign, filters=filters)
        return Response(AgreementOutput(agreement).data)


# --- AI against clinicians ------------------------------------------------------------------------------------------


class SeesAll(BasePermission):
    """Senior clinicians, curators and admins: the dashboards on the AI's judgement and the whole pipeline."""

    message = "This dashboard is for senior clinicians, curators and admins."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and selectors.sees_all(request.user))


def _check_unknown(request: Request, allowed: tuple[str, ...]) -> None:
    unknown = unknown_parameters(request.query_params, (*allowed, RENDERER_PARAMETER))
    if unknown:
        message = f"unknown filter: the filters are {', '.join(allowed)}"
        raise serializers.ValidationError({name: [message] for name in unknown})


class CalibrationFilterInput(QueryFilterInput):
    model = serializers.CharField(required=False, max_length=100, validators=[model_exists])
    prompt_version = serializers.CharField(required=False, max_length=32, validators=[prompt_version_exists])
    campaign = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    category = serializers.CharField(required=False, max_length=32, validators=[category_exists])

    def validate_campaign(self, value: int) -> Campaign:
        campaign = selectors.campaigns_for(user=self.context["user"]).filter(pk=value).first()
        if campaign is None:
            raise serializers.ValidationError(f"no campaign {value} that you may open")
        return campaign


class CriterionCalibrationOutput(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # an API field named like a DRF Field attribute
    items = serializers.IntegerField(help_text="items scored by the supervisor and by at least one clinician")
    spearman = EstimateOutput(help_text="Spearman's rank correlation of the AI's score and the clinicians' mean")
    spearman_ci = IntervalOutput(help_text="95% bootstrap interval (pairs resampled, 1,000 draws, seeded)")
    bias = EstimateOutput(help_text="mean of the AI's score less the clinicians' mean")
    table = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()),
        help_text="table[i][j]: items the AI scored i+1 whose clinicians' mean, rounded half up, is j+1",
    )


class LabelOutput(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # an API field named like a DRF Field attribute


class ConfusionOutput(serializers.Serializer):
    rows = serializers.SerializerMethodField(help_text="the targets: categories, or one category's sub-emotions")
    columns = serializers.SerializerMethodField(
        help_text='the classifier\'s labels, then "other" (another category, in a drill-down) and "none" (no label)'
    )
    counts = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField()))

    @extend_schema_field(LabelOutput(many=True))
    def get_rows(self, confusion) -> list[dict]:
        return [{"key": key, "label": label} for key, label in confusion.rows]

    @extend_schema_field(LabelOutput(many=True))
    def get_columns(self, confusion) -> list[dict]:
        return [{"key": key, "label": label} for key, label in confusion.columns]


class CalibrationGroupOutput(serializers.Serializer):
    model = serializers.CharField(help_text="a model spec's name; empty: all models and prompt versions together")
    prompt_version = serializers.CharField()
    scored_items = serializers.IntegerField()
    criteria = CriterionCalibrationOutput(many=True)
    classified = serializers.IntegerField(help_text="candidates with a target the classifier was asked to label")
    accuracy = EstimateOutput(help_text="share labelled with the target sub-emotion")
    accuracy_ci = IntervalOutput(help_text="95% Wilson interval")
    category_accuracy = EstimateOutput(help_text="share labelled with a sub-emotion of the target's category")
    category_accuracy_ci = IntervalOutput()
    confusion = ConfusionOutput()


class CalibrationFiltersOutput(serializers.Serializer):
    since = serializers.DateField(allow_null=True)
    until = serializers.DateField(allow_null=True)
    model = serializers.CharField(allow_null=True)
    prompt_version = serializers.CharField(allow_null=True)
    campaign = serializers.IntegerField(allow_null=True, source="campaign.pk", default=None)
    category = serializers.CharField(allow_null=True)


class CalibrationOutput(serializers.Serializer):
    filters = CalibrationFiltersOutput()
    groups = CalibrationGroupOutput(many=True, help_text="all together first, then each model spec and prompt version")


CALIBRATION_PARAMETERS = [
    OpenApiParameter("since", OpenApiTypes.DATE, description="candidates generated on or after this date"),
    OpenApiParameter("until", OpenApiTypes.DATE, description="candidates generated on or before this date"),
    OpenApiParameter("model", OpenApiTypes.STR, description="a model spec's name"),
    OpenApiParameter("prompt_version", OpenApiTypes.STR, description="a prompt version a run used"),
    OpenApiParameter("campaign", OpenApiTypes.INT, description="the candidates and reviews of this campaign"),
    OpenApiParameter("category", OpenApiTypes.STR, description="the confusion matrix of this category's sub-emotions"),
]


class CalibrationApi(APIView):
    permission_classes = [SeesAll]

    @extend_schema(
        operation_id="dashboards_calibration",
        parameters=CALIBRATION_PARAMETERS,
        responses={200: CalibrationOutput},
        tags=["dashboards"],
    )
    def get(self, request: Request) -> Response:
        _check_unknown(request, tuple(CalibrationFilterInput().fields))
        params = CalibrationFilterInput(data=request.query_params, context={"user": request.user})
        params.is_valid(raise_exception=True)
        result = calibration_for(filters=CalibrationFilters(**params.validated_data))
        return Response(CalibrationOutput(result).data)


# --- Coverage -------------------------------------------------------------------------------------------------------


class SubEmotionCoverageOutput(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # an API field named like a DRF Field attribute
    generated = serializers.IntegerField(help_text="dialogues of this sub-emotion, every status")
    waiting = serializers.IntegerField(help_text="generated, in review or needing revision")
    approved = serializers.IntegerField()
    released = serializers.IntegerField(help_text="approved dialogues at least one ready release holds")
    quota = serializers.IntegerField()
    missing = serializers.IntegerField(help_text="max(0, quota - approved - waiting)")


class CategoryCoverageOutput(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # an API field named like a DRF Field attribute
    approved = serializers.IntegerField()
    released = serializers.IntegerField()
    missing = serializers.IntegerField()
    subs = SubEmotionCoverageOutput(many=True)


class CoverageOutput(serializers.Serializer):
    quota = serializers.IntegerField(help_text="approved dialogues each sub-emotion should have")
    missing = serializers.IntegerField()
    categories = CategoryCoverageOutput(many=True)


class CoverageApi(APIView):
    permission_classes = [SeesAll]

    @extend_schema(operation_id="dashboards_coverage", responses={200: CoverageOutput}, tags=["dashboards"])
    def get(self, request: Request) -> Response:
        _check_unknown(request, ())
        return Response(CoverageOutput(coverage_get()).data)


# --- Funnel and throughput --------------------------------------------------------------------------------------


class FunnelFilterInput(QueryFilterInput):
    campaign = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    by = serializers.ChoiceField(required=False, choices=list(GROUPS))

    validate_campaign = CalibrationFilterInput.validate_campaign


class FunnelRowOutput(serializers.Serializer):
    group = serializers.CharField()
    counts = serializers.DictField(child=serializers.IntegerField(), help_text=f"by stage: {', '.join(STAGES)}")


class CountOutput(serializers.Serializer):
    name = serializers.CharField()
    count = serializers.IntegerField()


class ThroughputOutput(serializers.Serializer):
    reviewer = serializers.CharField()
    own = serializers.BooleanField()
    reviews = serializers.IntegerField()
    hours = serializers.FloatField(help_text="review time measured by the review form")
    items_per_hour = serializers.FloatField(allow_null=True)
    median_seconds = serializers.FloatField(allow_null=True)
    edited_share = serializers.FloatField(allow_null=True, help_text="share of reviewed items the reviewer edited")
    fast = serializers.IntegerField(help_text="reviews faster than floor_seconds")
    suspicious = serializers.BooleanField()


def _counts(pairs) -> list[dict]:
    return [{"name": name, "count": n} for name, n in pairs]


class FunnelOutput(serializers.Serializer):
    scope = serializers.CharField(help_text='"all", or "own": only your throughput row')
    by = serializers.CharField(source="filters.by")
    floor_seconds = serializers.IntegerField()
    stages = FunnelRowOutput(many=True)
    rejection_criteria = serializers.SerializerMethodField()
    risk_flags = serializers.SerializerMethodField()
    edits = serializers.SerializerMethodField()
    throughput = ThroughputOutput(many=True)

    @extend_schema_field(CountOutput(many=True))
    def get_rejection_criteria(self, funnel) -> list[dict]:
        return _counts(funnel.rejection_criteria)

    @extend_schema_field(CountOutput(many=True))
    def get_risk_flags(self, funnel) -> list[dict]:
        return _counts(funnel.risk_flags)

    @extend_schema_field(CountOutput(many=True))
    def get_edits(self, funnel) -> list[dict]:
        return _counts(funnel.edits)


class FunnelApi(APIView):
    permission_classes = [CanSeeCandidates]

    @extend_schema(
        operation_id="dashboards_funnel",
        parameters=[
            OpenApiParameter("since", OpenApiTypes.DATE, description="candidates and reviews from this date"),
            OpenApiParameter("until", OpenApiTypes.DATE, description="candidates and reviews until this date"),
            OpenApiParameter("campaign", OpenApiTypes.INT, description="a campaign you may open"),
            OpenApiParameter("by", OpenApiTypes.STR, enum=list(GROUPS), description="how the funnel is grouped"),
        ],
        responses={200: FunnelOutput},
        tags=["dashboards"],
    )
    def get(self, request: Request) -> Response:
        _check_unknown(request, tuple(FunnelFilterInput().fields))
        params = FunnelFilterInput(data=request.query_params, context={"user": request.user})
        params.is_valid(raise_exception=True)
        filters = FunnelFilters(**{"by": "model", **params.validated_data})
        result = funnel_for(user=request.user, filters=filters, everything=selectors.sees_all(request.user))
        return Response(FunnelOutput(result).data)


class CampaignGoldAccuracyApi(APIView):
    """Each reviewer's accuracy on the campaign's reference items (a counselor: their own row)."""

    permission_classes = [CanSeeCandidates]

    @extend_schema(
        operation_id="dashboards_campaign_reference_accuracy",
        parameters=AGREEMENT_PARAMETERS,
        responses={200: GoldAccuracyOutput},
        tags=["dashboards"],
    )
    def get(self, request: Request, pk: int) -> Response:
        campaign = selectors.campaign_get(user=request.user, campaign_id=pk)
        filters = _agreement_filters(request)
        accuracy = gold_accuracy_for(user=request.user, campaign=campaign, filters=filters)
        return Response(GoldAccuracyOutput(accuracy).data)
