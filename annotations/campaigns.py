"""Campaigns: who reviews which candidates, k per candidate, through a leased queue; then policy and adjudication.

The queue hands each counselor the next open item of a campaign that has fewer than k live slots (submitted reviews
plus claims whose lease has not run out) and that they were never served. On PostgreSQL the claim is one statement
(see ``CLAIM_SQL``); elsewhere a transaction. Every claim, release, review, adjudication and regeneration is audited.
"""

from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from generation import selectors as gen_selectors
from generation import services as gen_services
from generation.models import Candidate
from psyroom_admin import roles

from .models import Adjudication, Assignment, AuditEvent, Campaign, CampaignItem, Draft, Review, Rubric
from .services import DECISION_STATUS, _validate_review, _validate_scores, audit_record, rubric_get_default

CAMPAIGN_MANAGERS = (roles.CURATOR, roles.ADMIN)
# Who sees every candidate and every review (with names), blind campaign or not.
SEE_ALL = (roles.SENIOR_CLINICIAN, roles.CURATOR, roles.ADMIN)
DEFAULT_POLICY = {"min_approvals": None, "min_mean": 3.0, "no_risk": True}


def _live_slots_q(now) -> Q:
    """Assignments that count toward an item's k: submitted, or claimed with a lease still running."""
    return Q(status=Assignment.Status.SUBMITTED) | Q(status=Assignment.Status.CLAIMED, lease_expires_at__gt=now)


# --- Campaigns ---------------------------------------------------------------------------------------------------


def campaign_create(
    *,
    creator,
    name: str,
    kind: str,
    overlap: int,
    members,
    rubric: Rubric | None = None,
    guidelines: str = "",
    blind: bool = True,
    policy: dict | None = None,
    lease_seconds: int = 1800,
    filters: dict | None = None,
    candidate_ids: list[int] | None = None,
) -> Campaign:
    """Create a campaign and its items from filters or an uploaded id list (curators and admins only)."""
    if not roles.user_has_role(creator, *CAMPAIGN_MANAGERS):
        raise PermissionDenied("Only curators and administrators create campaigns.")
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "a campaign needs a name"})
    try:
        overlap = int(overlap)
    except (TypeError, ValueError):
        raise ValidationError({"overlap": f"{overlap!r} is not a whole number"}) from None
    if not 1 <= overlap <= 20:
        raise ValidationError({"overlap": f"k must be between 1 and 20, not {overlap}"})
    if int(lease_seconds) < 30:
        raise ValidationError({"lease_seconds": "a lease shorter than 30 seconds cannot be worked in"})
    rubric = rubric or rubric_get_default(kind=kind)
    if rubric.kind != kind:
        raise ValidationError({"rubric": f"{rubric} is for {rubric.kind}, not {kind}"})
    policy = {**DEFAULT_POLICY, **(policy or {})}
    if policy["min_approvals"] is None:
        policy["min_approvals"] = overlap
    filters = dict(filters or {})
    qs = Candidate.objects.filter(kind=kind)
    if candidate_ids is not None:
        ids = sorted({int(i) for i in candidate_ids})
        found = set(qs.filter(pk__in=ids).values_list("pk", flat=True))
        unknown = [i for i in ids if i not in found]
        if unknown:
            raise ValidationError({"candidate_ids": f"no {kind} candidate with id {', '.join(map(str, unknown[:20]))}"})
        qs = qs.filter(pk__in=ids)
    else:
        if filters.get("sub_emotions"):
            qs = qs.filter(sub_emotion__key__in=filters["sub_emotions"])
        if filters.get("scenarios"):
            qs = qs.filter(scenario_id__in=filters["scenarios"])
        if filters.get("run"):
            qs = qs.filter(run_id=filters["run"])
        if filters.get("status"):
            qs = qs.filter(status=filters["status"])
        else:
            qs = qs.filter(status__in=gen_selectors.REVIEWABLE)
    selection = {"filters": filters} if candidate_ids is None else {"candidate_ids": len(candidate_ids)}
    with transaction.atomic():
        campaign = Campaign.objects.create(
            name=name,
            kind=kind,
            rubric=rubric,
            overlap=overlap,
            guidelines=guidelines,
            blind=blind,
            policy=policy,
            lease_seconds=int(lease_seconds),
            selection=selection,
            created_by=creator,
        )
        campaign.members.set(list(members or []))
        CampaignItem.objects.bulk_create(
            [CampaignItem(campaign=campaign, candidate_id=pk) for pk in qs.order_by("id").values_list("pk", flat=True)],
            batch_size=2000,
        )
        audit_record(
            actor=creator,
            action="campaign.create",
            data={"campaign": campaign.pk, "name": name, "overlap": overlap, "items": campaign.items.count()},
        )
    return campaign


