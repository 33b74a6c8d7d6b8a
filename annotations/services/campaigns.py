"""Campaigns: who reviews which candidates, k per candidate; created by curators and administrators from filters or
an id list, with a policy checked at creation (``policy.campaign_policy_validate``).
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from generation import selectors as gen_selectors
from generation.models import Candidate
from psyroom_admin import roles

from ..models import Campaign, CampaignItem, Rubric
from ..selectors.campaigns import campaign_selection
from .audit import audit_record
from .policy import campaign_policy_validate
from .rubrics import rubric_get_default

CAMPAIGN_MANAGERS = (roles.CURATOR, roles.ADMIN)
MAX_LEASE_SECONDS = 7 * 24 * 3600


def campaign_create(
    *,
    creator,
    name: str,
    kind: str,
    overlap: int,
    members,
    rubric: Rubric | None = None,
    guidelines: str = "",
    blind: bool = True,
    policy: dict | None = None,
    lease_seconds: int = 1800,
    filters: dict | None = None,
    candidate_ids: list[int] | None = None,
) -> Campaign:
    """Create a campaign and its items from filters or an uploaded id list (curators and admins only)."""
    if not roles.user_has_role(creator, *CAMPAIGN_MANAGERS):
        raise PermissionDenied("Only curators and administrators create campaigns.")
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "a campaign needs a name"})
    try:
        overlap = int(overlap)
    except (TypeError, ValueError):
        raise ValidationError({"overlap": f"{overlap!r} is not a whole number"}) from None
    if not 1 <= overlap <= 20:
        raise ValidationError({"overlap": f"k must be between 1 and 20, not {overlap}"})
    if not isinstance(lease_seconds, int) or isinstance(lease_seconds, bool):
        raise ValidationError({"lease_seconds": f"{lease_seconds!r} is not a whole number of seconds"})
    if not 30 <= lease_seconds <= MAX_LEASE_SECONDS:
        raise ValidationError({"lease_seconds": f"a lease runs from 30 seconds to 7 days, not {lease_seconds}"})
    rubric = rubric or rubric_get_default(kind=kind)
    if rubric.kind != kind:
        raise ValidationError({"rubric": f"{rubric} is for {rubric.kind}, not {kind}"})
    policy = campaign_policy_validate(policy=policy, overlap=overlap)
    filters = campaign_filters_validate(filters=filters)
    qs = Candidate.objects.filter(kind=kind)
    if candidate_ids is not None:
        ids = sorted({int(i) for i in candidate_ids})
        found = set(qs.filter(pk__in=ids).values_list("pk", flat=True))
        unknown = [i for i in ids if i not in found]
        if unknown:
            raise ValidationError({"candidate_ids": f"no {kind} candidate with id {', '.join(map(str, unknown[:20]))}"})
        qs = qs.filter(pk__in=ids)
    else:
        qs = campaign_selection(kind=kind, filters=filters)
    selection = {"filters": filters} if candidate_ids is None else {"candidate_ids": len(candidate_ids)}
    with transaction.atomic():
        campaign = Campaign.objects.create(
            name=name,
            kind=kind,
            rubric=rubric,
            overlap=overlap,
            guidelines=guidelines,
            blind=blind,
            policy=policy,
            lease_seconds=int(lease_seconds),
            selection=selection,
            created_by=creator,
        )
        campaign.members.set(list(members or []))
        CampaignItem.objects.bulk_create(
            [CampaignItem(campaign=campaign, candidate_id=pk) for pk in qs.order_by("id").values_list("pk", flat=True)],
            batch_size=2000,
        )
        audit_record(
            actor=creator,
            action="campaign.create",
            data={"campaign": campaign.pk, "name": name, "overlap": overlap, "items": campaign.items.count()},
        )
    return campaign


def campaign_filters_validate(*, filters) -> dict:
    """What a campaign's candidates are chosen by, checked here so that a bad value is a clear 400, not a 500; the
    filters as ``campaign_selection`` takes them. The campaign form's live count checks its filters here too."""
    if filters is None:
        return {}
    if not isinstance(filters, dict):
        raise ValidationError({"filters": "must be an object"})
    unknown = set(filters) - {"sub_emotions", "scenarios", "run", "sources", "status"}
    if unknown:
        raise ValidationError({"filters": f"unknown filter(s): {', '.join(sorted(map(str, unknown)))}"})
    clean = {}
    sub_emotions = filters.get("sub_emotions") or []
    if not isinstance(sub_emotions, list) or not all(isinstance(k, str) and len(k) <= 32 for k in sub_emotions):
        raise ValidationError({"filters": "sub_emotions: a list of sub-emotion keys such as anxiety.1"})
    if sub_emotions:
        known = set(gen_selectors.sub_emotion_list().filter(key__in=sub_emotions).values_list("key", flat=True))
        missing = [k for k in sub_emotions if k not in known]
        if missing:
            raise ValidationError({"filters": f"sub_emotions: no sub-emotion {', '.join(missing[:10])}"})
        clean["sub_emotions"] = sub_emotions
    for name in ("scenarios",):
        ids = filters.get(name) or []
        if not isinstance(ids, list) or not all(_is_id(i) for i in ids):
            raise ValidationError({"filters": f"{name}: a list of ids (whole numbers)"})
        if ids:
            clean[name] = ids
    if filters.get("run") not in (None, ""):
        if not _is_id(filters["run"]):
            raise ValidationError({"filters": f"run: a run id (a whole number), not {filters['run']!r}"})
        clean["run"] = filters["run"]
    sources = filters.get("sources") or []
    if not isinstance(sources, list) or not all(isinstance(d, str) and 0 < len(d) <= 200 for d in sources):
        raise ValidationError({"filters": "sources: a list of dataset names such as CPsyCounD"})
    if sources:
        known = set(gen_selectors.source_dataset_list())
        missing = [d for d in sources if d not in known]
        if missing:
            raise ValidationError({"filters": f"sources: no candidate was imported from {', '.join(missing[:10])}"})
        clean["sources"] = sources
    if filters.get("status"):
        if filters["status"] not in Candidate.Status.values:
            raise ValidationError({"filters": f"status: one of {', '.join(Candidate.Status.values)}"})
        clean["status"] = filters["status"]
    return clean


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 2**63 - 1
