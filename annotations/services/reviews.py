"""The one review path: every review (the candidate page, a campaign, the API) goes through ``review_submit``.

Whether the reviews approve is decided by ``annotations.services.policy.policy_decide``; an approval records the
revision it judged (``Candidate.approved_revision``): an edit after approval sends the candidate back to review, and
a review of an older revision approves nothing. A candidate in an open campaign is reviewed through that campaign
only. An item with an open risk flag cannot be approved by a review, from any page or the API: a senior clinician who
did not rate it signs the flags off, naming the flags and the version they read, or adjudicates it
(``annotations.services.adjudication``).
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from generation import selectors as gen_selectors
from generation.models import Candidate
from generation.services.candidates import StaleVersion, candidate_flag_risk, candidate_set_status
from psyroom_admin import roles

from ..models import Assignment, Campaign, CampaignItem, Draft, Review, RiskCode, Rubric
from ..rubrics import SCALE
from .audit import audit_record
from .policy import policy_decide
from .rubrics import rubric_get_default

DECISION_STATUS: dict[str, str] = {
    Review.Decision.APPROVE: Candidate.Status.APPROVED,
    Review.Decision.REJECT: Candidate.Status.REJECTED,
    Review.Decision.NEEDS_REVISION: Candidate.Status.NEEDS_REVISION,
}
RISK_BLOCKS_APPROVAL = gettext_lazy(
    "This item is flagged for risk: a senior clinician must sign it off before approval."
)


# --- Input ---------------------------------------------------------------------------------------------------------


def validate_scores(*, rubric: Rubric, scores: dict) -> dict:
    """A score from the scale for every criterion of ``rubric``, nothing else."""
    low, high = SCALE
    keys = [c["key"] for c in rubric.criteria]
    if not isinstance(scores, dict):
        raise ValidationError({"scores": _("must be an object of criterion: score")})
    unknown = set(scores) - set(keys)
    if unknown:
        raise ValidationError(
            {"scores": _("unknown criteria: %(keys)s") % {"keys": ", ".join(sorted(map(str, unknown)))}}
        )
    clean = {}
    for key in keys:
        value = scores.get(key)
        if value is None or value == "":
            raise ValidationError(
                {
                    "scores": _("%(key)s: a score from %(low)s to %(high)s is required")
                    % {"key": key, "low": low, "high": high}
                }
            )
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValidationError(
                {"scores": _("%(key)s: %(value)s is not a whole number") % {"key": key, "value": repr(value)}}
            ) from None
        if isinstance(value, bool) or not low <= number <= high or str(number) != str(value).strip():
            raise ValidationError(
                {
                    "scores": _("%(key)s: %(value)s is not a score from %(low)s to %(high)s")
                    % {"key": key, "value": repr(value), "low": low, "high": high}
                }
            )
        clean[key] = number
    return clean


def validate_review(*, decision: str, risk_flags: list[str] | None, comment: str) -> list[str]:
    """Check a review's decision, risk flags and comment; returns the risk flags."""
    if decision not in Review.Decision.values:
        raise ValidationError(
            {"decision": _("must be approve, reject or needs_revision, not %(value)s") % {"value": repr(decision)}}
        )
    risk_flags = list(risk_flags or [])
    bad_flags = [f for f in risk_flags if f not in RiskCode.values]
    if bad_flags:
        raise ValidationError(
            {"risk_flags": _("unknown risk flag(s): %(flags)s") % {"flags": ", ".join(map(str, bad_flags))}}
        )
    if comment and len(comment) > 10_000:
        raise ValidationError({"comment": _("at most 10000 characters")})
    if risk_flags and not comment.strip():
        raise ValidationError({"comment": _("say what the risk is: a comment is required with a risk flag")})
    return risk_flags


