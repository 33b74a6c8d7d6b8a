"""Writes of the releases app: create a release from a spec, build it, verify it.

A build reads the candidates twice, streaming both times (``.iterator``): first their ids, group keys, review
figures and text hashes, to choose what goes in and where (dedup, grouped splits); then their approved content, a
row at a time, into one JSONL file per format and split. The files are written into a temporary folder beside the
release's and renamed into place only when all are complete, so a failed build leaves no partial release.
"""

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
import uuid
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, nullcontext
from datetime import timedelta
from pathlib import Path

import numpy as np
import orjson
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from annotations.models import Review, ReviewPolicy
from annotations.services.audit import audit_record
from generation.models import CandidateKind
from psyroom_admin import roles

from . import agreement, card, courses_plans, formats, pii, selectors, splits
from .ledger import BuildLedger, BuildStopped, release_items_discard
from .models import Release
from .spec import spec_validate

logger = logging.getLogger(__name__)

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
CHUNK = 500
# Candidate columns a build never reads: the content it writes is the approved revision's, not the latest.
UNREAD = ("content", "ai_review", "lineage", "run__parameters", "run__targets", "run__errors", "run__stats")


class ReleaseBuildError(Exception):
    """The build cannot go on (the spec selects nothing once the reviews are counted, say); the release fails."""


class PiiBlocked(ReleaseBuildError):
    """The PII scan found personal data and the spec blocks: the hits (masked) go on the failed release."""

    def __init__(self, hits: list[dict], total: int):
        self.hits = hits
        super().__init__(
            f"the PII scan found {total} hit(s) and the spec blocks (pii.action: block): see the list of hits, "
            "or build with pii.action: redact"
        )


# A blocked build lists at most this many hits on the release (the message gives the total).
MAX_LISTED_HITS = 1_000


def release_dir(release: Release) -> Path:
    return Path(settings.PSYROOM_RELEASES_DIR) / str(release.pk)


