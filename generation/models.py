"""What machines produce: the taxonomy, scenarios, client profiles, model specs, generation runs and candidates.

Rows here are changed only through ``generation.services``; other apps read them through ``generation.selectors``.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .validators import modelspec_check


class EmotionCategory(models.Model):
    """One of the 8 EmoPsy emotion categories (anger, anxiety, ...)."""

    key = models.SlugField(max_length=32, unique=True)
    label_zh = models.CharField(max_length=64)
    label_en = models.CharField(max_length=128)

    class Meta:
        ordering = ["key"]
        verbose_name_plural = "emotion categories"

    def __str__(self) -> str:
        return self.label_en


class SubEmotion(models.Model):
    """One of the 35 EmoPsy sub-emotions, keyed like ``anxiety.1``."""

    category = models.ForeignKey(EmotionCategory, on_delete=models.PROTECT, related_name="sub_emotions")
    key = models.CharField(max_length=32, unique=True)
    label_zh = models.CharField(max_length=128)
    label_en = models.CharField(max_length=256)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.key} {self.label_en}"


class Language(models.TextChoices):
    ENGLISH = "en", _("English")
    CHINESE = "zh", _("Chinese")


class Scenario(models.Model):
    """A situation that a simulated client brings to counseling, for one sub-emotion."""

    class Source(models.TextChoices):
        WRITTEN = "written", _("Written")
        IMPORTED = "imported", _("Imported")
        GENERATED = "generated", _("Generated and approved")

    sub_emotion = models.ForeignKey(SubEmotion, on_delete=models.PROTECT, related_name="scenarios")
    title = models.CharField(max_length=200)
    description = models.TextField()
    language = models.CharField(max_length=2, choices=Language.choices, default=Language.ENGLISH)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.WRITTEN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["sub_emotion__key", "title"]

    def __str__(self) -> str:
        return self.title


class ClientProfile(models.Model):
    """Static traits of one client, from a case report or written by a curator."""

    name = models.CharField(max_length=200)
    background = models.TextField(blank=True)
    personality = models.TextField(blank=True)
    assessment = models.TextField(blank=True)
    language = models.CharField(max_length=2, choices=Language.choices, default=Language.ENGLISH)
    # What a course with this client works towards (MusPsy "Counseling Goals"), edited by curators.
    goals = models.TextField(blank=True)
    # Imported per-session client cards and counseling memories (MusPsy), oldest first: [{"session", "card",
    # "memory"}]. Generated courses keep their memories in their session candidates, not here.
    history = models.JSONField(default=list, blank=True)
    # Where an imported profile came from (dataset, licence, attribution, files) and the sha256 of what was read:
    # importing the same files again finds this profile instead of adding one. NULL for written profiles.
    source = models.JSONField(default=dict, blank=True)
    source_hash = models.CharField(max_length=64, null=True, blank=True, unique=True)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelSpec(models.Model):
    """A named model and how to load it."""

    class Backend(models.TextChoices):
        TRANSFORMERS = "transformers", _("transformers (local)")
        OPENAI = "openai", _("OpenAI-compatible HTTP server (vLLM, TGI)")

    name = models.SlugField(max_length=100, unique=True)
    backend = models.CharField(max_length=32, choices=Backend.choices, default=Backend.TRANSFORMERS)
    # transformers: "bundled:<name>" for a model shipped in a Python package, else a local directory or a Hugging
    # Face cache name. openai: the model name the server knows.
    path = models.CharField(max_length=500)
    # openai backend: the server's base URL (".../v1"), under one of the operator's PSYROOM_MODEL_SERVERS, and the
    # name of a credential in PSYROOM_MODEL_CREDENTIALS, which names the worker's environment variable that holds the
    # key. Neither the key nor the name of a variable ever lives in the database (generation/validators.py).
    base_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="openai backend: the server's base URL (up to /v1); it must lie under one of the servers in the "
        "PSYROOM_MODEL_SERVERS setting.",
    )
    # The column keeps its name; since PSYROOM_MODEL_CREDENTIALS it holds a credential name, not a variable name.
    api_key_env = models.CharField(
        "credential",
        max_length=100,
        blank=True,
        help_text="openai backend: the name of a credential in the PSYROOM_MODEL_CREDENTIALS setting (e.g. vllm), "
        "or blank for a server without a key. Not an environment variable name, and never the key itself.",
    )
    timeout_s = models.PositiveIntegerField(default=120)
    max_retries = models.PositiveIntegerField(default=3)
    dtype = models.CharField(max_length=16, default="auto")
    device = models.CharField(max_length=16, default="auto")
    batch_size = models.PositiveIntegerField(default=8)
    # Defaults for max_new_tokens, temperature, top_p; a run's parameters override them.
    parameters = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        modelspec_check(backend=self.backend, base_url=self.base_url, api_key_env=self.api_key_env)


class CandidateKind(models.TextChoices):
    DIALOGUE = "dialogue", _("Dialogue")
    PLAN = "plan", _("Treatment plan")
    COURSE = "course", _("Course")
    SESSION = "session", _("Session")
    QUESTION = "question", _("Question")
    SCENARIO = "scenario", _("Scenario")


class GenerationRun(models.Model):
    """One request to generate ``count`` items of a kind with given inputs, model, prompt version and seed."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    kind = models.CharField(max_length=16, choices=CandidateKind.choices, default=CandidateKind.DIALOGUE)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    model_spec = models.ForeignKey(ModelSpec, on_delete=models.PROTECT, related_name="runs")
    # The first target's sub-emotion, for filtering; ``targets`` holds them all.
    sub_emotion = models.ForeignKey(SubEmotion, null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    scenario = models.ForeignKey(Scenario, null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    count = models.PositiveIntegerField()
    prompt_version = models.CharField(max_length=32)
    # What the run writes in: it picks the prompt version (``runs.kinds``), the labels and scenarios of the language,
    # and every candidate of the run is in it.
    language = models.CharField(max_length=2, choices=Language.choices, default=Language.ENGLISH)
    seed = models.BigIntegerField(default=0)
    # What item i is made from: targets[i % len(targets)], e.g. {"sub_emotion": "anxiety.1", "scenario": 4} for a
    # dialogue, {"dialogue": 12} for a plan.
    targets = models.JSONField(default=list, blank=True)
    # turns, max_new_tokens, temperature, top_p, supervisor threshold...: what the pipeline was asked for.
    parameters = models.JSONField(default=dict, blank=True)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    # One entry per failed item: {"index", "reason", "raw"}; the raw model text is kept for inspection.
    errors = models.JSONField(default=list, blank=True)
    # What the parsers caught and mended, counted: {"truncated": 3, "empty_turn": 1, "label_outside_taxonomy": 2}.
    stats = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Written by the worker that executes the run (generation/runwatch.py), every PSYROOM_RUN_HEARTBEAT_S and at
    # each model call: a running run whose heartbeat is older than PSYROOM_RUN_STALE_S has lost its worker
    # (selectors.run_is_stalled).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The chunk in flight, not yet saved: {"stage": "turn 3 of 6", "calls", "prompt_tokens", "completion_tokens",
    # "updated_at"}; emptied when the chunk is saved (its tokens then count in prompt_tokens and completion_tokens).
    chunk_progress = models.JSONField(default=dict, blank=True)
    # How many times the run was resumed after it stalled (services.runs.run_resume).
    resumes = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.kind} x{self.count}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED}


