"""What people do: rubrics, campaigns and their queue, reviews, drafts, adjudications and the audit trail."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from generation.models import Candidate, CandidateKind, Revision


class Rubric(models.Model):
    """A versioned set of criteria for one kind of candidate.

    ``criteria`` is a list of ``{"key", "label", "help", "anchors": {"1": ..., "5": ...}}``; a scale of 1 to 5.
    A rubric that has been used is never edited: a change is a new version.
    """

    kind = models.CharField(max_length=16, choices=CandidateKind.choices)
    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField(default=1)
    criteria = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "-version"]
        constraints = [models.UniqueConstraint(fields=["kind", "name", "version"], name="rubric_unique_version")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class RiskCode(models.TextChoices):
    SELF_HARM = "self_harm", _("Self-harm or suicide handled badly")
    HARMFUL_ADVICE = "harmful_advice", _("Harmful advice")
    BOUNDARY = "boundary", _("Boundary violation")
    DIAGNOSIS = "diagnosis", _("Diagnosis beyond the evidence")
    OTHER = "other", _("Other risk")


class ReviewPolicy(models.Model):
    """When reviews outside any campaign approve a candidate; one row, set by a curator.

    A candidate is approved when, on its latest revision, at least ``min_senior_approvals`` senior clinicians or at
    least ``min_counselor_approvals`` counselors approve, every criterion's mean over those reviews reaches
    ``min_mean``, and no risk flag is open (``annotations.services.policy.policy_decide``).
    """

    min_senior_approvals = models.PositiveSmallIntegerField(default=1)
    min_counselor_approvals = models.PositiveSmallIntegerField(default=2)
    min_mean = models.FloatField(default=3.0)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return (
            f"{self.min_senior_approvals} senior clinician(s) or {self.min_counselor_approvals} counselor(s), "
            f"mean >= {self.min_mean}"
        )


class Campaign(models.Model):
    """A set of candidates that chosen people review with one rubric, k of them per candidate.

    ``policy`` decides what happens once k reviews are in: ``{"min_approvals": k, "min_mean": 3.0,
    "no_risk": true}`` approves a candidate when at least ``min_approvals`` reviews approve, every criterion's mean
    reaches ``min_mean`` and no risk flag was raised; anything else goes to adjudication.
    """

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        CLOSED = "closed", _("Closed")

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=CandidateKind.choices)
    rubric = models.ForeignKey(Rubric, on_delete=models.PROTECT, related_name="campaigns")
    overlap = models.PositiveSmallIntegerField(default=2, help_text="k: counselors per candidate")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="campaigns")
    guidelines = models.TextField(blank=True, help_text="Markdown")
    blind = models.BooleanField(default=True, help_text="Hide the AI supervisor's scores and other reviews")
    policy = models.JSONField(default=dict, blank=True)
    lease_seconds = models.PositiveIntegerField(default=1800)
    # What the candidates were chosen by (kind, sub-emotions, scenarios, run, status or an id list), for the record.
    selection = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class CampaignItem(models.Model):
    """One candidate in one campaign, with how far its reviewing has come."""

    class State(models.TextChoices):
        OPEN = "open", _("Waiting for reviews")
        ADJUDICATION = "adjudication", _("Waiting for adjudication")
        DECIDED = "decided", _("Decided")
        # A reference item a curator marked (``GoldItem``): served to counselors at the campaign's gold rate, outside
        # the k slots, never decided by its reviews.
        GOLD = "gold", _("Reference item")

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="items")
    candidate = models.ForeignKey(Candidate, on_delete=models.PROTECT, related_name="campaign_items")
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    # Reviews submitted in this campaign (never more than the campaign's overlap).
    reviews_done = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["campaign_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "candidate"], name="campaign_item_unique_candidate"),
        ]
        indexes = [
            # The queue scans the open items of one campaign in id order.
            models.Index(fields=["campaign", "id"], condition=Q(state="open"), name="campaign_item_open_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.candidate} in {self.campaign}"


class Assignment(models.Model):
    """One counselor's slot on one campaign item: claimed with a lease, then submitted, released or expired.

    A person is never served the same item twice (one row per item and person, whatever its status); a claim
    whose lease has run out no longer counts toward the item's k.
    """

    class Status(models.TextChoices):
        CLAIMED = "claimed", _("Claimed")
        SUBMITTED = "submitted", _("Submitted")
        RELEASED = "released", _("Released (skipped)")

    item = models.ForeignKey(CampaignItem, on_delete=models.CASCADE, related_name="assignments")
    counselor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assignments")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CLAIMED)
    claimed_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["item", "counselor"], name="assignment_unique_person"),
        ]
        indexes = [models.Index(fields=["counselor", "status"], name="assignment_person_status_idx")]

    def __str__(self) -> str:
        return f"{self.counselor} on {self.item} ({self.status})"

    @classmethod
    def live_q(cls, now) -> Q:
        """Assignments that count toward an item's k: submitted, or claimed with a lease still running."""
        return Q(status=cls.Status.SUBMITTED) | Q(status=cls.Status.CLAIMED, lease_expires_at__gt=now)