def campaign_list_for(*, user) -> QuerySet[Campaign]:
    """Campaigns a user may open: counselors those they are members of; the other roles all."""
    qs = Campaign.objects.select_related("rubric").order_by("-created_at", "-id")
    if roles.user_has_role(user, *SEE_ALL):
        return qs
    if roles.user_has_role(user, roles.COUNSELOR):
        return qs.filter(members=user)
    return qs.none()


def candidate_list_visible_to(*, user) -> QuerySet[Candidate]:
    """Candidates a user may see: a counselor only those in the campaigns they belong to."""
    return candidate_scope(user=user, queryset=gen_selectors.candidate_list())


def candidate_scope(*, user, queryset: QuerySet[Candidate]) -> QuerySet[Candidate]:
    """Narrow any candidate queryset to what ``user`` may see (the review pages and the API all go through here)."""
    if roles.user_has_role(user, *SEE_ALL):
        return queryset
    if roles.user_has_role(user, roles.COUNSELOR):
        mine = CampaignItem.objects.filter(candidate_id=OuterRef("pk"), campaign__members=user)
        return queryset.filter(Exists(mine))
    return queryset.none()


def _check_member(campaign: Campaign, user) -> None:
    if not roles.user_can_review(user):
        raise PermissionDenied("Only counselors and senior clinicians review.")
    if not campaign.members.filter(pk=user.pk).exists():
        raise PermissionDenied(f"You are not a member of campaign {campaign.name!r}.")


# --- The queue ---------------------------------------------------------------------------------------------------

# One statement: lock the first open item (id order) with fewer than k live slots and none for this person, skipping
# items another claim holds right now, and insert the assignment. The unique (item, counselor) constraint is a
# second guard against serving an item twice.
CLAIM_SQL = """
WITH next_item AS (
    SELECT i.id FROM annotations_campaignitem i
    WHERE i.campaign_id = %(campaign)s AND i.state = 'open'
      AND NOT EXISTS (
          SELECT 1 FROM annotations_assignment a WHERE a.item_id = i.id AND a.counselor_id = %(counselor)s)
      AND (SELECT count(*) FROM annotations_assignment a
           WHERE a.item_id = i.id
             AND (a.status = 'submitted' OR (a.status = 'claimed' AND a.lease_expires_at > %(now)s))) < %(k)s
    ORDER BY i.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
INSERT INTO annotations_assignment (item_id, counselor_id, status, claimed_at, lease_expires_at)
SELECT id, %(counselor)s, 'claimed', %(now)s, %(until)s FROM next_item
RETURNING id, item_id
"""
# Run after the claim in the same transaction, with a fresh snapshot: the item's row lock is held, so every claim of
# it that came before has committed and is counted. It catches the one race the single statement cannot see (a claim
# that committed after this statement's snapshot was taken); then the claim is undone and the next item tried.
LIVE_SQL = """
SELECT count(*) FROM annotations_assignment a
WHERE a.item_id = %s AND (a.status = 'submitted' OR (a.status = 'claimed' AND a.lease_expires_at > %s))
"""


def _own_claim(campaign: Campaign, counselor) -> Assignment | None:
    return (
        Assignment.objects.select_related("item__candidate")
        .filter(
            item__campaign=campaign,
            counselor=counselor,
            status=Assignment.Status.CLAIMED,
            lease_expires_at__gt=timezone.now(),
        )
        .order_by("id")
        .first()
    )


