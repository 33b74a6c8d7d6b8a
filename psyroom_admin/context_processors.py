"""What every page may need to know about the user's roles (for navigation only: views enforce the rules)."""

from . import roles


def user_roles(request) -> dict:
    return {"can_run_generation": roles.user_can_run_generation(request.user)}
