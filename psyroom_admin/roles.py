"""Roles are Django groups. Who may see and do what is decided here and applied in selectors and services."""

from django.contrib.auth.models import Group

COUNSELOR = "counselor"
SENIOR_CLINICIAN = "senior_clinician"
CURATOR = "curator"
ADMIN = "admin"
ROLES = (COUNSELOR, SENIOR_CLINICIAN, CURATOR, ADMIN)

# Who may rate, edit and decide on candidates.
REVIEWERS = (COUNSELOR, SENIOR_CLINICIAN)
# Who may sign off a risk flag.
SIGNERS = (SENIOR_CLINICIAN,)


def roles_ensure() -> None:
    """Create the role groups (idempotent)."""
    for name in ROLES:
        Group.objects.get_or_create(name=name)


def user_roles(user) -> set[str]:
    if not user.is_authenticated or not user.is_active:
        return set()
    cached = getattr(user, "_psyroom_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        if user.is_superuser:
            cached.add(ADMIN)
        user._psyroom_roles = cached
    return cached


def user_has_role(user, *roles: str) -> bool:
    return bool(user_roles(user) & set(roles))


def user_can_review(user) -> bool:
    return user_has_role(user, *REVIEWERS)


def user_can_see_candidates(user) -> bool:
    return bool(user_roles(user))


def user_can_sign_off_risk(user) -> bool:
    return user_has_role(user, *SIGNERS)