def _claim_postgresql(campaign: Campaign, counselor) -> int | None:
    """The id of a new assignment, or None; inside the caller's transaction."""
    with connection.cursor() as cursor:
        for _ in range(20):
            # The application's clock, as for every other lease check (PostgreSQL's now() is the transaction's start).
            now = timezone.now()
            params = {
                "campaign": campaign.pk,
                "counselor": counselor.pk,
                "k": campaign.overlap,
                "now": now,
                "until": now + timedelta(seconds=campaign.lease_seconds),
            }
            cursor.execute(CLAIM_SQL, params)
            row = cursor.fetchone()
            if row is None:
                return None
            cursor.execute(LIVE_SQL, [row[1], now])
            if cursor.fetchone()[0] <= campaign.overlap:
                return row[0]
            # One claim too many: take it back (the item stays locked by this transaction, and full) and look again.
            cursor.execute("DELETE FROM annotations_assignment WHERE id = %s", [row[0]])
    return None


def _claim_portable(campaign: Campaign, counselor) -> int | None:
    """The id of a new assignment, or None; inside the caller's transaction."""
    # SQLite serializes writers; taking the write lock first keeps two claims from reading the same counts.
    Campaign.objects.select_for_update().filter(pk=campaign.pk).update(status=campaign.status)
    now = timezone.now()
    item = _open_items_for(campaign, counselor, now).first()
    if item is None:
        return None
    assignment = Assignment.objects.create(
        item=item,
        counselor=counselor,
        claimed_at=now,
        lease_expires_at=now + timedelta(seconds=campaign.lease_seconds),
    )
    return assignment.pk


def _open_items_for(campaign: Campaign, counselor, now) -> QuerySet[CampaignItem]:
    """The campaign's open items with fewer than k live slots that this person was never served, in queue order:
    what ``CLAIM_SQL`` chooses from, without its lock."""
    live = (
        Assignment.objects.filter(_live_slots_q(now), item=OuterRef("pk"))
        .order_by()
        .values("item")
        .annotate(n=Count("pk"))
        .values("n")
    )
    served = Assignment.objects.filter(item=OuterRef("pk"), counselor=counselor)
    return (
        CampaignItem.objects.filter(campaign=campaign, state=CampaignItem.State.OPEN)
        .filter(~Exists(served))
        .annotate(live=Coalesce(Subquery(live), 0))
        .filter(live__lt=campaign.overlap)
        .order_by("id")
    )


def queue_claim_next(*, campaign: Campaign, counselor) -> Assignment | None:
    """The counselor's current claim, or a new one on the next item that needs them; None when nothing is left.

    A new claim, its audit record and the read of what was claimed are one transaction: one commit.
    """
    _check_member(campaign, counselor)
    if campaign.status != Campaign.Status.OPEN:
        return None
    own = _own_claim(campaign, counselor)
    if own is not None:
        return own
    claim = _claim_postgresql if connection.vendor == "postgresql" else _claim_portable
    try:
        with transaction.atomic():
            pk = claim(campaign, counselor)
            if pk is None:
                return None
            assignment = Assignment.objects.select_related("item__candidate").get(pk=pk)
            audit_record(
                actor=counselor,
                action="queue.claim",
                candidate=assignment.item.candidate,
                data={
                    "campaign": campaign.pk,
                    "assignment": pk,
                    "lease_expires_at": assignment.lease_expires_at.isoformat(),
                },
            )
    except IntegrityError:
        return _own_claim(campaign, counselor)
    return assignment


def queue_peek_next(*, campaign: Campaign, counselor) -> Candidate | None:
    """What the next claim would most likely give after the current one; reserves nothing (the UI prefetches it).

    One query, like the claim's (the current claim is excluded: it was served to this person).
    """
    item = _open_items_for(campaign, counselor, timezone.now()).select_related("candidate").first()
    return item.candidate if item else None