@functools.cache
def software_version() -> str:
    """The git commit the code runs from, or "unknown" outside a checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


# --- Create ------------------------------------------------------------------------------------------------------


def release_create(*, name: str, version: str, spec, user, queue: bool = True) -> Release:
    """A queued release of ``spec`` (validated and completed here), and its audit event; its build is queued once
    the row is committed (``queue=False``: the caller builds it, as ``manage.py release build`` does).

    ``user`` is None only for an operator at the shell. Refuses an unknown field, kind, sub-emotion or campaign, a
    spec that selects nothing, and a name and version that exist (a ready release never changes: a new version is
    a new release).
    """
    if user is not None and not roles.user_has_role(user, *roles.RELEASE_MANAGERS):
        raise PermissionDenied("Only curators and administrators create releases.")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValidationError({"name": ["lower-case letters, digits, - and _ (at most 100), starting with one"]})
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        raise ValidationError({"version": ["letters, digits, '.', '-' and '_' (at most 32), e.g. 1.0.0"]})
    spec = spec_validate(spec)
    counts = selectors.release_selection_count(spec=spec)
    if not any(counts.values()):
        raise ValidationError(
            {"spec": [f"selects nothing: no approved {' or '.join(spec['kinds'])} without an open risk flag matches"]}
        )
    try:
        with transaction.atomic():
            release = Release.objects.create(name=name, version=version, spec=spec, created_by=user)
            audit_record(
                actor=user,
                action="release.create",
                data={"release": release.pk, "name": name, "version": version, "selected": counts},
            )
            if queue:
                pk = release.pk
                transaction.on_commit(lambda: _enqueue(pk))
    except IntegrityError:
        raise ValidationError({"version": [f"{name} {version} exists: a new build is a new version"]}) from None
    return release


def _enqueue(release_id: int) -> None:
    from .tasks import release_build_task

    try:
        release_build_task.delay(release_id)
    except Exception as error:
        # The broker is unreachable: the release is not left queued for a task that does not exist.
        logger.exception("release %s could not be queued", release_id)
        Release.objects.filter(pk=release_id, status=Release.Status.QUEUED).update(
            status=Release.Status.FAILED, error=f"the task queue could not be reached: {error}"
        )


# --- Build -------------------------------------------------------------------------------------------------------


def release_build(*, release: Release) -> Release:
    """Build a queued release: select, dedup, split and write its files, then mark it ready with its manifest.

    The gates are checked now, whatever was true when the release was created: approved candidates only, none
    with an open risk flag, each as the revision people approved, never a later edit. A build that fails marks the
    release failed with the error and leaves no folder behind. Only a queued release is built (the claim is a
    conditional update, so two workers never build one release).
    """
    claimed = Release.objects.filter(pk=release.pk, status=Release.Status.QUEUED).update(
        status=Release.Status.BUILDING, started_at=timezone.now()
    )
    if claimed != 1:
        release.refresh_from_db()
        raise ValidationError({"status": [f"release {release.pk} is {release.status}: only a queued one is built"]})
    final = release_dir(release)
    tmp = final.parent / f".tmp-{release.pk}-{uuid.uuid4().hex}"
    ledger = BuildLedger(release.pk)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            raise ReleaseBuildError(f"{final} exists already")
        tmp.mkdir()
        # On PostgreSQL, read in one transaction: outside one, its server-side cursors are WITH HOLD, and each result
        # is computed whole (over a gigabyte for a million dialogues) before its first row comes. Its only writes are
        # the ledger's ReleaseItem rows, which count only once the release is ready; its cancel checks read the
        # release's committed status (READ COMMITTED), so a cancel from another connection is seen at the next batch.
        # Not on SQLite: it has no server-side cursors, and a transaction there (IMMEDIATE) would hold the database's
        # write lock for the whole build, a curator's cancel included.
        stopped = None
        reading = transaction.atomic() if transaction.get_connection().vendor == "postgresql" else nullcontext()
        with reading:
            try:
                manifest = _build_into(tmp, release.spec, ledger=ledger)
                ledger.flush()
            except BuildStopped as error:
                # Committed, not rolled back: a cancel made on this connection (a shell, a test) stands; the
                # ledger's rows are discarded below.
                stopped = error
        if stopped is not None:
            raise stopped
        manifest["release"] = {"name": release.name, "version": release.version}
        manifest["agreement"] = agreement.release_agreement(release_id=release.pk)
        # The card is written from the manifest, then listed in it (its own hash is the one thing it cannot hold).
        readme = card.card_text(manifest).encode("utf-8")
        (tmp / "README.md").write_bytes(readme)
        manifest["files"] = sorted(
            [*manifest["files"], _entry("README.md", tmp / "README.md", rows=0)], key=lambda f: str(f["name"])
        )
        (tmp / "manifest.json").write_text(
            json.dumps(manifest, ensure_ascii=False, sort_keys=True, indent=2) + "\n", encoding="utf-8"
        )
        ledger.check()
        os.replace(tmp, final)
    except BuildStopped:
        # Cancelled (or given up as stale) while building: whoever changed the status recorded why.
        shutil.rmtree(tmp, ignore_errors=True)
        ledger.discard()
        release.refresh_from_db()
        return release
    except Exception as error:
        shutil.rmtree(tmp, ignore_errors=True)
        ledger.discard()
        message = f"{type(error).__name__}: {error}" if not isinstance(error, ReleaseBuildError) else str(error)
        hits = error.hits if isinstance(error, PiiBlocked) else []
        with transaction.atomic():
            failed = Release.objects.filter(pk=release.pk, status=Release.Status.BUILDING).update(
                status=Release.Status.FAILED, error=message, pii_hits=hits
            )
            if failed:
                audit_record(
                    actor=release.created_by,
                    action="release.build_failed",
                    data={"release": release.pk, "error": message},
                )
        release.refresh_from_db()
        return release
    try:
        with transaction.atomic():
            # Conditional: a release cancelled after the last batch's check is not marked ready.
            ready = Release.objects.filter(pk=release.pk, status=Release.Status.BUILDING).update(
                status=Release.Status.READY, files=manifest["files"], manifest=manifest, built_at=timezone.now()
            )
            if not ready:
                raise BuildStopped(release.pk, "no longer building")
            audit_record(
                actor=release.created_by,
                action="release.build",
                data={"release": release.pk, "files": {f["name"]: f["sha256"] for f in manifest["files"]}},
            )
    except BuildStopped:
        shutil.rmtree(final, ignore_errors=True)
        ledger.discard()
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        ledger.discard()
        raise
    release.refresh_from_db()
    return release


def release_cancel(*, release: Release, user) -> Release:
    """Cancel a queued or building release (curators and admins; ``user`` None: an operator at the shell).

    A queued release is never built (its task finds it cancelled); a building one stops at its next batch of
    candidates, removes its temporary folder and its ``ReleaseItem`` rows, and is never marked ready. Anything else
    is refused naming its status. Recorded as ``release.cancel``.
    """
    if user is not None and not roles.user_has_role(user, *roles.RELEASE_MANAGERS):
        raise PermissionDenied("Only curators and administrators cancel releases.")
    with transaction.atomic():
        cancelled = Release.objects.filter(
            pk=release.pk, status__in=(Release.Status.QUEUED, Release.Status.BUILDING)
        ).update(status=Release.Status.CANCELLED, error=gettext("cancelled"))
        release.refresh_from_db()
        if not cancelled:
            raise ValidationError(
                {"status": [gettext("release %(id)s is %(status)s: only a queued or building release can be cancelled")
                            % {"id": release.pk, "status": release.status}]}
            )  # fmt: skip
        audit_record(actor=user, action="release.cancel", data={"release": release.pk})
    return release


def releases_fail_stale() -> list[int]:
    """Mark failed the builds whose worker died (still "building" past the task's hard time limit, which no live
    build outlives) and remove the temporary folders that no build in progress owns. Run before each build."""
    cutoff = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    stale = list(
        Release.objects.filter(status=Release.Status.BUILDING, started_at__lt=cutoff).values_list("pk", flat=True)
    )
    for pk in stale:
        if Release.objects.filter(pk=pk, status=Release.Status.BUILDING).update(
            status=Release.Status.FAILED, error="the build's worker stopped before it finished"
        ):
            release_items_discard(release_id=pk)
            audit_record(actor=None, action="release.build_failed", data={"release": pk, "error": "worker lost"})
    root = Path(settings.PSYROOM_RELEASES_DIR)
    building = {str(pk) for pk in Release.objects.filter(status=Release.Status.BUILDING).values_list("pk", flat=True)}
    if root.is_dir():
        for folder in root.glob(".tmp-*"):
            if folder.name.split("-")[1] not in building:
                shutil.rmtree(folder, ignore_errors=True)
    return stale


CHUNK_ROWS = 2_000  # tuples a server-side cursor fetches at a time
BATCH = 256  # texts whose MinHash signatures are computed together (their arrays take about 10 MB)


def _with_reviews(rows: Iterator[tuple], reviews: Iterator[tuple]) -> Iterator[tuple[tuple, list[tuple]]]:
    """Each row with its candidate's reviews: both streams come by candidate id, the row's first column and the
    review's, so one walk along both pairs them (reviews of candidates no longer selected are passed over)."""
    pending = next(reviews, None)
    for row in rows:
        pk = row[0]
        while pending is not None and pending[0] < pk:
            pending = next(reviews, None)
        mine = []
        while pending is not None and pending[0] == pk:
            mine.append(pending)
            pending = next(reviews, None)
        yield row, mine