def campaign_item_open_for(*, candidate: Candidate) -> CampaignItem | None:
    """The item of an open campaign that this candidate is still being decided in, if any."""
    return (
        CampaignItem.objects.select_related("campaign")
        .filter(candidate=candidate, campaign__status=Campaign.Status.OPEN)
        .exclude(state__in=[CampaignItem.State.DECIDED, CampaignItem.State.GOLD])
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
        raise PermissionDenied(_("Only counselors and senior clinicians review."))
    risk_flags = validate_review(decision=decision, risk_flags=risk_flags, comment=comment)
    if assignment is not None:
        if assignment.counselor_id != reviewer.pk:
            raise PermissionDenied(_("This is not your assignment."))
        if assignment.item.candidate_id != candidate.pk:
            raise ValidationError(
                {"assignment": _("assignment %(id)s is not for %(item)s") % {"id": assignment.pk, "item": candidate}}
            )
        campaign = assignment.item.campaign
        rubric = campaign.rubric
    else:
        campaign = None
        item = campaign_item_open_for(candidate=candidate)
        if item is not None:
            raise ValidationError(
                {
                    "candidate": _(
                        "%(item)s is in campaign %(campaign)s (k=%(overlap)s): review it there, from the campaign's "
                        "queue."
                    )
                    % {"item": candidate, "campaign": repr(item.campaign.name), "overlap": item.campaign.overlap}
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
                assert locked_assignment is not None and campaign is not None  # an item comes with both
                _check_slot(item, locked_assignment, campaign, now)
            if locked.version != base_version:
                raise StaleVersion(locked)
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
                gold=item is not None and item.state == CampaignItem.State.GOLD,
                idempotency_key=idempotency_key or None,
            )
            if risk_flags:
                candidate_flag_risk(
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
                    candidate_set_status(candidate=locked, status=Candidate.Status.APPROVED, revision=revision)
                else:
                    status = DECISION_STATUS[decision]
                    if status == Candidate.Status.APPROVED:
                        status = Candidate.Status.IN_REVIEW  # an approval the policy still waits on
                    candidate_set_status(candidate=locked, status=status)
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
    if item.state == CampaignItem.State.GOLD:
        # A reference item has no k: the claim is the person's own whatever its lease.
        if assignment.status != Assignment.Status.CLAIMED:
            raise ValidationError({"assignment": f"assignment {assignment.pk} is {assignment.status}, not claimed"})
        return
    if item.state != CampaignItem.State.OPEN:
        raise ValidationError(
            {
                "assignment": _("this item is %(state)s: it takes no review")
                % {"state": item.get_state_display().lower()}
            }
        )
    if assignment.status != Assignment.Status.CLAIMED:
        raise ValidationError(
            {
                "assignment": _("assignment %(id)s is %(status)s, not claimed")
                % {"id": assignment.pk, "status": assignment.status}
            }
        )
    if assignment.lease_expires_at <= now:
        live = item.assignments.filter(Assignment.live_q(now)).exclude(pk=assignment.pk).count()
        if live >= campaign.overlap:
            raise ValidationError({"assignment": _("your lease ran out and the slot went to someone else")})


def _campaign_outcome(item, assignment, candidate, campaign, revision, now) -> str | None:
    """After a campaign review: the slot is submitted; at k reviews the policy approves or sends to adjudication.

    A reference item's review decides nothing: its item, its candidate's status and approvals stay as they were.
    """
    assignment.status = Assignment.Status.SUBMITTED
    assignment.finished_at = now
    assignment.save(update_fields=["status", "finished_at"])
    if item.state == CampaignItem.State.GOLD:
        return None
    item.reviews_done = item.assignments.filter(status=Assignment.Status.SUBMITTED).count()
    outcome = None
    if item.reviews_done >= campaign.overlap:
        outcome = policy_decide(candidate=candidate, campaign=campaign)
        if outcome == "approve":
            candidate_set_status(candidate=candidate, status=Candidate.Status.APPROVED, revision=revision)
            item.state = CampaignItem.State.DECIDED
        else:
            item.state = CampaignItem.State.ADJUDICATION
    elif candidate.status in (Candidate.Status.GENERATED, Candidate.Status.APPROVED):
        candidate_set_status(candidate=candidate, status=Candidate.Status.IN_REVIEW)
    item.save(update_fields=["reviews_done", "state"])
    return outcome
