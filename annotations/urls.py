from django.urls import path

from .views import activity, campaigns, candidates, courses, gold, questions

app_name = "annotations"
urlpatterns = [
    path("", candidates.candidate_queue, name="queue"),
    path("candidates/<int:pk>/", candidates.candidate_detail, name="candidate"),
    path("candidates/<int:pk>/turns/<int:index>/", candidates.candidate_turn, name="turn"),
    path("candidates/<int:pk>/turns/<int:index>/edit/", candidates.candidate_turn_edit_form, name="turn_edit_form"),
    path("candidates/<int:pk>/review/", candidates.candidate_review, name="review"),
    path("candidates/<int:pk>/sign-off/", candidates.candidate_sign_off, name="sign_off"),
    # Psyche-R1 questions (annotations/views/questions.py)
    path("candidates/<int:pk>/question/answer/", questions.question_answer, name="question_answer"),
    path("candidates/<int:pk>/question/rate/", questions.question_rate, name="question_rate"),
    # MusPsy courses and client profiles (annotations/views/courses.py)
    path("courses/<int:pk>/", courses.course_detail, name="course"),
    path("courses/<int:pk>/review/", courses.course_review, name="course_review"),
    path("courses/<int:pk>/edit/", courses.course_edit, name="course_edit"),
    path("sessions/<int:pk>/review/", courses.session_review, name="session_review"),
    path("sessions/<int:pk>/memory/", courses.session_memory_edit, name="session_memory"),
    path("sessions/<int:pk>/turns/<int:index>/", courses.session_turn_edit, name="session_turn"),
    path("profiles/new/", courses.profile_edit, name="profile_new"),
    path("profiles/<int:pk>/edit/", courses.profile_edit, name="profile_edit"),
    # Campaigns, the campaign review screen and adjudication (annotations/views/campaigns.py)
    path("campaigns/", campaigns.campaign_list, name="campaign_list"),
    path("campaigns/new/", campaigns.campaign_create, name="campaign_create"),
    path("campaigns/<int:campaign_id>/reference-items/", gold.campaign_gold, name="campaign_gold"),
    path(
        "campaigns/<int:campaign_id>/reference-items/<int:candidate_id>/unmark/",
        gold.campaign_gold_unmark,
        name="campaign_gold_unmark",
    ),
    path("campaigns/new/count/", campaigns.campaign_selection_count, name="campaign_selection_count"),
    path("campaigns/<int:campaign_id>/guidelines/", campaigns.campaign_guidelines, name="campaign_guidelines"),
    path("campaigns/<int:campaign_id>/next/", campaigns.campaign_next, name="campaign_next"),
    path("campaigns/<int:campaign_id>/items/<int:candidate_id>/", campaigns.campaign_item, name="campaign_item"),
    path(
        "campaigns/<int:campaign_id>/items/<int:candidate_id>/preview/",
        campaigns.campaign_item_preview,
        name="campaign_item_preview",
    ),
    path(
        "campaigns/<int:campaign_id>/items/<int:candidate_id>/submit/",
        campaigns.campaign_submit,
        name="campaign_submit",
    ),
    path(
        "campaigns/<int:campaign_id>/items/<int:candidate_id>/draft/",
        campaigns.campaign_draft,
        name="campaign_draft",
    ),
    path(
        "campaigns/<int:campaign_id>/items/<int:candidate_id>/skip/",
        campaigns.campaign_release,
        name="campaign_release",
    ),
    path(
        "campaigns/<int:campaign_id>/items/<int:candidate_id>/regenerate/",
        campaigns.campaign_regenerate,
        name="campaign_regenerate",
    ),
    # The audit trail for curators (annotations/views/activity.py)
    path("activity/", activity.activity_page, name="activity"),
    path("adjudication/", campaigns.adjudication_list, name="adjudication_list"),
    path("adjudication/<int:item_id>/", campaigns.adjudication_item, name="adjudication_item"),
    path("adjudication/<int:item_id>/sign-off/", campaigns.adjudication_sign_off, name="adjudication_sign_off"),
]