def _passes_reviews(reviews: list[tuple], spec: dict) -> str | None:
    """Why the approved revision's reviews (``(candidate, reviewer, decision, scores)``) fall short of the spec, or
    None."""
    approvals = sum(r[2] == Review.Decision.APPROVE for r in reviews)
    if approvals < spec["min_approvals"]:
        return "below_min_approvals"
    for criterion, floor in spec["min_mean"].items():
        scores = [
            r[3][criterion] for r in reviews if isinstance(r[3], dict) and isinstance(r[3].get(criterion), int | float)
        ]
        if not scores or sum(scores) / len(scores) < floor:
            return "below_min_mean"
    return None


def _entry(name: str, path: Path, *, rows: int) -> dict:
    sha256, size = formats.file_sha256(path)
    return {"name": name, "rows": rows, "bytes": size, "sha256": sha256}


class _PiiGate:
    """The PII scan of pass 2: each written text of a candidate scanned, its hits collected (masked, for a blocked
    build's report; without the text, for a redacting build's manifest) and, when the spec redacts, replaced."""

    def __init__(self, spec: dict):
        self.action = spec["pii"]["action"]
        self.detectors = spec["pii"]["detectors"]
        self.hits: list[dict] = []
        self.total = 0

    def clean(self, candidate_id: int, kind: str, content: dict, *, prefix: str = "", only=None) -> dict:
        """``content`` as it may be written (redacted, or as it is when blocking); ``only``: the places to scan
        (all written texts when None)."""
        found, redacted = pii.scan_content(kind, content, self.detectors)
        for where, hit, text in found:
            if only is not None and where not in only:
                continue
            self._record(candidate_id, prefix + where, hit.detector, text)
        return redacted if self.action == "redact" else content

    def _record(self, candidate_id: int, where: str, detector: str, text: str) -> None:
        self.total += 1
        entry = {"candidate": candidate_id, "where": where, "detector": detector}
        if self.action == "block":
            if len(self.hits) < MAX_LISTED_HITS:
                self.hits.append({**entry, "match": pii.mask(text)})
        else:
            self.hits.append(entry)

    def clean_row(self, candidate_id: int, row: dict, *, prefix: str = "") -> dict:
        """A row as it may be written: every text but the metadata scanned (where: the row's path,
        ``messages[0].content``), redacted when the spec says so. For rows that gather several candidates' texts."""
        return {k: v if k == "metadata" else self._clean_value(candidate_id, prefix + k, v) for k, v in row.items()}

    def _clean_value(self, candidate_id: int, where: str, value):
        if isinstance(value, str):
            found = pii.scan(value, self.detectors)
            for hit in found:
                self._record(candidate_id, where, hit.detector, value[hit.start : hit.end])
            return pii.redact(value, found) if found and self.action == "redact" else value
        if isinstance(value, list):
            return [self._clean_value(candidate_id, f"{where}[{i}]", v) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self._clean_value(candidate_id, f"{where}.{k}", v) for k, v in value.items()}
        return value


