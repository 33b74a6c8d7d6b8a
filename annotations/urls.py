from django.urls import path

from . import views

app_name = "annotations"
urlpatterns = [
    path("", views.candidate_queue, name="queue"),
    path("candidates/<int:pk>/", views.candidate_detail, name="candidate"),
    path("candidates/<int:pk>/turns/<int:index>/", views.candidate_turn, name="turn"),
    path("candidates/<int:pk>/turns/<int:index>/edit/", views.candidate_turn_edit_form, name="turn_edit_form"),
    path("candidates/<int:pk>/review/", views.candidate_review, name="review"),
    path("candidates/<int:pk>/sign-off/", views.candidate_sign_off, name="sign_off"),
]
