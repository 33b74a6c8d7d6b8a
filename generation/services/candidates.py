"""Candidates: their content, revisions and risk flags. Every change of a candidate goes through here."""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connections, router, transaction
from django.dispatch import Signal
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import selectors
from ..models import Candidate, CandidateKind, GenerationRun, Revision, RiskFlag, Scenario, SubEmotion
from ..risk import screen
from ..schemas import validate_content


class StaleVersion(Exception):
    """A save based on a version of a candidate that someone else has changed since."""

    def __init__(self, candidate: Candidate):
        super().__init__(f"{candidate} changed since (now version {candidate.version})")
        self.candidate = candidate


def content_json(content: dict) -> str:
    """The canonical JSON text of a content (sorted keys, no spaces, not ASCII-escaped): what ``content_hash``
    hashes, and what an import stores, so that each imported content is serialised once."""
    return json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def content_hash(content: dict) -> str:
    return text_hash(content_json(content))


def text_hash(canonical: str) -> str:
    """``content_hash`` of the content whose ``content_json`` is ``canonical``."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def content_screen(kind: str, content: dict) -> list[dict]:
    """What the automatic screen finds in a content of any kind: ``[{"code", "detail"}]``.

    A plan also carries its own judgement: a moderate or high risk level is a flag for a senior clinician.
    """
    flags = screen(kind, content)
    if kind == CandidateKind.PLAN and content.get("risk_assessment", {}).get("level") in {"moderate", "high"}:
        level = content["risk_assessment"]["level"]
        flags.append({"code": "risk_assessment", "detail": f"the plan assesses risk as {level}"})
    return flags


def candidate_build(
    *,
    kind: str,
    content: dict,
    language: str = "en",
    sub_emotion: SubEmotion | None = None,
    scenario: Scenario | None = None,
    run: GenerationRun | None = None,
    run_index: int | None = None,
    lineage: dict | None = None,
    source: dict | None = None,
    source_hash: str | None = None,
    extra_flags: list[dict] | None = None,
) -> Candidate:
    """An unsaved, validated candidate (for bulk creation); ``candidates_save_new`` saves it with its revision 0 and
    the risk flags the screen (and ``extra_flags``, e.g. the risk agent's) found in it."""
    validate_content(kind, content)
    candidate = Candidate(
        kind=kind,
        content=content,
        language=language,
        sub_emotion=sub_emotion,
        scenario=scenario,
        run=run,
        run_index=run_index,
        lineage=lineage or {},
        source=source or {},
        source_hash=source_hash,
    )
    candidate.new_flags = [
        *_screen_flags(kind, content),
        *({"source": RiskFlag.Source.AGENT, **f} for f in extra_flags or ()),
    ]
    return candidate


def _screen_flags(kind: str, content: dict) -> list[dict]:
    """The flags a new candidate's revision 0 opens from the automatic screen."""
    return [{**f, "source": RiskFlag.Source.SCREEN} for f in content_screen(kind, content)]


# Sent with the list of candidates ``candidates_save_new`` has just saved (inside its transaction).
candidates_created = Signal()


def _inherited_flags(candidates: list[Candidate]) -> dict[int, list[dict]]:
    """A plan or session derived from an item with an open flag starts with an open flag of its own."""
    parents = {c.parent_id for c in candidates if c.parent_id}
    flagged = set(
        RiskFlag.objects.filter(candidate_id__in=parents, signed_off_at__isnull=True).values_list(
            "candidate_id", flat=True
        )
    )
    return {
        c.pk: [{"code": "inherited", "detail": f"derived from #{c.parent_id}, which has an open risk flag",
                "source": RiskFlag.Source.INHERITED}]
        for c in candidates
        if c.parent_id in flagged
    }  # fmt: skip


# From this many rows, PostgreSQL gets them by COPY (see ``_insert``).
COPY_FROM_ROWS = 100


def _insert(objs: list) -> list:
    """``bulk_create`` for new rows of one model, with their primary keys set; on PostgreSQL, many rows go by COPY.

    Django's bulk insert on PostgreSQL binds every column as an array that psycopg quotes in Python, which made
    inserting slower than everything else an import does; COPY takes the same values (each field's own
    ``pre_save`` and ``get_db_prep_save``, as Django's insert does) with the keys drawn from the table's sequence.
    """
    if not objs:
        return objs
    model = type(objs[0])
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql" or len(objs) < COPY_FROM_ROWS:
        return model.objects.bulk_create(objs, batch_size=500)
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(column) for column in [meta.pk.column, *(f.column for f in fields)])
    for obj in objs:
        obj._prepare_related_fields_for_save(operation_name="bulk_create")
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, len(objs)],
        )
        keys = [row[0] for row in cursor.fetchall()]
        with cursor.cursor.copy(f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN") as copy:
            for obj, key in zip(objs, keys, strict=True):
                obj.pk = key
                copy.write_row([key, *(f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields)])
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias
    return objs


def candidates_save_new(*, candidates: list[Candidate]) -> list[Candidate]:
    """Save new candidates, their revision 0 and their risk flags together. Call inside a transaction."""
    saved = _insert(candidates)
    revisions = _insert(
        [Revision(candidate=c, number=0, content=c.content, category=Revision.Category.ORIGINAL) for c in saved]
    )
    inherited = _inherited_flags(saved)
    _insert(
        [
            RiskFlag(candidate=c, revision=r, **flag)
            for c, r in zip(saved, revisions, strict=True)
            for flag in [*getattr(c, "new_flags", ()), *inherited.get(c.pk, ())]
        ]
    )
    # A course's sessions (``new_children``, parent set) are saved with it, in the same transaction.
    children = [child for c in saved for child in getattr(c, "new_children", ())]
    if children:
        candidates_save_new(candidates=children)
    # bulk_create sends no post_save: other apps (annotations) learn of new candidates through this signal.
    candidates_created.send(sender=Candidate, candidates=saved)
    return saved


@dataclass(frozen=True)
class NewRow:
    """A new candidate as an import has it: validated content, its ``content_json`` text and ``content_hash``, and
    the fields an imported candidate sets. ``candidates_save_rows`` saves it."""

    content: dict
    text: str
    source_hash: str
    language: str
    sub_emotion_id: int | None
    source: dict


def candidates_screen(kind: str, contents: list[dict]) -> list[list[dict]]:
    """The flags the automatic screen opens on a new candidate of each content (as ``candidate_build`` has them).

    Plain Python without the database, so that an import can run it in a process of its own."""
    return [_screen_flags(kind, content) for content in contents]


def candidates_save_rows(
    *, kind: str, rows: list[NewRow], run_screen: Callable[[Callable, list], list[list[dict]]] | None = None
) -> int:
    """Save the rows whose ``source_hash`` is new for ``kind`` (in the database and among the rows), each with its
    revision 0 and the risk flags the screen finds in it, in one transaction; returns how many were saved.

    What is saved is exactly what ``candidate_create(kind=, content=, language=, sub_emotion=, source=,
    source_hash=)`` saves (a test compares them); only the new rows are screened, so a re-import screens nothing.
    The content must have passed ``validate_content``. Called a batch at a time within an outer transaction, the
    batches saved before count as in the database. ``run_screen(candidates_screen, [kind, contents])`` runs the screen
    elsewhere (``Pool.apply``: an import's screening process); by default it runs here.

    On PostgreSQL the rows go by COPY as text built here, without model instances: the content's canonical text,
    hashed already, is what is stored, and the keys are drawn from the tables' sequences. ``candidates_created`` is
    not sent for them (it carries model instances; what listens to it acts on generated candidates with a run and a
    parent, which an import never has). Elsewhere they are built and saved as ``candidates_save_new`` does.
    """
    seen = selectors.source_hashes_existing(kind=kind, hashes=list(dict.fromkeys(r.source_hash for r in rows)))
    new = []
    for row in rows:
        if row.source_hash not in seen:
            seen.add(row.source_hash)
            new.append(row)
    if not new:
        return 0
    connection = connections[router.db_for_write(Candidate)]
    with transaction.atomic(using=connection.alias):
        if connection.vendor == "postgresql":
            contents = [row.content for row in new]
            flags = run_screen(candidates_screen, [kind, contents]) if run_screen else candidates_screen(kind, contents)
            _copy_rows(connection, kind, new, flags)
        else:
            candidates = []
            for row in new:
                candidate = candidate_build(
                    kind=kind, content=row.content, language=row.language, source=row.source,
                    source_hash=row.source_hash,
                )  # fmt: skip
                candidate.sub_emotion_id = row.sub_emotion_id
                candidates.append(candidate)
            candidates_save_new(candidates=candidates)
    return len(new)


def _copy_rows(connection, kind: str, rows: list[NewRow], screened: list[list[dict]]) -> None:
    """COPY the rows' candidates, revisions 0 and screen flags (see ``candidates_save_rows``)."""
    quote = connection.ops.quote_name
    candidates, revisions, flags = (quote(m._meta.db_table) for m in (Candidate, Revision, RiskFlag))
    now = timezone.now().isoformat()
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')), nextval(pg_get_serial_sequence(%s, 'id')) "
            "FROM generate_series(1, %s)",
            [Candidate._meta.db_table, Revision._meta.db_table, len(rows)],
        )
        keys = cursor.fetchall()
        flagged = [(key, flag) for key, flags in zip(keys, screened, strict=True) for flag in flags]
        copy = cursor.cursor.copy
        with copy(
            f"COPY {candidates} (id, kind, status, content, language, version, ai_review, lineage, source, "
            "source_hash, created_at, updated_at, sub_emotion_id) FROM STDIN"
        ) as out:
            head = f"\t{_copy_text(kind)}\t{Candidate.Status.GENERATED.value}\t"
            tail = f"\t{now}\t{now}\t"
            out.write(
                "".join(
                    f"{key}{head}{_copy_json(row.text)}\t{_copy_text(row.language)}\t1\t{{}}\t{{}}\t"
                    f"{_copy_json(json.dumps(row.source, ensure_ascii=False))}\t{row.source_hash}{tail}"
                    f"{_NULL if row.sub_emotion_id is None else int(row.sub_emotion_id)}\n"
                    for (key, _), row in zip(keys, rows, strict=True)
                )
            )
        with copy(
            f"COPY {revisions} (id, number, content, category, reason, created_at, candidate_id) FROM STDIN"
        ) as out:
            middle = f"\t{Revision.Category.ORIGINAL.value}\t\t{now}\t"
            out.write(
                "".join(
                    f"{revision}\t0\t{_copy_json(row.text)}{middle}{key}\n"
                    for (key, revision), row in zip(keys, rows, strict=True)
                )
            )
        if flagged:
            with copy(
                f"COPY {flags} (candidate_id, revision_id, code, detail, source, note, created_at) FROM STDIN"
            ) as out:
                out.write(
                    "".join(
                        f"{key}\t{revision}\t{_copy_text(flag['code'])}\t{_copy_text(flag['detail'])}\t"
                        f"{_copy_text(flag['source'])}\t\t{now}\n"
                        for (key, revision), flag in flagged
                    )
                )


