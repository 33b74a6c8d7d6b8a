"""Reads of the releases app: who sees which release, and what a spec selects."""

from django.db.models import Case, Exists, F, OuterRef, QuerySet, Subquery, TextField, Value, When
from django.db.models.functions import Cast

from annotations.models import CampaignItem, Review
from generation import selectors as gen_selectors
from generation.models import Candidate, CandidateKind, Revision
from psyroom_admin import roles

from .agreement import campaigns_agreeing
from .models import Release, ReleaseItem


def release_list_for(*, user) -> QuerySet[Release]:
    """The releases ``user`` may see: all of them for curators and admins, none for anyone else (a release they
    may not see is then a 404, not a 403 that says it exists)."""
    if not roles.user_has_role(user, *roles.RELEASE_MANAGERS):
        return Release.objects.none()
    return Release.objects.select_related("created_by").order_by("-id")


def release_selection(*, spec: dict, kind: str) -> QuerySet[Candidate]:
    """The candidates of ``kind`` that ``spec`` selects, by id: only approved ones with no open risk flag
    (``candidate_list_exportable``, checked when this runs, so at build time), with the spec's database filters.
    ``min_approvals`` and ``min_mean`` are applied by the build, on the reviews of the approved revision."""
    qs = gen_selectors.candidate_list_exportable(kind=kind)
    if kind == CandidateKind.SESSION:
        # A session ships with its course's profile and the earlier sessions' memories: the course must be
        # exportable (its open-risk check covers its sessions' flags) and every earlier session approved.
        courses = gen_selectors.candidate_list_exportable(kind=CandidateKind.COURSE).values("pk")
        not_approved = Candidate.objects.filter(
            parent=OuterRef("parent"), kind=CandidateKind.SESSION, sequence__lt=OuterRef("sequence")
        ).exclude(status=Candidate.Status.APPROVED, approved_revision__isnull=False)
        qs = qs.filter(parent__in=courses).filter(~Exists(not_approved))
    elif kind == CandidateKind.PLAN:
        # A plan ships with the dialogue it was written for, which must be exportable itself.
        qs = qs.filter(parent__in=gen_selectors.candidate_list_exportable(kind=CandidateKind.DIALOGUE).values("pk"))
    if spec["campaigns"]:
        qs = qs.filter(pk__in=CampaignItem.objects.filter(campaign_id__in=spec["campaigns"]).values("candidate_id"))
    if spec["sub_emotions"]:
        qs = qs.filter(sub_emotion__key__in=spec["sub_emotions"])
    if spec["categories"]:
        qs = qs.filter(sub_emotion__category__key__in=spec["categories"])
    if spec["languages"]:
        qs = qs.filter(language__in=spec["languages"])
    if "from" in spec["dates"]:
        qs = qs.filter(created_at__date__gte=spec["dates"]["from"])
    if "to" in spec["dates"]:
        qs = qs.filter(created_at__date__lte=spec["dates"]["to"])
    if spec["edited_only"]:
        qs = qs.filter(approved_revision__number__gt=0)
    if spec["model_specs"]:
        qs = qs.filter(run__model_spec__name__in=spec["model_specs"])
    if spec["prompt_versions"]:
        qs = qs.filter(run__prompt_version__in=spec["prompt_versions"])
    if spec.get("min_agreement") is not None:
        agreeing = campaigns_agreeing(floor=spec["min_agreement"])
        qs = qs.filter(pk__in=CampaignItem.objects.filter(campaign_id__in=agreeing).values("candidate_id"))
    return qs.order_by("id")


def release_selection_count(*, spec: dict) -> dict[str, int]:
    """How many candidates of each kind the spec's database filters select (before the review thresholds)."""
    return {kind: release_selection(spec=spec, kind=kind).count() for kind in spec["kinds"]}


def release_items_visible() -> QuerySet[ReleaseItem]:
    """The candidates ready releases hold, one row per release, format and candidate. A building release's rows
    are not in it (they are written while its files are), nor a failed or cancelled one's (deleted)."""
    return ReleaseItem.objects.filter(release__status=Release.Status.READY)


def released_candidate_ids() -> QuerySet:
    """The ids of the candidates at least one ready release holds (a subquery: ``pk__in=released_candidate_ids()``)."""
    return release_items_visible().order_by().values("candidate_id").distinct()


# What a build reads of each selected candidate, as tuples (``values_list``), never model instances: pass 1 to choose
# (its groups, its sub-emotion and its approved text), pass 2 to write. JSON content comes as its text, which the
# build decodes itself (orjson), instead of Django's ``json.loads`` of each value.
GROUP_COLUMNS = ("pk", "scenario_id", "profile_id", "parent_id", "sub_emotion__key", "approved_text")
ROW_COLUMNS = (
    "pk", "language", "source", "sub_emotion__key", "run_id", "run__model_spec__name", "run__prompt_version",
    "approved_revision__number", "approved_text", "model_text", "approved_revision_id",
)  # fmt: skip


def release_group_rows(*, spec: dict, kind: str) -> QuerySet:
    """Pass 1 of a build: ``GROUP_COLUMNS`` of each selected candidate, by id."""
    qs = release_selection(spec=spec, kind=kind)
    qs = qs.annotate(approved_text=Cast("approved_revision__content", output_field=TextField()))
    return qs.values_list(*GROUP_COLUMNS)


def release_content_rows(*, spec: dict, kind: str, model_text: bool) -> QuerySet:
    """Pass 2 of a build: ``ROW_COLUMNS`` of each selected candidate, by id. ``model_text``: revision 0's content
    (the model's text, a preference pair's rejected side) where the approved revision is a later one, else None."""
    qs = release_selection(spec=spec, kind=kind)
    first = Revision.objects.filter(candidate_id=OuterRef("pk"), number=0)
    first_text = Subquery(first.annotate(text=Cast("content", output_field=TextField())).values("text")[:1])
    qs = qs.annotate(
        approved_text=Cast("approved_revision__content", output_field=TextField()),
        # CASE, so that the database looks revision 0 up only for the edited candidates.
        model_text=Case(When(approved_revision__number__gt=0, then=first_text), output_field=TextField())
        if model_text
        else Value(None, output_field=TextField()),
    )
    return qs.values_list(*ROW_COLUMNS)


def release_review_rows(*, spec: dict, kind: str, scores: bool) -> QuerySet:
    """The reviews of the approved revision of each selected candidate, as ``(candidate_id, reviewer_id, decision)``
    (and ``scores`` when asked), by candidate id: what ``min_approvals``, ``min_mean`` and the reviewer counts
    read. A review of a reference item (gold) tests its reviewer and approved nothing: it counts toward no gate."""
    selected = release_selection(spec=spec, kind=kind).order_by().values("pk")
    qs = Review.objects.filter(candidate_id__in=selected, revision_id=F("candidate__approved_revision_id"), gold=False)
    columns = ("candidate_id", "reviewer_id", "decision", *(("scores",) if scores else ()))
    return qs.order_by("candidate_id", "id").values_list(*columns)