class _Chosen:
    """What pass 1 keeps of each item, in flat arrays (about 40 bytes an item): its id, its group keys (-1: none),
    its sub-emotion as a code into ``strata.names``; the items of each kind lie in ``ranges[kind]``, by id."""

    def __init__(self) -> None:
        self.ids = array("q")
        self.scenarios = array("q")
        self.profiles = array("q")
        self.parents = array("q")
        self.strata = array("q")
        self.names = splits.Strata()
        self.ranges: dict[str, tuple[int, int]] = {}

    def keep(self, pk: int, scenario: int | None, profile: int | None, parent: int | None, stratum: str) -> None:
        self.ids.append(pk)
        self.scenarios.append(-1 if scenario is None else scenario)
        self.profiles.append(-1 if profile is None else profile)
        self.parents.append(-1 if parent is None else parent)
        self.strata.append(self.names.code(stratum))

    def column(self, name: str) -> np.ndarray:
        return np.frombuffer(getattr(self, name), dtype=np.int64) if len(self.ids) else np.zeros(0, dtype=np.int64)


def _stream(streams: ExitStack, qs, chunk: int) -> Iterator:
    """``qs`` read on a server-side cursor, closed when ``streams`` closes: before the build's transaction ends,
    even when it fails half-way (a cursor closed after its transaction's rollback is an error on PostgreSQL)."""
    rows = qs.iterator(chunk_size=chunk)
    streams.callback(rows.close)
    return rows


def _pass1_rows(
    streams: ExitStack,
    spec: dict,
    kind: str,
    dropped: Counter[str],
    question_targets: dict[int, str],
    ledger: BuildLedger,
) -> Iterator[tuple]:
    """Pass 1's reading of one kind: ``(id, scenario, profile, parent, sub-emotion, text, reviewer ids)`` of each
    candidate whose approved revision's reviews meet the spec (and, for a question, that goes in a format asked
    for), by id; the others are counted in ``dropped``. Each candidate read is a ``ledger.tick`` (the cancel
    check, once a batch)."""
    reviews = selectors.release_review_rows(spec=spec, kind=kind, scores=bool(spec["min_mean"]))
    review_rows = _stream(streams, reviews, CHUNK_ROWS)
    if kind != CandidateKind.QUESTION:
        compared: Callable[[dict], str]
        if kind in courses_plans.FORMAT_OF:
            compared = functools.partial(courses_plans.content_text, kind)
        else:
            compared = formats.dialogue_text
        rows = _stream(streams, selectors.release_group_rows(spec=spec, kind=kind), CHUNK_ROWS)
        for (pk, scenario, profile, parent, sub, text), found in _with_reviews(rows, review_rows):
            ledger.tick()
            reason = _passes_reviews(found, spec)
            if reason:
                dropped[reason] += 1
                continue
            content = orjson.loads(text)
            yield pk, scenario, profile, parent, sub, compared(content), sorted({r[1] for r in found})
        return
    # Questions are few, and their best rationale reads the audit log: they are read as model instances.
    qs = selectors.release_selection(spec=spec, kind=kind).defer(*UNREAD)
    pairs = ((c.pk, c) for c in _stream(streams, qs, CHUNK))
    for (_, candidate), found in _with_reviews(pairs, review_rows):
        ledger.tick()
        reason = _passes_reviews(found, spec)
        if reason:
            dropped[reason] += 1
            continue
        approved = candidate.approved_revision
        assert approved is not None  # candidate_list_exportable keeps only candidates with one
        content = approved.content
        target = formats.question_target(content)
        if target is None or target not in spec["formats"]:
            dropped["question_not_in_formats"] += 1
            continue
        if target == "reasoning-sft":
            candidate.content = content
            if formats.best_rationale(candidate) is None:
                dropped["question_no_correct_rationale"] += 1
                continue
        question_targets[candidate.pk] = target
        sub = candidate.sub_emotion.key if candidate.sub_emotion else None
        yield (candidate.pk, candidate.scenario_id, candidate.profile_id, candidate.parent_id, sub,
               formats.question_text(content), sorted({r[1] for r in found}))  # fmt: skip


