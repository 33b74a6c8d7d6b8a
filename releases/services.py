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
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Prefetch
from django.utils import timezone
from django.utils.translation import gettext

from annotations.models import Review, ReviewPolicy
from annotations.services.audit import audit_record
from generation.models import CandidateKind, Revision
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
        manifest = _build_into(tmp, release.spec, ledger=ledger)
        ledger.flush()
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


def _reviews_prefetch() -> Prefetch:
    fields = ("id", "candidate_id", "revision_id", "reviewer_id", "scores", "decision")
    # A review of a reference item (gold) tests its reviewer; it approved nothing, so it counts toward no gate.
    return Prefetch("reviews", queryset=Review.objects.filter(gold=False).only(*fields))


def _approving(candidate) -> tuple[list[Review], list[int]]:
    """The reviews of the approved revision, and the ids of their reviewers."""
    reviews = [r for r in candidate.reviews.all() if r.revision_id == candidate.approved_revision_id]
    return reviews, sorted({r.reviewer_id for r in reviews})


def _passes_reviews(reviews: list[Review], spec: dict) -> str | None:
    """Why the approved revision's reviews fall short of the spec, or None."""
    approvals = sum(r.decision == Review.Decision.APPROVE for r in reviews)
    if approvals < spec["min_approvals"]:
        return "below_min_approvals"
    for criterion, floor in spec["min_mean"].items():
        scores = [r.scores[criterion] for r in reviews if isinstance(r.scores.get(criterion), int | float)]
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


