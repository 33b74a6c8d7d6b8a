"""Reads of the generation app, for views, APIs and the annotations app."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypedDict

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connections, router
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone
from django.utils.translation import gettext_lazy

from .models import Candidate, CandidateKind, GenerationRun, Revision, RiskFlag, Scenario, SubEmotion

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class RiskAnnotations(TypedDict):
    """What ``with_risk`` annotates a candidate with."""

    flagged: bool
    open_risk: bool


if TYPE_CHECKING:
    # A candidate of ``with_risk``; for type checkers only (WithAnnotations takes no TypedDict at run time).
    CandidateWithRisk = WithAnnotations[Candidate, RiskAnnotations]

REVIEWABLE = [Candidate.Status.GENERATED, Candidate.Status.IN_REVIEW, Candidate.Status.NEEDS_REVISION]


def candidate_list(*, filters: dict | None = None) -> QuerySet[CandidateWithRisk]:
    """Candidates with the filters the API, pages and campaign selection offer: kind, status, sub_emotion (key),
    sub_emotions (keys), scenarios (ids), run (id), sources (the datasets imports came from), language."""
    filters = filters or {}
    qs = with_risk(Candidate.objects.select_related("sub_emotion", "run").order_by("id"))
    if filters.get("kind"):
        qs = qs.filter(kind=filters["kind"])
    if filters.get("status"):
        qs = qs.filter(status=filters["status"])
    if filters.get("sub_emotion"):
        qs = qs.filter(sub_emotion__key=filters["sub_emotion"])
    if filters.get("sub_emotions"):
        qs = qs.filter(sub_emotion__key__in=filters["sub_emotions"])
    if filters.get("scenarios"):
        qs = qs.filter(scenario_id__in=filters["scenarios"])
    if filters.get("run"):
        qs = qs.filter(run_id=filters["run"])
    if filters.get("sources"):
        qs = qs.filter(source__dataset__in=filters["sources"])
    if filters.get("language"):
        qs = qs.filter(language=filters["language"])
    return qs


def open_risk_q(*, candidate: str = "pk") -> Exists:
    """A candidate (the outer query's field ``candidate``) with a risk flag no senior clinician has signed off."""
    return Exists(RiskFlag.objects.filter(candidate_id=OuterRef(candidate), signed_off_at__isnull=True))


def with_risk(queryset: QuerySet[Candidate]) -> QuerySet[CandidateWithRisk]:
    """Candidates annotated with ``flagged`` (any flag) and ``open_risk`` (one not signed off)."""
    return queryset.annotate(
        flagged=Exists(RiskFlag.objects.filter(candidate_id=OuterRef("pk"))), open_risk=open_risk_q()
    )


def candidate_flags(*, candidate: Candidate) -> QuerySet[RiskFlag]:
    """The risk flags that gate a candidate (a course's include its sessions'), oldest first, with who raised and
    signed them, the revision they were read on and the candidate it belongs to."""
    return (
        candidate.risk_flags_in_scope()
        .select_related("raised_by", "signed_off_by", "revision", "candidate")
        .order_by("id")
    )


def candidate_list_reviewable(*, filters: dict | None = None) -> QuerySet[CandidateWithRisk]:
    """Candidates waiting for a person's judgement, with ``candidate_list``'s filters."""
    return candidate_list(filters=filters).filter(status__in=REVIEWABLE)


# Older SQLite builds allow 999 parameters in one statement.
_HASH_QUERY_CHUNK = 900


def source_hashes_existing(*, kind: str, hashes: list[str]) -> set[str]:
    """Which of ``hashes`` a candidate of ``kind`` already has as its ``source_hash`` (an import's duplicates).

    On PostgreSQL one query takes them all as an array (the unique index on kind and source_hash answers it);
    elsewhere they go in chunks that fit any SQLite build's parameter limit."""
    if not hashes:
        return set()
    connection = connections[router.db_for_read(Candidate)]
    queryset = Candidate.objects.using(connection.alias).filter(kind=kind)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT source_hash FROM {connection.ops.quote_name(Candidate._meta.db_table)} "
                "WHERE kind = %s AND source_hash = ANY(%s)",
                [kind, hashes],
            )
            return {row[0] for row in cursor.fetchall()}
    found: set[str] = set()
    for start in range(0, len(hashes), _HASH_QUERY_CHUNK):
        found.update(
            h
            for h in queryset.filter(source_hash__in=hashes[start : start + _HASH_QUERY_CHUNK]).values_list(
                "source_hash", flat=True
            )
            if h is not None
        )
    return found


def sub_emotion_list() -> QuerySet[SubEmotion]:
    return SubEmotion.objects.select_related("category").order_by("key")


def scenario_list() -> QuerySet[Scenario]:
    return Scenario.objects.select_related("sub_emotion").order_by("sub_emotion__key", "title", "id")


def source_dataset_list() -> list[str]:
    """The datasets candidates were imported from (``source["dataset"]``), by name."""
    datasets = (
        Candidate.objects.annotate(dataset=KeyTextTransform("dataset", "source"))
        .filter(dataset__isnull=False)
        .values_list("dataset", flat=True)
        .distinct()
    )
    return sorted(datasets)