def _choose(
    streams: ExitStack,
    spec: dict,
    dropped: Counter[str],
    duplicates: list[dict],
    reviewers: set[int],
    question_targets: dict[int, str],
    ledger: BuildLedger,
) -> _Chosen:
    """Pass 1: what goes in, after the review thresholds and exact and near dedup, with its group keys."""
    # Imported here: datasketch brings scipy (about 40 MB), which the web processes never need.
    from . import dedup

    chosen = _Chosen()
    # The signatures of a batch are computed in a second thread while this one reads and checks the next batch
    # (numpy lets go of the GIL in its loops); the batches are offered in order, so the decisions are the same.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="release-minhash")
    try:
        for kind in spec["kinds"]:
            start = len(chosen.ids)
            expected = selectors.release_selection(spec=spec, kind=kind).count()  # sizes the dedup tables
            exact = dedup.ExactDuplicates(expected) if spec["dedup"]["exact"] else None
            near = dedup.NearDuplicates(spec["dedup"]["near"], expected) if spec["dedup"]["near"] is not None else None
            pending: deque[tuple[list[tuple], Future | None]] = deque()

            def settle(batch: list[tuple], signed: Future | None, near=near) -> None:
                found = signed.result() if signed is not None else None
                for index, (pk, scenario, profile, parent, sub, _, reviewer_ids) in enumerate(batch):
                    if near is not None and found is not None:
                        of = near.offer_signature(pk, found[index])
                        if of is not None:
                            dropped["near_duplicate"] += 1
                            duplicates.append({"id": pk, "of": of, "why": "near"})
                            continue
                    reviewers.update(reviewer_ids)
                    chosen.keep(pk, scenario, profile, parent, sub or "none")

            def send(batch: list[tuple], near=near, pending=pending) -> None:
                texts = [entry[5] for entry in batch]
                pending.append((batch, pool.submit(dedup.signatures, texts) if near is not None else None))
                while len(pending) > 2:
                    settle(*pending.popleft())

            batch: list[tuple] = []
            try:
                for pk, scenario, profile, parent, sub, text, reviewer_ids in _pass1_rows(
                    streams, spec, kind, dropped, question_targets, ledger
                ):
                    # Normalized once when both dedups read it; exact dedup alone hashes the text as it is.
                    normalized = formats.normalize(text) if near is not None else text
                    if exact is not None:
                        digest = formats.normalized_hash(normalized) if near is not None else formats.text_hash(text)
                        of = exact.offer(pk, digest)
                        if of is not None:
                            dropped["exact_duplicate"] += 1
                            duplicates.append({"id": pk, "of": of, "why": "exact"})
                            continue
                    batch.append((pk, scenario, profile, parent, sub, normalized, reviewer_ids))
                    if len(batch) >= BATCH:
                        send(batch)
                        batch = []
                send(batch)
                while pending:
                    settle(*pending.popleft())
            finally:
                if near is not None:
                    near.close()
                for _, signed in pending:
                    if signed is not None:
                        signed.cancel()
            chosen.ranges[kind] = (start, len(chosen.ids))
    finally:
        pool.shutdown(cancel_futures=True)
    return chosen


class _Candidate:
    """What the row builders read of a candidate (``formats.sft_row``, ``dpo_rows``), made from a pass-2 tuple."""

    __slots__ = ("content", "language", "pk", "source", "sub_emotion")

    def __init__(self, pk: int, content: dict, language: str, source, sub_emotion):
        self.pk, self.content, self.language, self.source, self.sub_emotion = pk, content, language, source, sub_emotion


class _Revision:
    __slots__ = ("content", "number")

    def __init__(self, content: dict, number: int):
        self.content, self.number = content, number


class _SubEmotion:
    __slots__ = ("key",)

    def __init__(self, key: str):
        self.key = key


def _build_into(folder: Path, spec: dict, *, ledger: BuildLedger) -> dict:
    """Write the release's files into ``folder``, recording each candidate written in ``ledger``; returns the
    manifest (without the release's name and its campaigns' agreement)."""
    with ExitStack() as streams:
        return _build_streams(streams, folder, spec, ledger)


