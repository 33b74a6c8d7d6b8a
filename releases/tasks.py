"""Celery entry points of the releases app: thin, taking ids, calling services (``default`` queue)."""

from celery import shared_task
from django.core.exceptions import ValidationError

from . import services
from .models import Release


@shared_task
def release_build_task(release_id: int) -> dict | None:
    """Build a queued release. A delivery for a release that is gone or no longer queued does nothing."""
    services.releases_fail_stale()
    release = Release.objects.filter(pk=release_id, status=Release.Status.QUEUED).first()
    if release is None:
        return None
    try:
        release = services.release_build(release=release)
    except ValidationError:  # another delivery claimed it first
        return None
    return {"release": release.pk, "status": release.status}
