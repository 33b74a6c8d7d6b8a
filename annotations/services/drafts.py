"""Drafts: what a reviewer has typed so far, kept on the server."""

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from generation.models import Candidate

from ..models import Draft

DRAFT_KEYS = ("scores", "decision", "comment", "risk_flags", "time_spent_s")


def draft_save(*, user, candidate: Candidate, data: object) -> Draft:
    """Keep what a reviewer has typed so far on the server, so that a closed tab or another device loses nothing."""
    if not isinstance(data, dict):
        raise ValidationError({"data": _("a draft is an object")})
    unknown = set(data) - set(DRAFT_KEYS)
    if unknown:
        raise ValidationError(
            {"data": _("unknown draft field(s): %(fields)s") % {"fields": ", ".join(sorted(unknown))}}
        )
    if len(str(data)) > 20_000:
        raise ValidationError({"data": _("a draft is at most 20000 characters")})
    draft, _created = Draft.objects.update_or_create(user=user, candidate=candidate, defaults={"data": data})
    return draft


def draft_get(*, user, candidate: Candidate) -> dict:
    draft = Draft.objects.filter(user=user, candidate=candidate).first()
    return dict(draft.data) if draft else {}
