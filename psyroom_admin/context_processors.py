"""What every page may need to know about the user's roles (for navigation only: views enforce the rules)."""

from accounts import selectors as accounts_selectors

from . import roles


def _otp_step(request) -> str | None:
    if hasattr(request, "otp_step"):  # set by accounts.middleware.OTPGateMiddleware
        return request.otp_step
    return accounts_selectors.otp_step(user=request.user)


def user_roles(request) -> dict:
    return {
        "can_run_generation": roles.user_can_run_generation(request.user),
        "can_manage_releases": roles.user_has_role(request.user, *roles.RELEASE_MANAGERS),
        # Campaigns (annotations/views/campaigns.py): everyone with a role sees the list; senior clinicians adjudicate.
        "can_see_campaigns": roles.user_can_see_candidates(request.user),
        # Dashboards (dashboards/): everyone with a role; a counselor sees only their own numbers there.
        "can_see_dashboards": roles.user_can_see_candidates(request.user),
        "can_adjudicate": roles.user_can_sign_off_risk(request.user),
        "can_read_audit": roles.user_can_read_audit(request.user),
        "can_enrol_otp": roles.user_can_enrol_otp(request.user),
        # A session still owing its two-factor code (or an enrolment) is shown no navigation: none of it would open.
        "otp_pending": _otp_step(request) is not None,
    }
