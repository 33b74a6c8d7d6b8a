"""Client profiles and courses (MusPsy): editing a profile, and the candidates a course and its sessions are.

A course candidate holds the profile as it was and the number of sessions; each session is a child ``session``
candidate (``parent`` the course, ``sequence`` 1..N, content: the turns and the memory written after the session).
The ``course`` run kind is ``generation/runs/course.py``, the MusPsy importer ``generation/importers/courses.py``.
"""

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from psyroom_admin import roles

from ..models import Candidate, CandidateKind, ClientProfile, Language
from .candidates import candidate_build

PROFILE_FIELDS = ("name", "background", "personality", "assessment", "goals", "language")


def profile_snapshot(profile: ClientProfile) -> dict:
    """The profile as a course was written for it: later edits of the profile do not change the course."""
    return {"id": profile.pk, **{f: getattr(profile, f) for f in PROFILE_FIELDS}}


def profile_save(*, user: User | AnonymousUser, data: dict, profile: ClientProfile | None = None) -> ClientProfile:
    """Create a profile, or change one, from the editor. Only curators and admins may (checked here, not only in
    the view: the API and commands call this too)."""
    if not roles.user_has_role(user, roles.CURATOR, roles.ADMIN):
        raise PermissionDenied("Only curators and admins may edit client profiles.")
    unknown = set(data) - set(PROFILE_FIELDS)
    if unknown:
        raise ValidationError(f"profile: unknown field(s) {', '.join(sorted(unknown))}")
    name = (data.get("name", profile.name if profile else "") or "").strip()
    if not name:
        raise ValidationError({"name": "a profile needs a name"})
    if data.get("language", "en") not in Language.values:
        raise ValidationError({"language": f"must be one of {', '.join(Language.values)}"})
    profile = profile or ClientProfile()
    for key, value in data.items():
        setattr(profile, key, value.strip() if isinstance(value, str) else value)
    profile.name = name
    with transaction.atomic():
        profile.save()
    return profile


# --- Course runs -------------------------------------------------------------------------------------------------


def session_build(
    course: Candidate, sequence: int, session: dict, *, language: str, lineage: dict | None = None, **fields
) -> Candidate:
    """An unsaved session candidate of ``course`` (session ``sequence``, its turns and memory), for
    ``candidates_save_new`` to save with the course (``course.new_children``)."""
    candidate = candidate_build(
        kind=CandidateKind.SESSION,
        content={"turns": session["turns"], "memory": session["memory"]},
        language=language,
        lineage=lineage,
        **fields,
    )
    candidate.parent = course
    candidate.sequence = sequence
    candidate.profile = course.profile
    return candidate
