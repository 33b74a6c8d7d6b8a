from django.urls import path

from . import views

app_name = "dashboards"
urlpatterns = [
    path("", views.dashboard_index, name="index"),
    path("campaigns/<int:campaign_id>/agreement/", views.campaign_agreement, name="agreement"),
    path("calibration/", views.calibration, name="calibration"),
    path("coverage/", views.coverage, name="coverage"),
    path("coverage/fill/", views.coverage_fill, name="coverage-fill"),
    path("funnel/", views.funnel, name="funnel"),
]