def _build_into(folder: Path, spec: dict, *, ledger: BuildLedger) -> dict:
    """Write the release's files into ``folder``, recording each candidate written in ``ledger``; returns the
    manifest (without the release's name and its campaigns' agreement)."""
    dropped: Counter[str] = Counter()
    reviewers: set[int] = set()
    items: list[splits.Item] = []
    seen_hashes: dict[str, dict[bytes, int]] = {}
    near: dict = {}  # kind -> dedup.NearDuplicates
    duplicates: list[dict] = []
    question_targets: dict[int, str] = {}

    # Pass 1: what goes in, and in which group.
    for kind in spec["kinds"]:
        qs = selectors.release_selection(spec=spec, kind=kind).defer(*UNREAD).prefetch_related(_reviews_prefetch())
        for candidate in qs.iterator(chunk_size=CHUNK):
            ledger.tick()
            approved = candidate.approved_revision
            assert approved is not None  # candidate_list_exportable keeps only candidates with one
            reviews, reviewer_ids = _approving(candidate)
            reason = _passes_reviews(reviews, spec)
            if reason:
                dropped[reason] += 1
                continue
            content = approved.content
            if kind == CandidateKind.QUESTION:
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
                text = formats.question_text(content)
            elif kind in courses_plans.FORMAT_OF:
                text = courses_plans.content_text(kind, content)
            else:
                text = formats.dialogue_text(content)
            if spec["dedup"]["exact"]:
                digest = formats.text_hash(text)
                seen = seen_hashes.setdefault(kind, {})
                if digest in seen:
                    dropped["exact_duplicate"] += 1
                    duplicates.append({"id": candidate.pk, "of": seen[digest], "why": "exact"})
                    continue
                seen[digest] = candidate.pk
            if spec["dedup"]["near"] is not None:
                if kind not in near:  # (one LSH a kind; building one chooses its bands, which takes a while)
                    # Imported here: datasketch brings scipy (about 40 MB), which the web processes never need.
                    from . import dedup

                    near[kind] = dedup.NearDuplicates(spec["dedup"]["near"])
                finder = near[kind]
                of = finder.offer(candidate.pk, text)
                if of is not None:
                    dropped["near_duplicate"] += 1
                    duplicates.append({"id": candidate.pk, "of": of, "why": "near"})
                    continue
            reviewers.update(reviewer_ids)
            items.append(
                splits.Item(
                    id=candidate.pk,
                    keys=splits.item_keys(
                        id=candidate.pk,
                        scenario_id=candidate.scenario_id,
                        profile_id=candidate.profile_id,
                        parent_id=candidate.parent_id,
                    ),
                    stratum=candidate.sub_emotion.key if candidate.sub_emotion else "none",
                )
            )
    del seen_hashes, near
    if not items:
        raise ReleaseBuildError(
            "the spec selects nothing: "
            + (", ".join(f"{n} {r}" for r, n in sorted(dropped.items())) or "no approved candidate matches")
        )
    ratios = {name: spec["splits"][name] for name in splits.SPLITS}
    assigned, group_count = splits.assign_splits(items, ratios=ratios, seed=spec["splits"]["seed"])
    strata = {item.id: item.stratum for item in items}
    del items

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
    try:
        for kind in spec["kinds"]:
            qs = selectors.release_selection(spec=spec, kind=kind).defer(*UNREAD).select_related("run__model_spec")
            qs = qs.prefetch_related(_reviews_prefetch())
            if kind in courses_plans.FORMAT_OF:
                qs = qs.select_related("parent__approved_revision")
            if "dpo" in spec["formats"] and kind == CandidateKind.DIALOGUE:
                # Revision 0, the model's text, for the rejected side of a preference pair.
                first = Revision.objects.filter(number=0, candidate__approved_revision__number__gt=0)
                qs = qs.prefetch_related(Prefetch("revisions", queryset=first, to_attr="model_revisions"))
            for candidate in qs.iterator(chunk_size=CHUNK):
                ledger.tick()
                where = assigned.get(candidate.pk)
                if where is None:  # approved or unflagged after pass 1 was read: not in this build
                    continue
                split = where
                approved = candidate.approved_revision
                assert approved is not None
                # The approved revision's text as it may be written (redacted when the spec says so); the instances
                # are only read from here on, never saved.
                approved_raw = approved.content
                if kind not in courses_plans.FORMAT_OF:  # (their rows are scanned whole: _write_course_or_plan)
                    approved.content = gate.clean(candidate.pk, kind, approved.content)
                candidate.content = approved.content
                languages.add(candidate.language)
                counts[split].setdefault(kind, Counter())[strata[candidate.pk]] += 1
                _count_source(sources, candidate)
                run = candidate.run
                if run is not None:
                    models[f"{run.model_spec.name} {run.prompt_version}"] += 1
                if kind == CandidateKind.QUESTION:
                    target = question_targets[candidate.pk]
                    if target == "grpo":
                        writers["grpo", split].write(formats.grpo_row(candidate))
                    else:
                        best = formats.best_rationale(candidate)
                        assert best is not None  # checked in pass 1
                        writers["reasoning-sft", split].write(formats.reasoning_sft_row(candidate, best))
                    ledger.record(candidate_id=candidate.pk, revision_id=approved.pk, fmt=target, split=split)
                    continue
                if kind in courses_plans.FORMAT_OF:
                    _write_course_or_plan(candidate, split=split, writers=writers, gate=gate, ledger=ledger,
                                          earlier=earlier)  # fmt: skip
                    continue
                _, reviewer_ids = _approving(candidate)
                sft = formats.sft_row(candidate=candidate, revision=approved, reviewer_ids=reviewer_ids)
                if "sft" in spec["formats"]:
                    writers["sft", split].write(sft)
                    ledger.record(candidate_id=candidate.pk, revision_id=approved.pk, fmt="sft", split=split)
                if "sharegpt" in spec["formats"]:
                    writers["sharegpt", split].write(formats.sharegpt_row(sft))
                    ledger.record(candidate_id=candidate.pk, revision_id=approved.pk, fmt="sharegpt", split=split)
                if "dpo" in spec["formats"]:
                    models_text = getattr(candidate, "model_revisions", None)
                    original = models_text[0] if models_text else None
                    if original is not None:
                        # The model's text is written only where people changed a counselor turn (a pair's
                        # rejected side): that is what is scanned of it.
                        turns = approved_raw.get("turns", [])
                        changed = {
                            f"turns[{i}].text"
                            for i, t in enumerate(original.content.get("turns", []))
                            if t.get("role") == "counselor"
                            and (i >= len(turns) or t.get("text") != turns[i].get("text"))
                        }
                        original.content = gate.clean(
                            candidate.pk, kind, original.content, prefix="revision 0 ", only=changed
                        )
                    rows, pair_drops = formats.dpo_rows(
                        candidate=candidate,
                        revision=approved,
                        original=original,
                        max_similarity=spec["dpo"]["max_similarity"],
                    )
                    dropped.update(pair_drops)
                    for row in rows:
                        writers["dpo", split].write(row)
                    if rows:
                        ledger.record(
                            candidate_id=candidate.pk, revision_id=approved.pk, fmt="dpo", split=split, rows=len(rows)
                        )
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for writer in writers.values():
        writer.close()
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
        "candidates": len(assigned),
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
    candidate, *, split: str, writers: dict, gate: _PiiGate, ledger: BuildLedger, earlier
) -> None:
    """A session's ``courses`` example or a plan's ``plans`` pairs, each row scanned for personal data whole (they
    hold the course's profile and earlier memories, or the source dialogue, beside the candidate's own text)."""
    approved = candidate.approved_revision
    parent = candidate.parent.approved_revision  # the selection keeps only candidates whose parent is exportable
    _, reviewer_ids = _approving(candidate)
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


def _count_source(sources: dict[str, dict], candidate) -> None:
    source = candidate.source or {}
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
