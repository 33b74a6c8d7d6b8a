from django.apps import AppConfig


class DashboardsConfig(AppConfig):
    """Quality dashboards: reads annotations and generation; nothing imports it."""

    name = "dashboards"
