"""Campaigns: who reviews which candidates, k per candidate, through a leased queue; then policy and adjudication.

The queue hands each counselor the next open item of a campaign that has fewer than k live slots (submitted reviews
plus claims whose lease has not run out) and that they were never served. On PostgreSQL the claim is one statement
(see ``CLAIM_SQL``); elsewhere a transaction. Every claim, release, review, adjudication and regeneration is audited.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from generation import selectors as gen_selectors
from generation import services as gen_services
from generation.models import Candidate, GenerationRun
from psyroom_admin import roles

from .models import Assignment, Campaign, CampaignItem, Draft, Rubric
from .reviews import campaign_policy_validate
from .services import audit_record, rubric_get_default

CAMPAIGN_MANAGERS = (roles.CURATOR, roles.ADMIN)
MAX_LEASE_SECONDS = 7 * 24 * 3600


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
    if not isinstance(lease_seconds, int) or isinstance(lease_seconds, bool):
        raise ValidationError({"lease_seconds": f"{lease_seconds!r} is not a whole number of seconds"})
    if not 30 <= lease_seconds <= MAX_LEASE_SECONDS:
        raise ValidationError({"lease_seconds": f"a lease runs from 30 seconds to 7 days, not {lease_seconds}"})
    rubric = rubric or rubric_get_default(kind=kind)
    if rubric.kind != kind:
        raise ValidationError({"rubric": f"{rubric} is for {rubric.kind}, not {kind}"})
    policy = campaign_policy_validate(policy=policy, overlap=overlap)
    filters = _validate_filters(filters)
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


def _validate_filters(filters) -> dict:
    """What a campaign's candidates are chosen by, checked here so that a bad value is a clear 400, not a 500."""
    if filters is None:
        return {}
    if not isinstance(filters, dict):
        raise ValidationError({"filters": "must be an object"})
    unknown = set(filters) - {"sub_emotions", "scenarios", "run", "status"}
    if unknown:
        raise ValidationError({"filters": f"unknown filter(s): {', '.join(sorted(map(str, unknown)))}"})
    clean = {}
    sub_emotions = filters.get("sub_emotions") or []
    if not isinstance(sub_emotions, list) or not all(isinstance(k, str) and len(k) <= 32 for k in sub_emotions):
        raise ValidationError({"filters": "sub_emotions: a list of sub-emotion keys such as anxiety.1"})
    if sub_emotions:
        known = set(gen_selectors.sub_emotion_list().filter(key__in=sub_emotions).values_list("key", flat=True))
        missing = [k for k in sub_emotions if k not in known]
        if missing:
            raise ValidationError({"filters": f"sub_emotions: no sub-emotion {', '.join(missing[:10])}"})
        clean["sub_emotions"] = sub_emotions
    for name in ("scenarios",):
        ids = filters.get(name) or []
        if not isinstance(ids, list) or not all(_is_id(i) for i in ids):
            raise ValidationError({"filters": f"{name}: a list of ids (whole numbers)"})
        if ids:
            clean[name] = ids
    if filters.get("run") not in (None, ""):
        if not _is_id(filters["run"]):
            raise ValidationError({"filters": f"run: a run id (a whole number), not {filters['run']!r}"})
        clean["run"] = filters["run"]
    if filters.get("status"):
        if filters["status"] not in Candidate.Status.values:
            raise ValidationError({"filters": f"status: one of {', '.join(Candidate.Status.values)}"})
        clean["status"] = filters["status"]
    return clean


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 2**63 - 1


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
        Assignment.objects.filter(Assignment.live_q(now), item=OuterRef("pk"))
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


def queue_current_claim(*, campaign: Campaign, counselor) -> Assignment | None:
    """The counselor's unexpired claim in this campaign, if they hold one; claims nothing (what a GET may show)."""
    _check_member(campaign, counselor)
    if campaign.status != Campaign.Status.OPEN:
        return None
    return _own_claim(campaign, counselor)


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


# --- Regeneration ---------------------------------------------------------------------------------------------


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
    limit = settings.PSYROOM_REGENERATIONS_PER_USER
    with transaction.atomic():
        # One reviewer's requests one at a time (their row locked), so that a burst cannot pass the limit together.
        get_user_model().objects.select_for_update().filter(pk=reviewer.pk).first()
        waiting = GenerationRun.objects.filter(
            created_by=reviewer, status__in=[GenerationRun.Status.QUEUED, GenerationRun.Status.RUNNING]
        ).count()
        if waiting >= limit:
            raise ValidationError(
                {"critique": f"you have {waiting} regenerations waiting or running (at most {limit}): "
                 "wait until one is done"}
            )  # fmt: skip
        # The run is started for the reviewer, who may not start runs of their own: it is theirs (created_by) for
        # the limit and the record, and the audit event below says what they asked.
        run = gen_services.run_create(
            kind="dialogue",
            critiques=[critique_target],
            model_spec=gen_services.modelspec_get_default(),
            created_by=reviewer,
        )
    audit_record(
        actor=reviewer,
        action="candidate.regenerate",
        candidate=candidate,
        data={"run": run.pk, "critique": critique, "campaign": campaign.pk if campaign else None},
    )
    return run
