"""The dashboards' API routes, under /api/dashboards/."""

from django.urls import path

from . import api

app_name = "dashboards-api"
urlpatterns = [
    path("campaigns/<int:pk>/agreement/", api.CampaignAgreementApi.as_view(), name="campaign-agreement"),
    path(
        "campaigns/<int:pk>/reference-accuracy/",
        api.CampaignGoldAccuracyApi.as_view(),
        name="campaign-reference-accuracy",
    ),
    path("calibration/", api.CalibrationApi.as_view(), name="calibration"),
    path("coverage/", api.CoverageApi.as_view(), name="coverage"),
    path("funnel/", api.FunnelApi.as_view(), name="funnel"),
]