class Candidate(models.Model):
    """The unit that people judge: a dialogue, a plan, a course, a session, a question or a scenario."""

    class Status(models.TextChoices):
        GENERATED = "generated", _("Generated")
        IN_REVIEW = "in_review", _("In review")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")
        NEEDS_REVISION = "needs_revision", _("Needs revision")

    kind = models.CharField(max_length=16, choices=CandidateKind.choices, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.GENERATED, db_index=True)
    # The latest revision's content; every version is kept in Revision.
    content = models.JSONField()
    language = models.CharField(max_length=2, choices=Language.choices, default=Language.ENGLISH)
    sub_emotion = models.ForeignKey(
        SubEmotion, null=True, blank=True, on_delete=models.PROTECT, related_name="candidates"
    )
    scenario = models.ForeignKey(Scenario, null=True, blank=True, on_delete=models.PROTECT, related_name="candidates")
    profile = models.ForeignKey(
        ClientProfile, null=True, blank=True, on_delete=models.PROTECT, related_name="candidates"
    )
    run = models.ForeignKey(GenerationRun, null=True, blank=True, on_delete=models.PROTECT, related_name="candidates")
    # The position of this item within its run: re-running a chunk skips indexes already saved.
    run_index = models.PositiveIntegerField(null=True, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    sequence = models.PositiveIntegerField(null=True, blank=True)
    # Optimistic locking: every change of content bumps it; a save on a stale version is refused.
    version = models.PositiveIntegerField(default=1)
    ai_review = models.JSONField(default=dict, blank=True)
    # model, prompt_version, seed, parameters, input_hash
    lineage = models.JSONField(default=dict, blank=True)
    # Where an imported item came from: dataset, licence, attribution, file and record.
    source = models.JSONField(default=dict, blank=True)
    # sha256 of the imported content: the same file imported twice does not duplicate.
    # NULL (not "") for generated candidates, so that the unique constraint skips them.
    source_hash = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    # The revision people approved (by the review policy or an adjudication): exports take this one, never a later
    # edit. An edit of an approved candidate sends it back to review.
    approved_revision = models.ForeignKey("Revision", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Not fields: what a builder hangs on an unsaved candidate for ``candidates_save_new`` to save with it, the risk
    # flags the screen (and an agent) found (``candidate_build``) and the children saved in the same transaction (a
    # course's sessions).
    new_flags: list[dict]
    new_children: list["Candidate"]

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "source_hash"], condition=Q(source_hash__isnull=False), name="candidate_unique_source"
            ),
            models.UniqueConstraint(
                fields=["run", "run_index"], condition=Q(run__isnull=False), name="candidate_unique_run_index"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def has_open_risk(self) -> bool:
        """A risk flag is open: raised and not signed off by a senior clinician.

        Lists annotate ``open_risk`` (``selectors.with_risk``) so that a page of candidates asks once.
        """
        annotated = self.__dict__.get("open_risk")
        if annotated is not None:
            return annotated
        return self.open_risk_flags().exists()

    def open_risk_flags(self):
        """The flags in ``risk_flags_in_scope`` that no senior clinician has signed off: each blocks approval."""
        return self.risk_flags_in_scope().filter(signed_off_at__isnull=True)

    def risk_flags_in_scope(self):
        """The flags that gate this candidate: its own and, for a course, its sessions' (a course is approved with
        its sessions, so a session's open flag blocks the course too)."""
        if self.kind == CandidateKind.COURSE:
            return RiskFlag.objects.filter(
                models.Q(candidate=self) | models.Q(candidate__parent=self, candidate__kind=CandidateKind.SESSION)
            )
        return self.flags.all()


class Revision(models.Model):
    """One version of a candidate's content. Revision 0 is the model's own (or the imported) text."""

    class Category(models.TextChoices):
        ORIGINAL = "original", _("Original")
        WORDING = "wording", _("Wording")
        CLINICAL = "clinical", _("Clinical correction")
        SAFETY = "safety", _("Safety fix")

    candidate = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    content = models.JSONField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    category = models.CharField(max_length=16, choices=Category.choices, default=Category.ORIGINAL)
    reason = models.TextField(blank=True)
    base_number = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["candidate_id", "number"]
        constraints = [models.UniqueConstraint(fields=["candidate", "number"], name="revision_unique_number")]

    def __str__(self) -> str:
        return f"{self.candidate} r{self.number}"


class RiskFlag(models.Model):
    """One risk flag on a candidate: raised by the automatic screen, the risk agent, a reviewer or inherited from
    the item it was derived from, on the revision that was read; open until a senior clinician signs it off.

    A sign-off names the flags it covers and the version its signer saw
    (``services.candidates.candidate_sign_off_risk``), so a flag raised later is never covered by an earlier sign-off.
    """

    class Source(models.TextChoices):
        SCREEN = "screen", _("Automatic screen")
        AGENT = "agent", _("Risk agent")
        REVIEW = "review", _("Reviewer")
        INHERITED = "inherited", _("Inherited")

    candidate = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="flags")
    code = models.CharField(max_length=32)
    detail = models.TextField(blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    raised_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The review that raised it (an annotations.Review id: generation does not import annotations).
    review_id = models.PositiveIntegerField(null=True, blank=True)
    revision = models.ForeignKey(Revision, on_delete=models.PROTECT, related_name="flags")
    signed_off_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    signed_off_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["candidate_id", "id"]
        indexes = [
            models.Index(fields=["candidate"], condition=Q(signed_off_at__isnull=True), name="riskflag_open_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.code} on {self.candidate}"

    @property
    def is_open(self) -> bool:
        return self.signed_off_at is None
