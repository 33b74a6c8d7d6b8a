"""The approval policy: whether reviews approve a candidate is decided here and nowhere else (``policy_decide``):

- in a campaign, once k reviews are in: the campaign's policy (``min_approvals``, ``min_mean``, ``no_risk``);
- outside any campaign: the curator's ``ReviewPolicy`` (by default one senior clinician or two counselors).

Either way only reviews of the candidate's *latest* revision count, and an open risk flag never approves.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from generation import selectors as gen_selectors
from generation.models import Candidate
from psyroom_admin import roles

from ..models import Campaign, Review, ReviewPolicy
from ..rubrics import SCALE
from .audit import audit_record

DEFAULT_CAMPAIGN_POLICY = {"min_approvals": None, "min_mean": 3.0, "no_risk": True, "gold_rate": 0.0}
# The share of a counselor's queue that reference items may take: above a half, calibration crowds out the work.
MAX_GOLD_RATE = 0.5


def review_policy_get() -> ReviewPolicy:
    """The policy for reviews outside campaigns (created with its defaults on first use)."""
    policy, _ = ReviewPolicy.objects.get_or_create(pk=1)
    return policy


def review_policy_set(
    *, user, min_senior_approvals: int, min_counselor_approvals: int, min_mean: float
) -> ReviewPolicy:
    """Set the policy for reviews outside campaigns (curators and administrators)."""
    if not roles.user_has_role(user, roles.CURATOR, roles.ADMIN):
        raise PermissionDenied("Only curators and administrators set the review policy.")
    for name, value, low, high in (
        ("min_senior_approvals", min_senior_approvals, 1, 10),
        ("min_counselor_approvals", min_counselor_approvals, 1, 20),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValidationError({name: f"a whole number from {low} to {high}, not {value!r}"})
    if isinstance(min_mean, bool) or not isinstance(min_mean, int | float) or not SCALE[0] <= min_mean <= SCALE[1]:
        raise ValidationError({"min_mean": f"a number from {SCALE[0]} to {SCALE[1]}, not {min_mean!r}"})
    with transaction.atomic():
        policy = review_policy_get()
        before = str(policy)
        policy.min_senior_approvals = min_senior_approvals
        policy.min_counselor_approvals = min_counselor_approvals
        policy.min_mean = float(min_mean)
        policy.updated_by = user
        policy.save()
        audit_record(actor=user, action="policy.set", data={"before": before, "after": str(policy)})
    return policy


def campaign_policy_validate(*, policy: dict | None, overlap: int) -> dict:
    """A campaign's policy, complete and checked at creation (a bad value must not surface at the k-th review)."""
    if policy is None:
        policy = {}
    if not isinstance(policy, dict):
        raise ValidationError({"policy": "must be an object with min_approvals, min_mean, no_risk, gold_rate"})
    unknown = set(policy) - set(DEFAULT_CAMPAIGN_POLICY)
    if unknown:
        raise ValidationError({"policy": f"unknown field(s): {', '.join(sorted(map(str, unknown)))}"})
    clean = {**DEFAULT_CAMPAIGN_POLICY, **policy}
    approvals = clean["min_approvals"]
    if approvals is None:
        approvals = overlap
    if not isinstance(approvals, int) or isinstance(approvals, bool) or not 1 <= approvals <= overlap:
        raise ValidationError({"policy": f"min_approvals: a whole number from 1 to k ({overlap}), not {approvals!r}"})
    mean = clean["min_mean"]
    if mean is None:
        mean = 0.0
    if isinstance(mean, bool) or not isinstance(mean, int | float) or not 0 <= mean <= SCALE[1]:
        raise ValidationError({"policy": f"min_mean: a number from 0 to {SCALE[1]}, not {mean!r}"})
    if not isinstance(clean["no_risk"], bool):
        raise ValidationError({"policy": f"no_risk: true or false, not {clean['no_risk']!r}"})
    rate = clean["gold_rate"]
    if rate is None:
        rate = 0.0
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= MAX_GOLD_RATE:
        raise ValidationError({"policy": f"gold_rate: a number from 0 to {MAX_GOLD_RATE}, not {rate!r}"})
    return {"min_approvals": approvals, "min_mean": float(mean), "no_risk": clean["no_risk"], "gold_rate": float(rate)}


def _means_reach(reviews: list[Review], minimum: float) -> bool:
    keys = {key for r in reviews for key in r.scores}
    for key in keys:
        values = [r.scores[key] for r in reviews if key in r.scores]
        if sum(values) / len(values) < minimum:
            return False
    return True


def policy_decide(*, candidate: Candidate, campaign: Campaign | None = None) -> str:
    """ "approve" or "adjudication" (in a campaign) / "pending" (outside one), from the reviews of the latest revision.

    Call with the candidate locked. An open risk flag never approves.
    """
    revision = gen_selectors.candidate_latest_revision(candidate=candidate)
    # A review of a reference item is a test of the reviewer, not a judgement of the candidate.
    of_revision = Review.objects.filter(candidate=candidate, revision=revision, gold=False).select_related("reviewer")
    if campaign is not None:
        of_revision = of_revision.filter(campaign=campaign)
    # Each person counts once, with their latest judgement of this revision.
    reviews = list({r.reviewer_id: r for r in of_revision.order_by("created_at", "pk")}.values())
    approving = [r for r in reviews if r.decision == Review.Decision.APPROVE]
    open_risk = candidate.open_risk_flags().exists()
    if campaign is not None:
        rules = {**DEFAULT_CAMPAIGN_POLICY, **(campaign.policy or {})}
        flagged = rules.get("no_risk", True) and any(r.risk_flags for r in reviews)
        if (
            len(approving) >= (rules["min_approvals"] or campaign.overlap)
            and _means_reach(reviews, float(rules["min_mean"] or 0))
            and not flagged
            and not open_risk
        ):
            return "approve"
        return "adjudication"
    policy = review_policy_get()
    seniors = sum(roles.user_can_sign_off_risk(r.reviewer) for r in approving)
    counselors = len(approving) - seniors
    enough = seniors >= policy.min_senior_approvals or counselors >= policy.min_counselor_approvals
    if enough and _means_reach(approving, policy.min_mean) and not open_risk:
        return "approve"
    return "pending"
