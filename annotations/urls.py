from django.urls import path

from . import campaign_views, course_views, question_views, views

app_name = "annotations"
urlpatterns = [
    path("", views.candidate_queue, name="queue"),
    path("candidates/<int:pk>/", views.candidate_detail, name="candidate"),
    path("candidates/<int:pk>/turns/<int:index>/", views.candidate_turn, name="turn"),
    path("candidates/<int:pk>/turns/<int:index>/edit/", views.candidate_turn_edit_form, name="turn_edit_form"),
    path("candidates/<int:pk>/review/", views.candidate_review, name="review"),
    path("candidates/<int:pk>/sign-off/", views.candidate_sign_off, name="sign_off"),
    # Psyche-R1 questions (annotations/question_views.py)
    path("candidates/<int:pk>/question/answer/", question_views.question_answer, name="question_answer"),
    path("candidates/<int:pk>/question/rate/", question_views.question_rate, name="question_rate"),
    # MusPsy courses and client profiles (annotations/course_views.py)
    path("courses/<int:pk>/", course_views.course_detail, name="course"),
    path("courses/<int:pk>/review/", course_views.course_review, name="course_review"),
    path("courses/<int:pk>/edit/", course_views.course_edit, name="course_edit"),
    path("sessions/<int:pk>/review/", course_views.session_review, name="session_review"),
    path("sessions/<int:pk>/memory/", course_views.session_memory_edit, name="session_memory"),
    path("sessions/<int:pk>/turns/<int:index>/", course_views.session_turn_edit, name="session_turn"),
    path("profiles/new/", course_views.profile_edit, name="profile_new"),
    path("profiles/<int:pk>/edit/", course_views.profile_edit, name="profile_edit"),
    # Campaigns, the campaign review screen and adjudication (annotations/campaign_views.py)
    path("campaigns/", campaign_views.campaign_list, name="campaign_list"),
    path("campaigns/new/", campaign_views.campaign_create, name="campaign_create"),
    path("campaigns/<int:campaign_id>/guidelines/", campaign_views.campaign_guidelines, name="campaign_guidelines"),
    path("campaigns/<int:campaign_id>/next/", campaign_views.campaign_next, name="campaign_next"),
    path("campaigns/<int:campaign_id>/items/<int:candidate_id>/", campaign_views.campaign_item, name="campaign_item"),
    path(
        "campaigns/<int:campaign_id>/items/<int:candidate_id>/preview/",
        campaign_views.campaign_item_preview,
        name="campaign_item_preview",
    ),
    path(
        "campaigns/<int:campaign_id>/items/<int:candidate_id>/submit/",
        campaign_views.campaign_submit,
        name="campaign_submit",
    ),
    path(
        "campaigns/<int:campaign_id>/items/<int:candidate_id>/draft/",
        campaign_views.campaign_draft,
        name="campaign_draft",
    ),
    path(
        "campaigns/<int:campaign_id>/items/<int:candidate_id>/skip/",
        campaign_views.campaign_release,
        name="campaign_release",
    ),
    path(
        "campaigns/<int:campaign_id>/items/<int:candidate_id>/regenerate/",
        campaign_views.campaign_regenerate,
        name="campaign_regenerate",
    ),
    path("adjudication/", campaign_views.adjudication_list, name="adjudication_list"),
    path("adjudication/<int:item_id>/", campaign_views.adjudication_item, name="adjudication_item"),
    path("adjudication/<int:item_id>/sign-off/", campaign_views.adjudication_sign_off, name="adjudication_sign_off"),
]