def _build_streams(streams: ExitStack, folder: Path, spec: dict, ledger: BuildLedger) -> dict:
    dropped: Counter[str] = Counter()
    reviewers: set[int] = set()
    duplicates: list[dict] = []
    question_targets: dict[int, str] = {}

    started = time.perf_counter()
    chosen = _choose(streams, spec, dropped, duplicates, reviewers, question_targets, ledger)
    chose = time.perf_counter()
    if not len(chosen.ids):
        raise ReleaseBuildError(
            "the spec selects nothing: "
            + (", ".join(f"{n} {r}" for r, n in sorted(dropped.items())) or "no approved candidate matches")
        )
    ratios = {name: spec["splits"][name] for name in splits.SPLITS}
    assigned, group_count = splits.assign_splits_arrays(
        ids=chosen.column("ids"),
        scenarios=chosen.column("scenarios"),
        profiles=chosen.column("profiles"),
        parents=chosen.column("parents"),
        strata=chosen.column("strata"),
        names=chosen.names.names,
        ratios=ratios,
        seed=spec["splits"]["seed"],
    )
    split_of = assigned.tolist()
    split_at = time.perf_counter()

    # Pass 2: the rows, a candidate at a time, in id order.
    writers: dict[tuple[str, str], _Writers] = {}
    for fmt in spec["formats"]:
        for split in splits.SPLITS:
            if ratios[split] > 0:
                writers[fmt, split] = _Writers(folder, fmt, split, parquet=spec["parquet"])
    gate = _PiiGate(spec)
    earlier = courses_plans.EarlierSessions()
    languages: set[str] = set()
    counts: dict[str, dict[str, Counter[str]]] = {s: {} for s in splits.SPLITS}
    sources: dict[str, dict] = {}
    models: Counter[str] = Counter()
    sub_emotions: dict[str, _SubEmotion] = {}
    ids, strata, names = chosen.ids, chosen.strata, chosen.names.names
    try:
        for kind in spec["kinds"]:
            position, end = chosen.ranges[kind]
            if kind == CandidateKind.QUESTION or kind in courses_plans.FORMAT_OF:
                # Questions (their best rationale reads the audit log) and sessions and plans (their rows gather
                # their parent's approved revision and, for a session, the earlier sessions' memories) are few: they
                # are read as model instances, with their reviews streamed beside them.
                qs = selectors.release_selection(spec=spec, kind=kind).defer(*UNREAD).select_related("run__model_spec")
                if kind in courses_plans.FORMAT_OF:
                    qs = qs.select_related("parent__approved_revision")
                instances = ((c.pk, c) for c in _stream(streams, qs, CHUNK))
                reviews = _stream(
                    streams, selectors.release_review_rows(spec=spec, kind=kind, scores=False), CHUNK_ROWS
                )
                for (_, candidate), found in _with_reviews(instances, reviews):
                    ledger.tick()
                    while position < end and ids[position] < candidate.pk:
                        position += 1
                    if position >= end or ids[position] != candidate.pk:
                        continue  # approved or unflagged after pass 1 was read: not in this build
                    split = splits.SPLITS[split_of[position]]
                    approved = candidate.approved_revision
                    assert approved is not None
                    if kind not in courses_plans.FORMAT_OF:  # (their rows are scanned whole: _write_course_or_plan)
                        approved.content = gate.clean(candidate.pk, kind, approved.content)
                    candidate.content = approved.content
                    languages.add(candidate.language)
                    counts[split].setdefault(kind, Counter())[names[strata[position]]] += 1
                    _count_source(sources, candidate.source)
                    run = candidate.run
                    if run is not None:
                        models[f"{run.model_spec.name} {run.prompt_version}"] += 1
                    if kind in courses_plans.FORMAT_OF:
                        _write_course_or_plan(candidate, split=split, writers=writers, gate=gate, ledger=ledger,
                                              earlier=earlier, reviewer_ids=sorted({r[1] for r in found}))  # fmt: skip
                        continue
                    target = question_targets[candidate.pk]
                    if target == "grpo":
                        writers["grpo", split].write(formats.grpo_row(candidate))
                    else:
                        best = formats.best_rationale(candidate)
                        assert best is not None  # checked in pass 1
                        writers["reasoning-sft", split].write(formats.reasoning_sft_row(candidate, best))
                    ledger.record(candidate_id=candidate.pk, revision_id=approved.pk, fmt=target, split=split)
                continue
            dpo = "dpo" in spec["formats"]
            rows = _stream(streams, selectors.release_content_rows(spec=spec, kind=kind, model_text=dpo), CHUNK_ROWS)
            reviews = _stream(streams, selectors.release_review_rows(spec=spec, kind=kind, scores=False), CHUNK_ROWS)
            for row, found in _with_reviews(rows, reviews):
                ledger.tick()
                (pk, language, source, sub, run_id, model_spec, prompt_version, number, text, model_text,
                 revision_id) = row  # fmt: skip
                while position < end and ids[position] < pk:
                    position += 1
                if position >= end or ids[position] != pk:
                    continue  # approved or unflagged after pass 1 was read: not in this build
                split = splits.SPLITS[split_of[position]]
                # The approved revision's text as it may be written (redacted when the spec says so).
                approved_raw = orjson.loads(text)
                # Every written text lies verbatim in the content's JSON (an escape only adds a backslash or
                # digits): JSON with nothing a detector starts with holds no hit, and is not scanned field by field.
                content = gate.clean(pk, kind, approved_raw) if pii.maybe(text) else approved_raw
                sub_emotion = None
                if sub is not None:
                    sub_emotion = sub_emotions.get(sub) or sub_emotions.setdefault(sub, _SubEmotion(sub))
                record = _Candidate(pk, content, language, source, sub_emotion)
                revision = _Revision(content, number)
                languages.add(language)
                counts[split].setdefault(kind, Counter())[names[strata[position]]] += 1
                _count_source(sources, source)
                if run_id is not None:
                    models[f"{model_spec} {prompt_version}"] += 1
                reviewer_ids = sorted({r[1] for r in found})
                sft = formats.sft_row(candidate=record, revision=revision, reviewer_ids=reviewer_ids)
                if "sft" in spec["formats"]:
                    writers["sft", split].write(sft)
                    ledger.record(candidate_id=pk, revision_id=revision_id, fmt="sft", split=split)
                if "sharegpt" in spec["formats"]:
                    writers["sharegpt", split].write(formats.sharegpt_row(sft))
                    ledger.record(candidate_id=pk, revision_id=revision_id, fmt="sharegpt", split=split)
                if dpo:
                    original = None
                    if model_text is not None:
                        model_content = orjson.loads(model_text)
                        # The model's text is written only where people changed a counselor turn (a pair's
                        # rejected side): that is what is scanned of it.
                        turns = approved_raw.get("turns", [])
                        changed = {
                            f"turns[{i}].text"
                            for i, t in enumerate(model_content.get("turns", []))
                            if t.get("role") == "counselor"
                            and (i >= len(turns) or t.get("text") != turns[i].get("text"))
                        }
                        model_content = gate.clean(pk, kind, model_content, prefix="revision 0 ", only=changed)
                        original = _Revision(model_content, 0)
                    pairs, pair_drops = formats.dpo_rows(
                        candidate=record,
                        revision=revision,
                        original=original,
                        max_similarity=spec["dpo"]["max_similarity"],
                    )
                    dropped.update(pair_drops)
                    for pair in pairs:
                        writers["dpo", split].write(pair)
                    if pairs:
                        ledger.record(candidate_id=pk, revision_id=revision_id, fmt="dpo", split=split, rows=len(pairs))
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for writer in writers.values():
        writer.close()
    # What each step took, for bench/release.py (not in the manifest: the same data gives the same manifest).
    logger.info(
        "release build timings: pass1=%.2fs splits=%.2fs pass2=%.2fs candidates=%d",
        chose - started,
        split_at - chose,
        time.perf_counter() - split_at,
        len(chosen.ids),
    )
    if gate.action == "block" and gate.total:
        raise PiiBlocked(gate.hits, gate.total)

    files = sorted((entry for w in writers.values() for entry in w.entries()), key=lambda f: str(f["name"]))
    policy = ReviewPolicy.objects.first() or ReviewPolicy()
    return {
        "spec": spec,
        "counts": {
            split: {kind: dict(sorted(c.items())) for kind, c in sorted(by_kind.items())}
            for split, by_kind in counts.items()
        },
        "candidates": len(chosen.ids),
        "groups": group_count,
        "dropped": dict(sorted(dropped.items())),
        "duplicates": sorted(duplicates, key=lambda d: d["id"]),
        "pii": {"action": gate.action, "detectors": gate.detectors, "hits": gate.hits},
        "languages": sorted(languages),
        "policy": str(policy),
        "reviewers": len(reviewers),
        "sources": dict(sorted(sources.items())),
        "models": [
            {"model_spec": k.split(" ", 1)[0], "prompt_version": k.split(" ", 1)[1], "candidates": n}
            for k, n in sorted(models.items())
        ],  # fmt: skip
        "software": software_version(),
        "files": files,
    }