_NULL = "\\N"


def _copy_text(value: str) -> str:
    """``value`` as a field of COPY's text format."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _copy_json(text: str) -> str:
    """JSON text from ``json.dumps`` as a field of COPY's text format: JSON escapes every control character inside
    its strings and puts none between tokens, so only the backslashes of its escapes need doubling."""
    return text.replace("\\", "\\\\")


def candidate_create(**fields: Any) -> Candidate:
    """Create one candidate with its revision 0 and risk flags (see ``candidate_build`` for the fields)."""
    parent = fields.pop("parent", None)
    candidate = candidate_build(**fields)
    candidate.parent = parent
    with transaction.atomic():
        candidates_save_new(candidates=[candidate])
    return candidate


def candidate_revise(
    *, candidate: Candidate, author: User | None, content: dict, base_version: int, category: str, reason: str = ""
) -> Revision:
    """Save a new revision of a candidate's content, based on ``base_version``.

    Every edit is screened: what the screen finds in the new text that it did not find in the old opens a new flag,
    whatever was signed off before. An edit of an approved candidate sends it back to review (``in_review``): its
    approval covered the revision people read, not this one, and exports keep taking ``approved_revision`` only
    while the candidate is approved.

    Raises ``StaleVersion`` when the candidate changed since that version (nothing is written), and
    ``ContentError`` when the new content does not fit the kind's schema.
    """
    if category not in Revision.Category.values or category == Revision.Category.ORIGINAL:
        raise ValidationError({"category": f"must be one of wording, clinical, safety, not {category!r}"})
    validate_content(candidate.kind, content)
    with transaction.atomic():
        locked = Candidate.objects.select_for_update().filter(pk=candidate.pk).first()
        if locked is None or locked.version != base_version:
            candidate.refresh_from_db()
            raise StaleVersion(candidate)
        before = {f["detail"] for f in content_screen(locked.kind, locked.content)}
        last = locked.revisions.order_by("-number").values_list("number", flat=True).first()
        locked.content = content
        locked.version = base_version + 1
        fields = ["content", "version", "updated_at"]
        if locked.status == Candidate.Status.APPROVED:
            locked.status = Candidate.Status.IN_REVIEW
            fields.append("status")
        locked.save(update_fields=fields)
        revision = Revision.objects.create(
            candidate=locked,
            number=(last or 0) + 1,
            content=content,
            author=author,
            category=category,
            reason=reason,
            base_number=last,
        )
        RiskFlag.objects.bulk_create(
            [
                RiskFlag(candidate=locked, revision=revision, source=RiskFlag.Source.SCREEN, raised_by=author, **f)
                for f in content_screen(locked.kind, content)
                if f["detail"] not in before
            ]
        )
    candidate.refresh_from_db()
    return revision


def candidate_set_status(*, candidate: Candidate, status: str, revision: Revision | None = None) -> Candidate:
    """Move a candidate to a new status.

    An approval names the ``revision`` people judged: it must be the latest (else ``StaleVersion``), and no risk flag
    may be open. An approved scenario candidate becomes a ``Scenario`` that generation may use.
    """
    if status not in Candidate.Status.values:
        raise ValidationError({"status": f"unknown status {status!r}"})
    with transaction.atomic():
        locked = Candidate.objects.select_for_update().get(pk=candidate.pk)
        fields = ["status", "updated_at"]
        approved: Revision | None = None
        if status == Candidate.Status.APPROVED:
            latest = locked.revisions.order_by("-number").first()
            if revision is None or latest is None or revision.pk != latest.pk:
                raise StaleVersion(locked)
            if locked.open_risk_flags().exists():
                raise ValidationError(
                    {
                        "decision": _(
                            "This item is flagged for risk: a senior clinician must sign it off before approval."
                        )
                    }
                )
            locked.approved_revision = approved = latest
            fields.append("approved_revision")
        locked.status = status
        locked.save(update_fields=fields)
        if approved is not None and locked.kind == CandidateKind.SCENARIO:
            content = approved.content
            Scenario.objects.get_or_create(
                sub_emotion=locked.sub_emotion,
                title=content["title"],
                defaults={
                    "description": content["description"],
                    "source": Scenario.Source.GENERATED,
                    "language": locked.language,
                },
            )
    candidate.refresh_from_db()
    return candidate


def candidate_flag_risk(
    *, candidate: Candidate, flags: list[dict], raised_by: User | None = None, review_id: int | None = None
) -> list[RiskFlag]:
    """Open risk flags (``[{"code", "detail"}]``) raised by a reviewer on the candidate's latest revision."""
    revision = candidate.revisions.order_by("-number").first()
    return RiskFlag.objects.bulk_create(
        [
            RiskFlag(
                candidate=candidate,
                revision=revision,
                source=RiskFlag.Source.REVIEW,
                raised_by=raised_by,
                review_id=review_id,
                code=f["code"],
                detail=f.get("detail", ""),
            )
            for f in flags
        ]
    )


