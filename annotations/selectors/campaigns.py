"""What a campaign's filters select: the one reading that ``campaign_create`` makes its items of and the campaign
form's live count shows, so that the count is what the campaign will hold."""

from django.db.models import QuerySet

from generation import selectors as gen_selectors
from generation.models import Candidate


def campaign_selection(*, kind: str, filters: dict) -> QuerySet[Candidate]:
    """The candidates of ``kind`` that ``filters`` (checked by ``services.campaigns.campaign_filters_validate``)
    select; without a status, those waiting for a person's judgement."""
    listed = gen_selectors.candidate_list if filters.get("status") else gen_selectors.candidate_list_reviewable
    return listed(filters={**filters, "kind": kind})