def assignment_release(*, assignment: Assignment, counselor) -> None:
    """Skip: give the slot back. The person is not served this item again (the row stays, as released)."""
    if assignment.counselor_id != counselor.pk:
        raise PermissionDenied("This is not your assignment.")
    updated = Assignment.objects.filter(pk=assignment.pk, status=Assignment.Status.CLAIMED).update(
        status=Assignment.Status.RELEASED, finished_at=timezone.now()
    )
    if not updated:
        raise ValidationError(
            {"assignment": f"assignment {assignment.pk} is not claimed (it was submitted or released)"}
        )
    audit_record(
        actor=counselor,
        action="queue.release",
        candidate=assignment.item.candidate,
        data={"campaign": assignment.item.campaign_id, "assignment": assignment.pk},
    )


# --- Reviews and policy ------------------------------------------------------------------------------------------


def campaign_policy_decide(*, item: CampaignItem) -> str:
    """Once k reviews are in: "approve" when the policy's conditions hold, else "adjudication"."""
    campaign = item.campaign
    policy = {**DEFAULT_POLICY, **(campaign.policy or {})}
    reviews = list(Review.objects.filter(campaign=campaign, candidate=item.candidate))
    approvals = sum(r.decision == Review.Decision.APPROVE for r in reviews)
    min_approvals = policy["min_approvals"] or campaign.overlap
    if approvals < min_approvals:
        return "adjudication"
    keys = {key for r in reviews for key in r.scores}
    for key in keys:
        values = [r.scores[key] for r in reviews if key in r.scores]
        if sum(values) / len(values) < float(policy["min_mean"] or 0):
            return "adjudication"
    candidate = Candidate.objects.get(pk=item.candidate_id)
    flagged = policy.get("no_risk", True) and any(r.risk_flags for r in reviews)
    # Risk blocks approval whatever the policy says, until a senior clinician signs it off.
    if candidate.has_open_risk or (flagged and not candidate.risk_flags):
        return "adjudication"
    return "approve"