def candidate_latest_revision(*, candidate: Candidate) -> Revision:
    revision = candidate.revisions.order_by("-number").first()
    assert revision is not None, "every candidate is saved with its revision 0"
    return revision


def candidate_original_revision(*, candidate: Candidate) -> Revision:
    return candidate.revisions.get(number=0)


def candidate_list_exportable(*, kind: str) -> QuerySet[CandidateWithRisk]:
    """Approved candidates with no open risk flag: only these may leave in a release, and only as the revision that
    was approved (``approved_revision``), never a later edit."""
    qs = candidate_list(filters={"kind": kind, "status": Candidate.Status.APPROVED})
    return qs.filter(approved_revision__isnull=False, open_risk=False).select_related("approved_revision")


def sub_emotion_get(*, key: str) -> SubEmotion:
    return SubEmotion.objects.select_related("category").get(key=key)


def run_get(*, run_id: int) -> GenerationRun:
    return GenerationRun.objects.select_related("model_spec", "sub_emotion").get(pk=run_id)


def candidate_search(*, filters: dict | None = None) -> QuerySet[CandidateWithRisk]:
    """``candidate_list`` and its filters, plus ``reviewable``, ``has_risk_flag`` and ``open_risk``.

    The three are True, False or None (filters nothing): ``reviewable`` is the queue's set of statuses; a risk flag is
    open until a senior clinician signs it off.
    """
    filters = filters or {}
    qs = candidate_list(filters=filters)
    if filters.get("reviewable") is not None:
        reviewable = Q(status__in=REVIEWABLE)
        qs = qs.filter(reviewable if filters["reviewable"] else ~reviewable)
    if filters.get("has_risk_flag") is not None:
        qs = qs.filter(flagged=filters["has_risk_flag"])
    if filters.get("open_risk") is not None:
        qs = qs.filter(open_risk=filters["open_risk"])
    return qs


# What a run shows: its stored status, except that a running run whose worker stopped beating shows as stalled.
STALLED = "stalled"
RUN_STATUSES = [
    *GenerationRun.Status.choices[:2],
    (STALLED, gettext_lazy("Stalled")),
    *GenerationRun.Status.choices[2:],
]


def _stale_before(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(seconds=settings.PSYROOM_RUN_STALE_S)


def stalled_q(*, now: datetime | None = None) -> Q:
    """The runs whose worker died: running, with no heartbeat for ``PSYROOM_RUN_STALE_S`` seconds (or none at all).

    The one rule of "stalled", in SQL; ``run_is_stalled`` is the same rule for a run in hand."""
    return Q(status=GenerationRun.Status.RUNNING) & (
        Q(heartbeat_at__lt=_stale_before(now)) | Q(heartbeat_at__isnull=True)
    )


def run_is_stalled(run: GenerationRun, *, now: datetime | None = None) -> bool:
    """``stalled_q`` for one run."""
    if run.status != GenerationRun.Status.RUNNING:
        return False
    return run.heartbeat_at is None or run.heartbeat_at < _stale_before(now)


def run_status(run: GenerationRun, *, now: datetime | None = None) -> str:
    """The status a run shows (the run console, the API): its stored status, or ``stalled``."""
    return STALLED if run_is_stalled(run, now=now) else run.status


def run_status_label(status: str) -> str:
    return str(dict(RUN_STATUSES)[status])


def run_list(*, filters: dict | None = None) -> QuerySet[GenerationRun]:
    """Generation runs, newest first, filtered by ``kind`` and ``status`` (the status shown: ``running`` is a run
    whose worker is alive, ``stalled`` one whose worker stopped)."""
    filters = filters or {}
    qs = GenerationRun.objects.select_related("model_spec", "sub_emotion", "created_by").order_by("-created_at", "-id")
    if filters.get("kind"):
        qs = qs.filter(kind=filters["kind"])
    status = filters.get("status")
    if status == STALLED:
        qs = qs.filter(stalled_q())
    elif status == GenerationRun.Status.RUNNING:
        qs = qs.filter(status=status).exclude(stalled_q())
    elif status:
        qs = qs.filter(status=status)
    return qs


def runs_waiting(*, user: User) -> QuerySet[GenerationRun]:
    """A user's runs that wait for a worker or run: what the limits on a user's runs count (``PSYROOM_RUNS_PER_USER``,
    ``PSYROOM_REGENERATIONS_PER_USER``), under a lock taken by ``services.runs.runs_waiting_lock_count``."""
    return GenerationRun.objects.filter(
        created_by=user, status__in=[GenerationRun.Status.QUEUED, GenerationRun.Status.RUNNING]
    )


def course_sessions(*, course: Candidate) -> QuerySet[Candidate]:
    """A course's sessions in order."""
    return course.children.filter(kind=CandidateKind.SESSION).order_by("sequence")


def question_list(*, difficulty: str | None = None) -> QuerySet[Candidate]:
    """Question candidates, newest last; ``difficulty`` keeps the hard or the easy ones of cross-selection runs."""
    qs = Candidate.objects.filter(kind=CandidateKind.QUESTION)
    if difficulty is not None:
        if difficulty not in ("hard", "easy"):
            raise ValidationError(f"difficulty: must be hard or easy, not {difficulty!r}")
        qs = qs.filter(content__difficulty=difficulty)
    return qs.order_by("id")