def _write_course_or_plan(
    candidate, *, split: str, writers: dict, gate: _PiiGate, ledger: BuildLedger, earlier, reviewer_ids: list[int]
) -> None:
    """A session's ``courses`` example or a plan's ``plans`` pairs, each row scanned for personal data whole (they
    hold the course's profile and earlier memories, or the source dialogue, beside the candidate's own text)."""
    approved = candidate.approved_revision
    parent = candidate.parent.approved_revision  # the selection keeps only candidates whose parent is exportable
    if candidate.kind == CandidateKind.PLAN:
        rows = courses_plans.plan_rows(
            plan=candidate, revision=approved, dialogue_revision=parent, reviewer_ids=reviewer_ids
        )
        rows = [gate.clean_row(candidate.pk, r, prefix=f"{r['metadata']['section']} row ") for r in rows]
    else:
        row = courses_plans.course_row(
            session=candidate,
            revision=approved,
            course_revision=parent,
            earlier=earlier.of(candidate),
            reviewer_ids=reviewer_ids,
        )
        rows = [gate.clean_row(candidate.pk, row)]
    fmt = courses_plans.FORMAT_OF[candidate.kind]
    for row in rows:
        writers[fmt, split].write(row)
    ledger.record(candidate_id=candidate.pk, revision_id=approved.pk, fmt=fmt, split=split, rows=len(rows))