def campaign_review_submit(
    *,
    assignment: Assignment,
    reviewer,
    scores: dict,
    decision: str,
    comment: str = "",
    risk_flags: list[str] | None = None,
    base_version: int,
    time_spent_s: int = 0,
    idempotency_key: str | None = None,
) -> Review:
    """Record a review in a campaign; once the item has k reviews its policy approves it or sends it to adjudication.

    A retried submit with the same ``idempotency_key`` returns the first review and writes nothing.
    """
    if idempotency_key:
        earlier = Review.objects.filter(reviewer=reviewer, idempotency_key=idempotency_key).first()
        if earlier is not None:
            return earlier
    if assignment.counselor_id != reviewer.pk:
        raise PermissionDenied("This is not your assignment.")
    if not roles.user_can_review(reviewer):
        raise PermissionDenied("Only counselors and senior clinicians review.")
    risk_flags = _validate_review(decision=decision, risk_flags=risk_flags, comment=comment)
    campaign = assignment.item.campaign
    clean = _validate_scores(rubric=campaign.rubric, scores=scores)
    try:
        with transaction.atomic():
            item = CampaignItem.objects.select_for_update().get(pk=assignment.item_id)
            locked = Assignment.objects.select_for_update().get(pk=assignment.pk)
            now = timezone.now()
            if locked.status != Assignment.Status.CLAIMED:
                raise ValidationError({"assignment": f"assignment {locked.pk} is {locked.status}, not claimed"})
            if locked.lease_expires_at <= now:
                live = item.assignments.filter(_live_slots_q(now)).exclude(pk=locked.pk).count()
                if live >= campaign.overlap:
                    raise ValidationError({"assignment": "your lease ran out and the slot went to someone else"})
            candidate = Candidate.objects.select_for_update().get(pk=item.candidate_id)
            if candidate.version != base_version:
                raise gen_services.StaleVersion(candidate)
            revision = gen_selectors.candidate_latest_revision(candidate=candidate)
            review = Review.objects.create(
                candidate=candidate,
                revision=revision,
                reviewer=reviewer,
                rubric=campaign.rubric,
                scores=clean,
                decision=decision,
                comment=comment,
                risk_flags=risk_flags,
                time_spent_s=max(0, int(time_spent_s)),
                campaign=campaign,
                assignment=locked,
                idempotency_key=idempotency_key or None,
            )
            locked.status = Assignment.Status.SUBMITTED
            locked.finished_at = now
            locked.save(update_fields=["status", "finished_at"])
            if risk_flags:
                gen_services.candidate_flag_risk(
                    candidate=candidate,
                    flags=[
                        {"by": f"review:{review.pk}", "code": f, "detail": comment, "at": now.isoformat()}
                        for f in risk_flags
                    ],
                )
            item.reviews_done = item.assignments.filter(status=Assignment.Status.SUBMITTED).count()
            outcome = None
            if item.reviews_done >= campaign.overlap:
                outcome = campaign_policy_decide(item=item)
                if outcome == "approve":
                    gen_services.candidate_set_status(candidate=candidate, status=Candidate.Status.APPROVED)
                    item.state = CampaignItem.State.DECIDED
                else:
                    item.state = CampaignItem.State.ADJUDICATION
            elif candidate.status == Candidate.Status.GENERATED:
                gen_services.candidate_set_status(candidate=candidate, status=Candidate.Status.IN_REVIEW)
            item.save(update_fields=["reviews_done", "state"])
            Draft.objects.filter(user=reviewer, candidate=candidate).delete()
            audit_record(
                actor=reviewer,
                action="review.submit",
                candidate=candidate,
                data={
                    "review": review.pk,
                    "campaign": campaign.pk,
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
    return review


# --- Drafts ------------------------------------------------------------------------------------------------------

DRAFT_KEYS = ("scores", "decision", "comment", "risk_flags", "time_spent_s")


def draft_save(*, user, candidate: Candidate, data: dict) -> Draft:
    """Keep what a reviewer has typed so far on the server, so that a closed tab or another device loses nothing."""
    if not isinstance(data, dict):
        raise ValidationError({"data": "a draft is an object"})
    unknown = set(data) - set(DRAFT_KEYS)
    if unknown:
        raise ValidationError({"data": f"unknown draft field(s): {', '.join(sorted(unknown))}"})
    if len(str(data)) > 20_000:
        raise ValidationError({"data": "a draft is at most 20000 characters"})
    draft, _ = Draft.objects.update_or_create(user=user, candidate=candidate, defaults={"data": data})
    return draft


def draft_get(*, user, candidate: Candidate) -> dict:
    draft = Draft.objects.filter(user=user, candidate=candidate).first()
    return dict(draft.data) if draft else {}


# --- Visibility --------------------------------------------------------------------------------------------------


def reviews_visible_to(*, user, candidate: Candidate, campaign: Campaign | None = None) -> list[Review]:
    """Reviews of a candidate a user may read. In a blind campaign a counselor sees only their own."""
    qs = Review.objects.filter(candidate=candidate).select_related("reviewer", "rubric", "revision")
    if campaign is not None:
        qs = qs.filter(campaign=campaign)
    if roles.user_has_role(user, *SEE_ALL):
        return list(qs)
    if not roles.user_has_role(user, roles.COUNSELOR):
        return []
    blind = Campaign.objects.filter(blind=True, items__candidate=candidate)
    blind_here = campaign.blind if campaign is not None else blind.exists()
    if blind_here:
        return list(qs.filter(reviewer=user))
    return list(qs)


# --- Adjudication ------------------------------------------------------------------------------------------------


def adjudication_queue(*, clinician) -> QuerySet[CampaignItem]:
    """Items waiting for a senior clinician: reviewers disagreed (policy) or a risk flag is open."""
    if not roles.user_can_sign_off_risk(clinician):
        raise PermissionDenied("Only a senior clinician adjudicates.")
    open_risk = ~Q(candidate__risk_flags=[]) & Q(candidate__risk_signed_off_at__isnull=True)
    return (
        CampaignItem.objects.select_related("campaign", "candidate")
        .filter(Q(state=CampaignItem.State.ADJUDICATION) | (open_risk & ~Q(state=CampaignItem.State.DECIDED)))
        .order_by("id")
    )


def adjudicate(*, item: CampaignItem, clinician, decision: str, reason: str, base_version: int) -> Adjudication:
    """A senior clinician's final decision; approving a flagged item with a reason signs its risk off."""
    if not roles.user_can_sign_off_risk(clinician):
        raise PermissionDenied("Only a senior clinician adjudicates.")
    if decision not in Review.Decision.values:
        raise ValidationError({"decision": f"must be approve, reject or needs_revision, not {decision!r}"})
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "say why: an adjudication needs a reason"})
    with transaction.atomic():
        candidate = Candidate.objects.select_for_update().get(pk=item.candidate_id)
        if candidate.version != base_version:
            raise gen_services.StaleVersion(candidate)
        if decision == Review.Decision.APPROVE and candidate.has_open_risk:
            gen_services.candidate_sign_off_risk(candidate=candidate, clinician=clinician)
            audit_record(
                actor=clinician,
                action="risk.sign_off",
                candidate=candidate,
                data={"note": reason, "flags": candidate.risk_flags, "adjudication": True},
            )
        gen_services.candidate_set_status(candidate=candidate, status=DECISION_STATUS[decision])
        revision = gen_selectors.candidate_latest_revision(candidate=candidate)
        adjudication = Adjudication.objects.create(
            candidate=candidate,
            campaign=item.campaign,
            clinician=clinician,
            decision=decision,
            reason=reason,
            revision=revision,
        )
        CampaignItem.objects.filter(pk=item.pk).update(state=CampaignItem.State.DECIDED)
        audit_record(
            actor=clinician,
            action="adjudication",
            candidate=candidate,
            data={
                "adjudication": adjudication.pk,
                "campaign": item.campaign_id,
                "decision": decision,
                "reason": reason,
            },
        )
    item.refresh_from_db()
    return adjudication


