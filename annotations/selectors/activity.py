"""The audit trail as curators read it in the product: what happened, who did it, filtered by kind and date."""

import datetime

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.utils import timezone

from psyroom_admin import roles

from ..models import AuditEvent

# What the activity page filters by: each kind is the actions whose names start with one of these.
ACTIVITY_KINDS: dict[str, tuple[str, ...]] = {
    "imports": ("import.",),
    "runs": ("run.", "candidate.regenerate"),
    "reviews": ("review.", "queue.", "adjudication", "question.", "course.", "session.", "candidate.edit"),
    "sign_offs": ("risk.sign_off",),
    "exports": ("export.", "questions.export", "release."),
    "campaigns": ("campaign.", "policy.", "gold."),
    "accounts": ("permission.", "otp."),
}


def activity_list(
    *,
    user,
    kind: str | None = None,
    actor: str | None = None,
    since: datetime.date | None = None,
    until: datetime.date | None = None,
) -> QuerySet[AuditEvent]:
    """The audit events ``user`` may read (curators and admins: all of them), newest first, filtered by
    ``ACTIVITY_KINDS`` key, the actor's username (``""`` for the system and the command line) and the day they
    happened on, both ends included, in the site's time zone."""
    if not roles.user_can_read_audit(user):
        raise PermissionDenied("Only curators and admins may read the activity log.")
    events = AuditEvent.objects.select_related("actor", "candidate")
    if kind is not None:
        if kind not in ACTIVITY_KINDS:
            raise ValueError(f"kind: {kind!r} is not one of {', '.join(ACTIVITY_KINDS)}")
        match = Q()
        for prefix in ACTIVITY_KINDS[kind]:
            match |= Q(action__startswith=prefix)
        events = events.filter(match)
    if actor is not None:
        events = events.filter(actor__isnull=True) if actor == "" else events.filter(actor__username=actor)
    zone = timezone.get_current_timezone()
    if since is not None:
        events = events.filter(created_at__gte=datetime.datetime.combine(since, datetime.time.min, tzinfo=zone))
    if until is not None:
        next_day = until + datetime.timedelta(days=1)
        events = events.filter(created_at__lt=datetime.datetime.combine(next_day, datetime.time.min, tzinfo=zone))
    return events.order_by("-created_at", "-id")
