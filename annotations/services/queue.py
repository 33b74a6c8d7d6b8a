"""The queue: a counselor claims the next item of a campaign that needs them, and may give it back (skip).

The queue hands each counselor the next open item of a campaign that has fewer than k live slots (submitted reviews
plus claims whose lease has not run out) and that they were never served. On PostgreSQL the claim is one statement
(see ``CLAIM_SQL``); elsewhere a transaction. Every claim and release is audited. What a counselor holds and would
get next, without claiming, is read in ``annotations.selectors.queues``.
"""

from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ..models import Assignment, Campaign
from ..selectors.queues import check_member, gold_due, open_items_for, own_claim
from .audit import audit_record

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
    item = open_items_for(campaign, counselor, now).first()
    if item is None:
        return None
    assignment = Assignment.objects.create(
        item=item,
        counselor=counselor,
        claimed_at=now,
        lease_expires_at=now + timedelta(seconds=campaign.lease_seconds),
    )
    return assignment.pk


def _claim_gold(campaign: Campaign, counselor) -> int | None:
    """The id of a new assignment on the reference item due now, or None; inside the caller's transaction.

    A reference item has no k: every counselor may be served it once (the unique (item, counselor) constraint).
    """
    now = timezone.now()
    item = gold_due(campaign=campaign, counselor=counselor, now=now)
    if item is None:
        return None
    assignment = Assignment.objects.create(
        item=item,
        counselor=counselor,
        claimed_at=now,
        lease_expires_at=now + timedelta(seconds=campaign.lease_seconds),
    )
    return assignment.pk


def queue_claim_next(*, campaign: Campaign, counselor) -> Assignment | None:
    """The counselor's current claim, or a new one on the next item that needs them; None when nothing is left.

    Reference items (``GoldItem``) are mixed in here and nowhere else, at the campaign's ``gold_rate``
    (``selectors.queues.gold_due``); the claim, its audit record and what the page shows are the same for both.
    A new claim, its audit record and the read of what was claimed are one transaction: one commit.
    """
    check_member(campaign, counselor)
    if campaign.status != Campaign.Status.OPEN:
        return None
    own = own_claim(campaign, counselor)
    if own is not None:
        return own
    claim = _claim_postgresql if connection.vendor == "postgresql" else _claim_portable
    try:
        with transaction.atomic():
            pk = _claim_gold(campaign, counselor)
            if pk is None:
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
        return own_claim(campaign, counselor)
    return assignment


def assignment_release(*, assignment: Assignment, counselor) -> None:
    """Skip: give the slot back. The person is not served this item again (the row stays, as released)."""
    if assignment.counselor_id != counselor.pk:
        raise PermissionDenied(_("This is not your assignment."))
    updated = Assignment.objects.filter(pk=assignment.pk, status=Assignment.Status.CLAIMED).update(
        status=Assignment.Status.RELEASED, finished_at=timezone.now()
    )
    if not updated:
        raise ValidationError(
            {"assignment": _("assignment %(id)s is not claimed (it was submitted or released)") % {"id": assignment.pk}}
        )
    audit_record(
        actor=counselor,
        action="queue.release",
        candidate=assignment.item.candidate,
        data={"campaign": assignment.item.campaign_id, "assignment": assignment.pk},
    )
