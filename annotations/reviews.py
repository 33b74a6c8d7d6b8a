"""The one review path: every review (the candidate page, a campaign, the API), the approval policy, adjudication.

Whether a candidate becomes approved is decided here and nowhere else (``policy_decide``):

- in a campaign, once k reviews are in: the campaign's policy (``min_approvals``, ``min_mean``, ``no_risk``);
- outside any campaign: the curator's ``ReviewPolicy`` (by default one senior clinician or two counselors).

Either way only reviews of the candidate's *latest* revision count, and an approval records that revision
(``Candidate.approved_revision``): an edit after approval sends the candidate back to review, and a review of an older
revision approves nothing. A candidate in an open campaign is reviewed through that campaign only. An item with an
open risk flag cannot be approved by a review, from any page or the API: a senior clinician who did not rate it signs
the flags off, naming the flags and the version they read, or adjudicates it.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from generation import selectors as gen_selectors
from generation import services as gen_services
from generation.models import Candidate
from psyroom_admin import roles

from .models import Adjudication, Assignment, Campaign, CampaignItem, Draft, Review, ReviewPolicy, RiskCode, Rubric
from .rubrics import SCALE
from .services import audit_record, rubric_get_default

DECISION_STATUS = {
    Review.Decision.APPROVE: Candidate.Status.APPROVED,
    Review.Decision.REJECT: Candidate.Status.REJECTED,
    Review.Decision.NEEDS_REVISION: Candidate.Status.NEEDS_REVISION,
}
DEFAULT_CAMPAIGN_POLICY = {"min_approvals": None, "min_mean": 3.0, "no_risk": True}
RISK_BLOCKS_APPROVAL = "This item is flagged for risk: a senior clinician must sign it off before approval."


# --- Input ---------------------------------------------------------------------------------------------------------


def validate_scores(*, rubric: Rubric, scores: dict) -> dict:
    """A score from the scale for every criterion of ``rubric``, nothing else."""
    low, high = SCALE
    keys = [c["key"] for c in rubric.criteria]
    if not isinstance(scores, dict):
        raise ValidationError({"scores": "must be an object of criterion: score"})
    unknown = set(scores) - set(keys)
    if unknown:
        raise ValidationError({"scores": f"unknown criteria: {', '.join(sorted(map(str, unknown)))}"})
    clean = {}
    for key in keys:
        value = scores.get(key)
        if value is None or value == "":
            raise ValidationError({"scores": f"{key}: a score from {low} to {high} is required"})
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValidationError({"scores": f"{key}: {value!r} is not a whole number"}) from None
        if isinstance(value, bool) or not low <= number <= high or str(number) != str(value).strip():
            raise ValidationError({"scores": f"{key}: {value!r} is not a score from {low} to {high}"})
        clean[key] = number
    return clean


def validate_review(*, decision: str, risk_flags: list[str] | None, comment: str) -> list[str]:
    """Check a review's decision, risk flags and comment; returns the risk flags."""
    if decision not in Review.Decision.values:
        raise ValidationError({"decision": f"must be approve, reject or needs_revision, not {decision!r}"})
    risk_flags = list(risk_flags or [])
    bad_flags = [f for f in risk_flags if f not in RiskCode.values]
    if bad_flags:
        raise ValidationError({"risk_flags": f"unknown risk flag(s): {', '.join(map(str, bad_flags))}"})
    if comment and len(comment) > 10_000:
        raise ValidationError({"comment": "at most 10000 characters"})
    if risk_flags and not comment.strip():
        raise ValidationError({"comment": "say what the risk is: a comment is required with a risk flag"})
    return risk_flags