# --- Regeneration and history ------------------------------------------------------------------------------------


def candidate_regenerate_with_critique(
    *, candidate: Candidate, reviewer, critique: str, campaign: Campaign | None = None
):
    """Queue a dialogue run that writes a new version of the candidate, told what was wrong with it.

    The new candidate has ``parent=candidate``; when it is saved, ``annotations.signals`` adds it to ``campaign``.
    """
    if not roles.user_can_review(reviewer):
        raise PermissionDenied("Only counselors and senior clinicians ask for a regeneration.")
    critique = (critique or "").strip()
    if not critique:
        raise ValidationError({"critique": "say what should change"})
    if candidate.kind != "dialogue":
        raise ValidationError({"candidate": f"only dialogues are regenerated, not {candidate.kind}"})
    if campaign is not None and not campaign.items.filter(candidate=candidate).exists():
        raise ValidationError({"campaign": f"candidate {candidate.pk} is not in campaign {campaign.pk}"})
    critique_target = {"parent": candidate, "feedback": critique}
    if campaign is not None:
        critique_target["campaign"] = campaign.pk
    # The run is started for the reviewer (who may not start runs of their own): created_by stays empty and the
    # audit event below says who asked.
    run = gen_services.run_create(
        kind="dialogue", critiques=[critique_target], model_spec=gen_services.modelspec_get_default()
    )
    audit_record(
        actor=reviewer,
        action="candidate.regenerate",
        candidate=candidate,
        data={"run": run.pk, "critique": critique, "campaign": campaign.pk if campaign else None},
    )
    return run


def candidate_history(*, candidate: Candidate, user) -> QuerySet[AuditEvent]:
    """The audit trail of a candidate, newest first; a counselor in a blind campaign sees only their own events."""
    qs = AuditEvent.objects.filter(candidate=candidate).order_by("-created_at", "-id")
    if roles.user_has_role(user, *SEE_ALL):
        return qs
    if not roles.user_has_role(user, roles.COUNSELOR):
        return qs.none()
    if Campaign.objects.filter(blind=True, items__candidate=candidate).exists():
        return qs.filter(actor=user)
    return qs
