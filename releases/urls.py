"""The releases API's routes, under /api/releases/."""

from django.urls import path

from . import api

app_name = "releases"
urlpatterns = [
    path("", api.ReleasesApi.as_view(), name="release-list"),
    path("<int:pk>/", api.ReleaseDetailApi.as_view(), name="release-detail"),
    path("<int:pk>/cancel/", api.ReleaseCancelApi.as_view(), name="release-cancel"),
    path("<int:pk>/files/<path:path>", api.ReleaseFileApi.as_view(), name="release-file"),
]