def candidate_sign_off_risk(
    *, candidate: Candidate, clinician: User, flag_ids: list[int], base_version: int, note: str
) -> list[RiskFlag]:
    """Sign off the open flags ``flag_ids`` that a senior clinician read on version ``base_version``.

    A sign-off covers only what its signer saw: a stale version is ``StaleVersion`` (409); a flag that is not this
    candidate's, or no longer open, is refused. Flags not named stay open. The caller checks the clinician's role.
    """
    if not flag_ids:
        raise ValidationError({"flags": _("name the risk flags you sign off (their ids, as shown)")})
    with transaction.atomic():
        locked = Candidate.objects.select_for_update().get(pk=candidate.pk)
        if locked.version != base_version:
            raise StaleVersion(locked)
        flags = list(locked.risk_flags_in_scope().select_for_update().filter(pk__in=flag_ids))
        unknown = sorted(set(flag_ids) - {f.pk for f in flags})
        if unknown:
            raise ValidationError(
                {
                    "flags": _("%(item)s has no risk flag %(ids)s")
                    % {"item": locked, "ids": ", ".join(map(str, unknown))}
                }
            )
        closed = [f.pk for f in flags if not f.is_open]
        if closed:
            raise ValidationError(
                {"flags": _("flag(s) %(ids)s are already signed off") % {"ids": ", ".join(map(str, closed))}}
            )
        now = timezone.now()
        RiskFlag.objects.filter(pk__in=flag_ids).update(signed_off_by=clinician, signed_off_at=now, note=note)
        locked.save(update_fields=["updated_at"])
    return list(RiskFlag.objects.filter(pk__in=flag_ids))
