"""The agreement figures of the campaigns a release draws on, and the campaigns whose agreement reaches a floor.

The figures are the dashboards' (``dashboards.selectors.campaign_agreement_figures``): agreement is computed in one
place. No app imports ``dashboards``, so it hands its function over when it loads (``DashboardsConfig.ready`` calls
``agreement_provider_set``); without it a release records that the figures are unavailable and a spec asking for
``min_agreement`` is refused.
"""

from collections.abc import Callable

from annotations.models import CampaignItem

from .models import ReleaseItem

AgreementProvider = Callable[..., dict[int, dict]]
_provider: list[AgreementProvider] = []
UNAVAILABLE = "agreement figures unavailable: the dashboards app is not installed"


def agreement_provider_set(provider: AgreementProvider) -> None:
    """``provider(campaign_ids=[...])`` gives each campaign's figures ({name, reviews, items, raters, decision,
    criteria}); set once by the dashboards app."""
    _provider[:] = [provider]


def agreement_available() -> bool:
    return bool(_provider)


def campaign_agreement(*, campaign_ids: list[int]) -> dict[int, dict]:
    """Each campaign's agreement figures, by id (a campaign without reviews has ``reviews: 0``)."""
    if not _provider:
        raise LookupError(UNAVAILABLE)
    return _provider[0](campaign_ids=sorted(campaign_ids))


def campaigns_agreeing(*, floor: float) -> list[int]:
    """The campaigns whose Krippendorff's alpha on the decision is defined and at least ``floor``."""
    ids = list(CampaignItem.objects.order_by().values_list("campaign_id", flat=True).distinct())
    figures = campaign_agreement(campaign_ids=ids)
    return sorted(
        pk
        for pk, f in figures.items()
        if f["decision"] is not None and f["decision"]["alpha"] is not None and f["decision"]["alpha"] >= floor
    )


def release_agreement(*, release_id: int) -> dict:
    """The manifest's ``agreement``: the campaigns holding a candidate the release holds (its ``ReleaseItem``
    rows), each with its figures, by id as a string (JSON keys)."""
    campaign_ids = sorted(
        set(
            CampaignItem.objects.filter(
                candidate_id__in=ReleaseItem.objects.filter(release_id=release_id).values("candidate_id")
            )
            .order_by()
            .values_list("campaign_id", flat=True)
            .distinct()
        )
    )
    if not _provider:
        return {"campaigns": campaign_ids, "unavailable": UNAVAILABLE, "figures": {}}
    figures = campaign_agreement(campaign_ids=campaign_ids)
    return {"campaigns": campaign_ids, "figures": {str(pk): figures[pk] for pk in campaign_ids if pk in figures}}
