"""What every page may need to know about the user's roles (for navigation only: views enforce the rules)."""

from . import roles


def user_roles(request) -> dict:
    return {
        "can_run_generation": roles.user_can_run_generation(request.user),
        # Campaigns (annotations/campaign_views.py): everyone with a role sees the list; senior clinicians adjudicate.
        "can_see_campaigns": roles.user_can_see_candidates(request.user),
        "can_adjudicate": roles.user_can_sign_off_risk(request.user),
    }
