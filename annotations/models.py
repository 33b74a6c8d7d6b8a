"""What people do: rubrics, reviews and the audit trail."""

from django.conf import settings
from django.db import models

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


class RiskFlag(models.TextChoices):
    SELF_HARM = "self_harm", "Self-harm or suicide handled badly"
    HARMFUL_ADVICE = "harmful_advice", "Harmful advice"
    BOUNDARY = "boundary", "Boundary violation"
    DIAGNOSIS = "diagnosis", "Diagnosis beyond the evidence"
    OTHER = "other", "Other risk"


class Review(models.Model):
    """One counselor's judgement of one revision of a candidate."""

    class Decision(models.TextChoices):
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"
        NEEDS_REVISION = "needs_revision", "Needs revision"

    candidate = models.ForeignKey(Candidate, on_delete=models.PROTECT, related_name="reviews")
    revision = models.ForeignKey(Revision, on_delete=models.PROTECT, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    rubric = models.ForeignKey(Rubric, on_delete=models.PROTECT, related_name="reviews")
    scores = models.JSONField()
    decision = models.CharField(max_length=16, choices=Decision.choices)
    comment = models.TextField(blank=True)
    risk_flags = models.JSONField(default=list, blank=True)
    time_spent_s = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"review {self.pk} of {self.candidate} by {self.reviewer}"


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