# --- Policy --------------------------------------------------------------------------------------------------------


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
        raise ValidationError({"policy": "must be an object with min_approvals, min_mean, no_risk"})
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
    return {"min_approvals": approvals, "min_mean": float(mean), "no_risk": clean["no_risk"]}


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
    reviews = Review.objects.filter(candidate=candidate, revision=revision).select_related("reviewer")
    if campaign is not None:
        reviews = reviews.filter(campaign=campaign)
    # Each person counts once, with their latest judgement of this revision.
    reviews = list({r.reviewer_id: r for r in reviews.order_by("created_at", "pk")}.values())
    approving = [r for r in reviews if r.decision == Review.Decision.APPROVE]
    open_risk = candidate.open_risk_flags().exists()
    if campaign is not None:
        policy = {**DEFAULT_CAMPAIGN_POLICY, **(campaign.policy or {})}
        flagged = policy.get("no_risk", True) and any(r.risk_flags for r in reviews)
        if (
            len(approving) >= (policy["min_approvals"] or campaign.overlap)
            and _means_reach(reviews, float(policy["min_mean"] or 0))
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


def campaign_item_open_for(*, candidate: Candidate) -> CampaignItem | None:
    """The item of an open campaign that this candidate is still being decided in, if any."""
    return (
        CampaignItem.objects.select_related("campaign")
        .filter(candidate=candidate, campaign__status=Campaign.Status.OPEN)
        .exclude(state=CampaignItem.State.DECIDED)
        .first()
    )


# --- Reviews -------------------------------------------------------------------------------------------------------


def review_submit(
    *,
    candidate: Candidate,
    reviewer,
    scores: dict,
    decision: str,
    comment: str = "",
    risk_flags: list[str] | None = None,
    base_version: int,
    time_spent_s: int = 0,
    assignment: Assignment | None = None,
    idempotency_key: str | None = None,
) -> Review:
    """Record a review of the revision the reviewer saw (``base_version``) and let the policy decide.

    With an ``assignment`` it is a campaign review, on the campaign's rubric; without one the candidate must not be
    in an open campaign. A retried submit with the same ``idempotency_key`` returns the first review and writes
    nothing. Raises ``StaleVersion`` (409) when the candidate changed since ``base_version``; ``ValidationError``
    (400) naming the rule otherwise. Nothing is written on any refusal.
    """
    if idempotency_key:
        earlier = Review.objects.filter(reviewer=reviewer, idempotency_key=idempotency_key).first()
        if earlier is not None:
            return earlier
    if not roles.user_can_review(reviewer):
        raise PermissionDenied("Only counselors and senior clinicians review.")
    risk_flags = validate_review(decision=decision, risk_flags=risk_flags, comment=comment)
    if assignment is not None:
        if assignment.counselor_id != reviewer.pk:
            raise PermissionDenied("This is not your assignment.")
        if assignment.item.candidate_id != candidate.pk:
            raise ValidationError({"assignment": f"assignment {assignment.pk} is not for {candidate}"})
        campaign = assignment.item.campaign
        rubric = campaign.rubric
    else:
        campaign = None
        item = campaign_item_open_for(candidate=candidate)
        if item is not None:
            raise ValidationError(
                {
                    "candidate": f"{candidate} is in campaign {item.campaign.name!r} (k={item.campaign.overlap}): "
                    "review it there, from the campaign's queue."
                }
            )
        rubric = rubric_get_default(kind=candidate.kind)
    clean = validate_scores(rubric=rubric, scores=scores)
    try:
        with transaction.atomic():
            item = locked_assignment = None
            now = timezone.now()
            if assignment is not None:
                item = CampaignItem.objects.select_for_update().get(pk=assignment.item_id)
                locked_assignment = Assignment.objects.select_for_update().get(pk=assignment.pk)
            locked = Candidate.objects.select_for_update().get(pk=candidate.pk)
            if idempotency_key:
                # Asked again now that the rows are locked: a twin request with the same key that committed while
                # this one waited for the locks has submitted the slot; its review is the answer, not a refusal.
                earlier = Review.objects.filter(reviewer=reviewer, idempotency_key=idempotency_key).first()
                if earlier is not None:
                    return earlier
            if item is not None:
                _check_slot(item, locked_assignment, campaign, now)
            if locked.version != base_version:
                raise gen_services.StaleVersion(locked)
            if decision == Review.Decision.APPROVE and (risk_flags or locked.open_risk_flags().exists()):
                raise ValidationError({"decision": RISK_BLOCKS_APPROVAL})
            revision = gen_selectors.candidate_latest_revision(candidate=locked)
            if assignment is None:
                # The same review again (a double click, a retry without a key) is recorded once.
                for earlier in Review.objects.filter(
                    candidate=locked, revision=revision, reviewer=reviewer, campaign__isnull=True
                ):
                    same = (earlier.scores, earlier.decision, earlier.comment, earlier.risk_flags)
                    if same == (clean, decision, comment, risk_flags):
                        return earlier
            review = Review.objects.create(
                candidate=locked,
                revision=revision,
                reviewer=reviewer,
                rubric=rubric,
                scores=clean,
                decision=decision,
                comment=comment,
                risk_flags=risk_flags,
                time_spent_s=max(0, int(time_spent_s)),
                campaign=campaign,
                assignment=locked_assignment,
                idempotency_key=idempotency_key or None,
            )
            if risk_flags:
                gen_services.candidate_flag_risk(
                    candidate=locked,
                    flags=[{"code": code, "detail": comment} for code in risk_flags],
                    raised_by=reviewer,
                    review_id=review.pk,
                )
            if item is not None:
                outcome = _campaign_outcome(item, locked_assignment, locked, campaign, revision, now)
            else:
                outcome = policy_decide(candidate=locked)
                if outcome == "approve":
                    gen_services.candidate_set_status(
                        candidate=locked, status=Candidate.Status.APPROVED, revision=revision
                    )
                else:
                    status = DECISION_STATUS[decision]
                    if status == Candidate.Status.APPROVED:
                        status = Candidate.Status.IN_REVIEW  # an approval the policy still waits on
                    gen_services.candidate_set_status(candidate=locked, status=status)
            Draft.objects.filter(user=reviewer, candidate=locked).delete()
            audit_record(
                actor=reviewer,
                action="review.submit",
                candidate=locked,
                data={
                    "review": review.pk,
                    "campaign": campaign.pk if campaign else None,
                    "decision": decision,
                    "revision": revision.number,
                    "risk_flags": risk_flags,
                    "outcome": outcome,
                },
            )
    except IntegrityError:
        if idempotency_key:
            earlier = Review.objects.filter(reviewer=reviewer, idempotency_key=idempotency_key).first()
            if earlier is not None:
                return earlier
        raise
    candidate.refresh_from_db()
    return review


def _check_slot(item: CampaignItem, assignment: Assignment, campaign: Campaign, now) -> None:
    """A campaign review needs the reviewer's claim: still claimed, and an expired lease only while the slot is free."""
    if item.state != CampaignItem.State.OPEN:
        raise ValidationError({"assignment": f"this item is {item.get_state_display().lower()}: it takes no review"})
    if assignment.status != Assignment.Status.CLAIMED:
        raise ValidationError({"assignment": f"assignment {assignment.pk} is {assignment.status}, not claimed"})
    if assignment.lease_expires_at <= now:
        live = item.assignments.filter(Assignment.live_q(now)).exclude(pk=assignment.pk).count()
        if live >= campaign.overlap:
            raise ValidationError({"assignment": "your lease ran out and the slot went to someone else"})


def _campaign_outcome(item, assignment, candidate, campaign, revision, now) -> str | None:
    """After a campaign review: the slot is submitted; at k reviews the policy approves or sends to adjudication."""
    assignment.status = Assignment.Status.SUBMITTED
    assignment.finished_at = now
    assignment.save(update_fields=["status", "finished_at"])
    item.reviews_done = item.assignments.filter(status=Assignment.Status.SUBMITTED).count()
    outcome = None
    if item.reviews_done >= campaign.overlap:
        outcome = policy_decide(candidate=candidate, campaign=campaign)
        if outcome == "approve":
            gen_services.candidate_set_status(candidate=candidate, status=Candidate.Status.APPROVED, revision=revision)
            item.state = CampaignItem.State.DECIDED
        else:
            item.state = CampaignItem.State.ADJUDICATION
    elif candidate.status in (Candidate.Status.GENERATED, Candidate.Status.APPROVED):
        gen_services.candidate_set_status(candidate=candidate, status=Candidate.Status.IN_REVIEW)
    item.save(update_fields=["reviews_done", "state"])
    return outcome


# --- Adjudication --------------------------------------------------------------------------------------------------


def adjudication_queue(*, clinician) -> QuerySet[CampaignItem]:
    """Items waiting for this senior clinician: to decide (reviewers disagreed, flagged risk, or an approved item was
    edited: state ``adjudication``) or to sign off (an open risk flag on an item still under review).

    Items the clinician rated are left out: someone who rated an item does not settle it.
    """
    if not roles.user_can_sign_off_risk(clinician):
        raise PermissionDenied("Only a senior clinician adjudicates.")
    open_risk = gen_selectors.open_risk_q(candidate="candidate_id")
    return (
        CampaignItem.objects.select_related("campaign", "candidate")
        .filter(Q(state=CampaignItem.State.ADJUDICATION) | (open_risk & Q(state=CampaignItem.State.OPEN)))
        .exclude(candidate__reviews__reviewer=clinician)
        .order_by("id")
    )


def adjudicate(
    *,
    item: CampaignItem,
    clinician,
    decision: str,
    reason: str,
    base_version: int,
    flag_ids: list[int] | None = None,
) -> Adjudication:
    """A senior clinician's final decision on an item waiting for adjudication, on the version they read.

    Approving signs off the open risk flags, which the clinician names (``flag_ids``, as the page showed them): a
    flag raised after they read the item is not covered, and the approval is refused. Someone who rated the item, or
    wrote its latest revision, cannot approve it.
    """
    if not roles.user_can_sign_off_risk(clinician):
        raise PermissionDenied("Only a senior clinician adjudicates.")
    if decision not in Review.Decision.values:
        raise ValidationError({"decision": f"must be approve, reject or needs_revision, not {decision!r}"})
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "say why: an adjudication needs a reason"})
    with transaction.atomic():
        locked_item = CampaignItem.objects.select_for_update().select_related("campaign").get(pk=item.pk)
        if locked_item.state != CampaignItem.State.ADJUDICATION:
            raise ValidationError(
                {"item": f"this item is {locked_item.get_state_display().lower()}: only items waiting for "
                 "adjudication are adjudicated"}
            )  # fmt: skip
        candidate = Candidate.objects.select_for_update().get(pk=locked_item.candidate_id)
        if candidate.version != base_version:
            raise gen_services.StaleVersion(candidate)
        if Review.objects.filter(candidate=candidate, reviewer=clinician).exists():
            raise ValidationError(
                {"item": "you rated this item: another senior clinician, who did not, must adjudicate it"}
            )
        revision = gen_selectors.candidate_latest_revision(candidate=candidate)
        if decision == Review.Decision.APPROVE:
            if revision.author_id == clinician.pk:
                raise ValidationError(
                    {"item": f"you wrote revision {revision.number}: another senior clinician must judge your edit"}
                )
            open_ids = set(candidate.open_risk_flags().values_list("pk", flat=True))
            unseen = sorted(open_ids - set(flag_ids or []))
            if unseen:
                raise ValidationError(
                    {"flags": f"risk flag(s) {', '.join(map(str, unseen))} are open and not among those you read: "
                     "read them, then decide again"}
                )  # fmt: skip
            if open_ids:
                gen_services.candidate_sign_off_risk(
                    candidate=candidate, clinician=clinician, flag_ids=sorted(open_ids), base_version=base_version,
                    note=reason,
                )  # fmt: skip
                audit_record(
                    actor=clinician,
                    action="risk.sign_off",
                    candidate=candidate,
                    data={"note": reason, "flags": sorted(open_ids), "version": base_version, "adjudication": True},
                )
        gen_services.candidate_set_status(
            candidate=candidate,
            status=DECISION_STATUS[decision],
            revision=revision if decision == Review.Decision.APPROVE else None,
        )
        adjudication = Adjudication.objects.create(
            candidate=candidate,
            campaign=locked_item.campaign,
            clinician=clinician,
            decision=decision,
            reason=reason,
            revision=revision,
        )
        CampaignItem.objects.filter(pk=locked_item.pk).update(state=CampaignItem.State.DECIDED)
        audit_record(
            actor=clinician,
            action="adjudication",
            candidate=candidate,
            data={
                "adjudication": adjudication.pk,
                "campaign": locked_item.campaign_id,
                "decision": decision,
                "reason": reason,
                "revision": revision.number,
            },
        )
    item.refresh_from_db()
    return adjudication


# --- Risk sign-off -------------------------------------------------------------------------------------------------


def risk_sign_off(*, candidate: Candidate, clinician, note: str, flag_ids: list[int], base_version: int) -> list:
    """A senior clinician's sign-off of the risk flags they read (``flag_ids``) on version ``base_version``."""
    if not roles.user_can_sign_off_risk(clinician):
        raise PermissionDenied("Only a senior clinician may sign off a risk flag.")
    note = (note or "").strip()
    if not note:
        raise ValidationError({"note": "say why the risk is handled acceptably"})
    with transaction.atomic():
        flags = gen_services.candidate_sign_off_risk(
            candidate=candidate, clinician=clinician, flag_ids=flag_ids, base_version=base_version, note=note
        )
        audit_record(
            actor=clinician,
            action="risk.sign_off",
            candidate=candidate,
            data={"note": note, "flags": sorted(f.pk for f in flags), "version": base_version},
        )
    candidate.refresh_from_db()
    return flags
