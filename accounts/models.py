"""What a user chooses for themselves beyond Django's ``User``: the language of the interface."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Profile(models.Model):
    """One row per user who chose something; no row means every default (the browser's language)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    # Blank: follow the browser (Accept-Language, or the language cookie of the switcher).
    language = models.CharField(_("language"), max_length=16, blank=True, choices=settings.LANGUAGES)

    class Meta:
        verbose_name = _("profile")
        verbose_name_plural = _("profiles")

    def __str__(self) -> str:
        return f"{self.user} ({self.language or 'browser'})"
