from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script as a file of its own: no inline script under the CSP.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api_docs.html"),
        name="api-docs",
    ),
    path("api/releases/", include("releases.urls")),
    path("api/dashboards/", include("dashboards.api_urls")),
    path("api/", include("annotations.api.urls")),
    path("runs/", include("generation.urls")),
    path("dashboards/", include("dashboards.urls")),
    path("releases/", include("releases.page_urls")),
    path("", include("annotations.urls")),
]
