"""The REST API under /api/ (see docs/api.md): candidates and reviews (annotations.api), runs (generation.api)."""

from django.urls import path
from rest_framework.authtoken.views import obtain_auth_token

from generation import api as generation_api

from . import api

app_name = "api"
urlpatterns = [
    path("auth/token/", obtain_auth_token, name="auth-token"),
    path("candidates/", api.CandidateListApi.as_view(), name="candidate-list"),
    path("candidates/<int:pk>/", api.CandidateDetailApi.as_view(), name="candidate-detail"),
    path("candidates/<int:pk>/turns/<int:index>/", api.CandidateTurnApi.as_view(), name="candidate-turn"),
    path("candidates/<int:pk>/sign-off/", api.CandidateSignOffApi.as_view(), name="candidate-sign-off"),
    path("reviews/", api.ReviewCreateApi.as_view(), name="review-create"),
    path("runs/", generation_api.RunsApi.as_view(), name="run-list"),
    path("runs/<int:pk>/", generation_api.RunDetailApi.as_view(), name="run-detail"),
    path("runs/<int:pk>/cancel/", generation_api.RunCancelApi.as_view(), name="run-cancel"),
]