class Review(models.Model):
    """One counselor's judgement of one revision of a candidate."""

    class Decision(models.TextChoices):
        APPROVE = "approve", _("Approve")
        REJECT = "reject", _("Reject")
        NEEDS_REVISION = "needs_revision", _("Needs revision")

    candidate = models.ForeignKey(Candidate, on_delete=models.PROTECT, related_name="reviews")
    revision = models.ForeignKey(Revision, on_delete=models.PROTECT, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    rubric = models.ForeignKey(Rubric, on_delete=models.PROTECT, related_name="reviews")
    scores = models.JSONField()
    decision = models.CharField(max_length=16, choices=Decision.choices)
    comment = models.TextField(blank=True)
    risk_flags = models.JSONField(default=list, blank=True)
    time_spent_s = models.PositiveIntegerField(default=0)
    campaign = models.ForeignKey(Campaign, null=True, blank=True, on_delete=models.PROTECT, related_name="reviews")
    assignment = models.OneToOneField(
        Assignment, null=True, blank=True, on_delete=models.PROTECT, related_name="review"
    )
    # A review of a reference item (``GoldItem``): scored against the reference, never counted toward the
    # candidate's approval, a campaign's agreement or its funnel.
    gold = models.BooleanField(default=False)
    # Set by the client for each submit: a retried submit with the same key returns the first review.
    idempotency_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["reviewer", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="review_unique_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"review {self.pk} of {self.candidate} by {self.reviewer}"


class GoldItem(models.Model):
    """A campaign item with a reference judgement: the scores and decision a curator holds right for it.

    Counselors are served it like any item (``annotations.services.queue``); their reviews of it are scored against
    the reference and never decide anything. Unmarking stops serving it and keeps the row, so that the reviews
    already written keep their reference.
    """

    item = models.OneToOneField(CampaignItem, on_delete=models.CASCADE, related_name="gold")
    scores = models.JSONField()
    decision = models.CharField(max_length=16, choices=Review.Decision.choices)
    active = models.BooleanField(default=True)
    marked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    marked_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["item_id"]

    def __str__(self) -> str:
        return f"reference for {self.item}"


class Draft(models.Model):
    """What a counselor has typed for a candidate and not yet submitted: scores, decision, comment, flags."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="drafts")
    candidate = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="drafts")
    data = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "candidate"], name="draft_unique_user_candidate")]

    def __str__(self) -> str:
        return f"draft of {self.user} on {self.candidate}"


class Adjudication(models.Model):
    """A senior clinician's final decision on a candidate that reviewers disagreed on or flagged."""

    candidate = models.ForeignKey(Candidate, on_delete=models.PROTECT, related_name="adjudications")
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.PROTECT, related_name="adjudications"
    )
    clinician = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=16, choices=Review.Decision.choices)
    reason = models.TextField()
    # The revision decided on (a further edit made while adjudicating is a revision of its own).
    revision = models.ForeignKey(Revision, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"adjudication of {self.candidate} by {self.clinician}: {self.decision}"


class AuditEvent(models.Model):
    """Append-only record of every decision, edit, sign-off and export. Never updated, never deleted."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    action = models.CharField(max_length=64, db_index=True)
    candidate = models.ForeignKey(
        Candidate, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor} at {self.created_at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs):
        # Append-only: an existing event is never rewritten.
        if self.pk is not None:
            raise ValueError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("audit events are append-only")
