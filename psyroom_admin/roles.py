"""Roles are Django groups. Who may see and do what is decided here and applied in selectors and services."""

from django.contrib.auth.models import Group, Permission

COUNSELOR = "counselor"
SENIOR_CLINICIAN = "senior_clinician"
CURATOR = "curator"
ADMIN = "admin"
ROLES = (COUNSELOR, SENIOR_CLINICIAN, CURATOR, ADMIN)

# Who may rate, edit and decide on candidates.
REVIEWERS = (COUNSELOR, SENIOR_CLINICIAN)
# Who may sign off a risk flag.
SIGNERS = (SENIOR_CLINICIAN,)
# Who may start and cancel generation runs.
RUNNERS = (CURATOR, ADMIN)
# Who may create, build and download dataset releases (releases/).
RELEASE_MANAGERS = (CURATOR, ADMIN)
# Who may read the audit trail in the product (the activity page): imports, runs, reviews, sign-offs, exports.
AUDIT_READERS = (CURATOR, ADMIN)
# Who may add, change and delete model specs: a spec says which server the worker sends requests to, and with which
# credential, so curators only look at them.
MODEL_SPEC_EDITORS = (ADMIN,)
# Who may enrol an authenticator app for two-factor sign-in (accounts/): the roles that sign off risk, decide what
# is generated and run the admin. Counselors' accounts reach only their own campaigns' items, and enrolment is no
# part of their work; an operator can require it of these roles (PSYROOM_OTP_REQUIRED_ROLES) but never of counselors.
OTP_ROLES = (SENIOR_CLINICIAN, CURATOR, ADMIN)


# What curators may do in the Django admin: set up what generation uses, and look at everything else.
CURATOR_ADMIN_PERMISSIONS = {
    "generation": {
        "scenario": ("view", "add", "change"),
        "clientprofile": ("view", "add", "change"),
        "modelspec": ("view",),
        "generationrun": ("view",),
        "candidate": ("view",),
        "revision": ("view",),
        "emotioncategory": ("view",),
        "subemotion": ("view",),
    },
    "annotations": {"rubric": ("view", "add"), "review": ("view",), "auditevent": ("view",)},
}


def roles_ensure() -> None:
    """Create the role groups and give curators their admin permissions (idempotent)."""
    for name in ROLES:
        Group.objects.get_or_create(name=name)
    curator = Group.objects.get(name=CURATOR)
    codenames = [
        f"{action}_{model}"
        for models in CURATOR_ADMIN_PERMISSIONS.values()
        for model, actions in models.items()
        for action in actions
    ]
    curator.permissions.set(
        Permission.objects.filter(content_type__app_label__in=CURATOR_ADMIN_PERMISSIONS, codename__in=codenames)
    )


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


def user_can_run_generation(user) -> bool:
    return user_has_role(user, *RUNNERS)


def user_can_read_audit(user) -> bool:
    return user_has_role(user, *AUDIT_READERS)


def user_can_edit_model_specs(user) -> bool:
    return user_has_role(user, *MODEL_SPEC_EDITORS)


def user_can_enrol_otp(user) -> bool:
    return user_has_role(user, *OTP_ROLES)