class _Writers:
    """The files of one format and split: JSONL, and Parquet when the spec asks for it (the same rows)."""

    def __init__(self, folder: Path, fmt: str, split: str, *, parquet: bool):
        self.jsonl = formats.JsonlWriter(folder / fmt / f"{split}.jsonl")
        self.parquet = formats.ParquetWriter(folder / fmt / f"{split}.parquet", fmt) if parquet else None
        self.base = f"{fmt}/{split}"

    def write(self, row: dict) -> None:
        self.jsonl.write(row)
        if self.parquet is not None:
            self.parquet.write(row)

    def close(self) -> None:
        self.jsonl.close()
        if self.parquet is not None:
            self.parquet.close()

    def abort(self) -> None:
        self.jsonl.close()
        if self.parquet is not None:
            self.parquet.abort()

    def entries(self) -> list[dict]:
        out = [{"name": f"{self.base}.jsonl", "rows": self.jsonl.rows, "bytes": self.jsonl.bytes,
                "sha256": self.jsonl.sha256}]  # fmt: skip
        if self.parquet is not None:
            out.append(
                {"name": f"{self.base}.parquet", "rows": self.parquet.rows, "bytes": self.parquet.bytes,
                 "sha256": self.parquet.sha256}
            )  # fmt: skip
        return out


def _count_source(sources: dict[str, dict], source: dict | None) -> None:
    source = source or {}
    name = source.get("dataset") or "generated"
    entry = sources.setdefault(
        name, {"license": source.get("license"), "attribution": source.get("attribution"), "candidates": 0}
    )
    entry["candidates"] += 1


# --- Verify ------------------------------------------------------------------------------------------------------


def release_verify(*, release: Release) -> list[str]:
    """Recompute every file's sha256 and size against the manifest; the problems, each naming its file (empty
    when the release is intact)."""
    if release.status != Release.Status.READY:
        return [f"release {release.pk} is {release.status}, not ready"]
    folder = release_dir(release)
    problems = []
    for entry in release.files:
        path = folder / entry["name"]
        if not path.is_file():
            problems.append(f"{entry['name']}: missing")
            continue
        digest = hashlib.sha256()
        size = 0
        with path.open("rb") as handle:
            for block in iter(functools.partial(handle.read, 1 << 20), b""):
                digest.update(block)
                size += len(block)
        if digest.hexdigest() != entry["sha256"] or size != entry["bytes"]:
            problems.append(f"{entry['name']}: sha256 {digest.hexdigest()} ({size} bytes), expected {entry['sha256']}")
    return problems


def release_file_path(*, release: Release, name: str) -> Path | None:
    """The path of one file of a ready release (``manifest.json`` or a name in its files), or None: a name that
    is not one of them never reaches the file system."""
    if release.status != Release.Status.READY:
        return None
    names = {f["name"] for f in release.files} | {"manifest.json"}
    if name not in names:
        return None
    return release_dir(release) / name


def release_download_all(*, release: Release, user) -> list[tuple[str, int, Path]] | None:
    """Every file of a ready release and its manifest, as (name, size, path) to send as one zip, recorded in the
    audit log once; None when the release is not ready or a file is missing."""
    if release.status != Release.Status.READY:
        return None
    folder = release_dir(release)
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return None
    files = [(e["name"], e["bytes"], folder / e["name"]) for e in release.files]
    if not all(path.is_file() for _, _, path in files):
        return None
    audit_record(actor=user, action="release.download", data={"release": release.pk, "file": "*.zip"})
    return [("manifest.json", manifest.stat().st_size, manifest), *files]


def release_download(*, release: Release, name: str, user) -> Path | None:
    """The path to send for a download, recorded in the audit log; None when there is no such file."""
    path = release_file_path(release=release, name=name)
    if path is None or not path.is_file():
        return None
    audit_record(actor=user, action="release.download", data={"release": release.pk, "file": name})
    return path
