"""The REST API under /api/ (see docs/api.md): candidates and reviews (annotations.api.candidates), campaigns
(annotations.api.campaigns), courses (annotations.api.courses), runs (generation.api)."""

from django.urls import path

from accounts.api import TokenObtainApi
from generation import api as generation_api

from . import campaigns, candidates, courses

app_name = "api"
urlpatterns = [
    path("auth/token/", TokenObtainApi.as_view(), name="auth-token"),
    path("candidates/", candidates.CandidateListApi.as_view(), name="candidate-list"),
    path("candidates/<int:pk>/", candidates.CandidateDetailApi.as_view(), name="candidate-detail"),
    path("candidates/<int:pk>/turns/<int:index>/", candidates.CandidateTurnApi.as_view(), name="candidate-turn"),
    path("candidates/<int:pk>/sign-off/", candidates.CandidateSignOffApi.as_view(), name="candidate-sign-off"),
    path("reviews/", candidates.ReviewCreateApi.as_view(), name="review-create"),
    # Campaigns and their queue (annotations.api.campaigns).
    path("campaigns/", campaigns.CampaignsApi.as_view(), name="campaign-list"),
    path("campaigns/<int:pk>/", campaigns.CampaignDetailApi.as_view(), name="campaign-detail"),
    path("campaigns/<int:pk>/gold/", campaigns.CampaignGoldApi.as_view(), name="campaign-gold"),
    path(
        "campaigns/<int:pk>/gold/<int:candidate>/", campaigns.CampaignGoldItemApi.as_view(), name="campaign-gold-item"
    ),
    path("campaigns/<int:pk>/next/", campaigns.CampaignNextApi.as_view(), name="campaign-next"),
    path("assignments/<int:pk>/release/", campaigns.AssignmentReleaseApi.as_view(), name="assignment-release"),
    path("assignments/<int:pk>/review/", campaigns.AssignmentReviewApi.as_view(), name="assignment-review"),
    path("review-policy/", campaigns.ReviewPolicyApi.as_view(), name="review-policy"),
    path("adjudications/", campaigns.AdjudicationsApi.as_view(), name="adjudication-list"),
    path("adjudications/<int:pk>/", campaigns.AdjudicateApi.as_view(), name="adjudication-decide"),
    path("candidates/<int:pk>/draft/", campaigns.DraftApi.as_view(), name="candidate-draft"),
    path("questions/", candidates.QuestionListApi.as_view(), name="question-list"),
    path("questions/<int:pk>/", candidates.QuestionDetailApi.as_view(), name="question-detail"),
    # MusPsy courses and client profiles (annotations/api/courses.py)
    path("profiles/", courses.ProfilesApi.as_view(), name="profile-list"),
    path("courses/<int:pk>/", courses.CourseDetailApi.as_view(), name="course-detail"),
    path("sessions/<int:pk>/memory/", courses.SessionMemoryApi.as_view(), name="session-memory"),
    path("runs/", generation_api.RunsApi.as_view(), name="run-list"),
    path("runs/<int:pk>/", generation_api.RunDetailApi.as_view(), name="run-detail"),
    path("runs/<int:pk>/cancel/", generation_api.RunCancelApi.as_view(), name="run-cancel"),
    path("runs/<int:pk>/resume/", generation_api.RunResumeApi.as_view(), name="run-resume"),
]
