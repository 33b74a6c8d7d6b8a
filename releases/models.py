"""A release: a named, versioned set of training files built from a spec. Changed only through
``releases.services``; once ready it never changes (a new version is a new release)."""

from django.conf import settings
from django.db import models


class Release(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    name = models.SlugField(max_length=100)
    version = models.CharField(max_length=32)
    # The validated spec (releases.spec.spec_validate), as stored: what the build selects and writes.
    spec = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    # [{"name": "sft/train.jsonl", "rows", "sha256", "bytes"}], sorted by name.
    files = models.JSONField(default=list, blank=True)
    # What manifest.json in the release holds (counts, drops, reviewers, sources, software, files).
    manifest = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # When a worker claimed the build: a build still "building" past the task's hard time limit lost its worker
    # (services.releases_fail_stale).
    started_at = models.DateTimeField(null=True, blank=True)
    built_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # A build the PII scan blocked: its hits, for a curator to see ({candidate, where, detector, match}, the match
    # masked); at most services.MAX_LISTED_HITS of them.
    pii_hits = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="release_unique_version")]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


class ReleaseItem(models.Model):
    """One candidate a release holds in one format: the revision written and the split it went to.

    Written by the build a batch at a time while the files are written, so rows exist for a release that is still
    building; they count only once it is ready (``releases.selectors.release_items_visible``), and a failed or
    cancelled build deletes its rows.
    """

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="items")
    candidate = models.ForeignKey("generation.Candidate", on_delete=models.PROTECT, related_name="+")
    revision = models.ForeignKey("generation.Revision", on_delete=models.PROTECT, related_name="+")
    format = models.CharField(max_length=32)
    split = models.CharField(max_length=16)
    # The rows the candidate gave in this format's file (a DPO dialogue gives one a changed counselor turn).
    rows = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["release", "format", "candidate"]
        constraints = [
            models.UniqueConstraint(fields=["release", "format", "candidate"], name="release_item_unique"),
        ]
        indexes = [models.Index(fields=["candidate", "release"], name="release_item_candidate")]

    def __str__(self) -> str:
        return f"{self.release_id}: {self.format}/{self.split} candidate {self.candidate_id}"
