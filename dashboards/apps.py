from django.apps import AppConfig


class DashboardsConfig(AppConfig):
    """Quality dashboards: reads annotations, generation and releases; nothing imports it."""

    name = "dashboards"

    def ready(self) -> None:
        # Releases record the campaigns' agreement as the dashboards compute it, without importing this app.
        from dashboards.selectors import campaign_agreement_figures
        from releases.agreement import agreement_provider_set

        agreement_provider_set(campaign_agreement_figures)
