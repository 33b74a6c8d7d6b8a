from django.apps import AppConfig


class AnnotationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "annotations"
    verbose_name = "Annotations"

    def ready(self):
        # Audit role changes; a regenerated candidate joins its parent's campaign.
        from . import signals  # noqa: F401
