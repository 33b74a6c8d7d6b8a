"""The Releases page's routes, under /releases/."""

from django.urls import path

from . import views

app_name = "release_pages"
urlpatterns = [
    path("", views.release_list, name="releases"),
    path("new/", views.release_new, name="release-new"),
    path("count/", views.release_count, name="release-count"),
    path("<int:pk>/", views.release_detail, name="release"),
    path("<int:pk>/status/", views.release_status, name="release-status"),
    path("<int:pk>/cancel/", views.release_cancel, name="release-cancel"),
    path("<int:pk>/zip/", views.release_zip, name="release-zip"),
    path("<int:pk>/files/<path:path>", views.release_file, name="release-file"),
]
