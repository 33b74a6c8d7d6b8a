"""The REST API under /api/ (see docs/api.md): candidates and reviews (annotations.api), runs (generation.api)."""

from django.urls import path

from accounts.api import TokenObtainApi
from generation import api as generation_api

from . import api, campaign_api, course_api

app_name = "api"
urlpatterns = [
    path("auth/token/", TokenObtainApi.as_view(), name="auth-token"),
    path("candidates/", api.CandidateListApi.as_view(), name="candidate-list"),
    path("candidates/<int:pk>/", api.CandidateDetailApi.as_view(), name="candidate-detail"),
    path("candidates/<int:pk>/turns/<int:index>/", api.CandidateTurnApi.as_view(), name="candidate-turn"),
    path("candidates/<int:pk>/sign-off/", api.CandidateSignOffApi.as_view(), name="candidate-sign-off"),
    path("reviews/", api.ReviewCreateApi.as_view(), name="review-create"),
    # Campaigns and their queue (annotations.campaign_api).
    path("campaigns/", campaign_api.CampaignsApi.as_view(), name="campaign-list"),
    path("campaigns/<int:pk>/", campaign_api.CampaignDetailApi.as_view(), name="campaign-detail"),
    path("campaigns/<int:pk>/next/", campaign_api.CampaignNextApi.as_view(), name="campaign-next"),
    path("assignments/<int:pk>/release/", campaign_api.AssignmentReleaseApi.as_view(), name="assignment-release"),
    path("assignments/<int:pk>/review/", campaign_api.AssignmentReviewApi.as_view(), name="assignment-review"),
    path("review-policy/", campaign_api.ReviewPolicyApi.as_view(), name="review-policy"),
    path("adjudications/", campaign_api.AdjudicationsApi.as_view(), name="adjudication-list"),
    path("adjudications/<int:pk>/", campaign_api.AdjudicateApi.as_view(), name="adjudication-decide"),
    path("candidates/<int:pk>/draft/", campaign_api.DraftApi.as_view(), name="candidate-draft"),
    path("questions/", api.QuestionListApi.as_view(), name="question-list"),
    path("questions/<int:pk>/", api.QuestionDetailApi.as_view(), name="question-detail"),
    # MusPsy courses and client profiles (annotations/course_api.py)
    path("profiles/", course_api.ProfilesApi.as_view(), name="profile-list"),
    path("courses/<int:pk>/", course_api.CourseDetailApi.as_view(), name="course-detail"),
    path("sessions/<int:pk>/memory/", course_api.SessionMemoryApi.as_view(), name="session-memory"),
    path("runs/", generation_api.RunsApi.as_view(), name="run-list"),
    path("runs/<int:pk>/", generation_api.RunDetailApi.as_view(), name="run-detail"),
    path("runs/<int:pk>/cancel/", generation_api.RunCancelApi.as_view(), name="run-cancel"),
    path("runs/<int:pk>/resume/", generation_api.RunResumeApi.as_view(), name="run-resume"),
]
