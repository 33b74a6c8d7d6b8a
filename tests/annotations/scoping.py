"""A ``counselor`` fixture for tests of the plain review pages and API: a counselor sees only the candidates of their
campaigns, so this one is a member of a campaign that every candidate joins as it is created. The campaign is closed:
a candidate in an open campaign is reviewed only through that campaign's queue."""

from django.db.models.signals import post_save

from annotations.models import Campaign, CampaignItem
from annotations.services.rubrics import rubric_get_default
from generation.models import Candidate
from generation.services.candidates import candidates_created
from psyroom_admin import roles
from tests import factories


def counselor_in_campaign():
    """Use as ``yield from counselor_in_campaign()`` in a ``counselor`` fixture."""
    user = factories.make_user(roles.COUNSELOR)
    campaign = Campaign.objects.create(
        name="everything",
        kind="dialogue",
        rubric=rubric_get_default(kind="dialogue"),
        overlap=2,
        blind=False,
        status=Campaign.Status.CLOSED,
    )
    campaign.members.add(user)
    for pk in Candidate.objects.values_list("pk", flat=True):
        CampaignItem.objects.get_or_create(campaign=campaign, candidate_id=pk)

    def join(sender, instance, created, raw=False, **kwargs):
        if created and not raw:
            CampaignItem.objects.get_or_create(campaign=campaign, candidate=instance)

    def join_many(sender, candidates, **kwargs):
        for candidate in candidates:
            CampaignItem.objects.get_or_create(campaign=campaign, candidate=candidate)

    post_save.connect(join, sender=Candidate, dispatch_uid="tests.counselor_campaign")
    candidates_created.connect(join_many, dispatch_uid="tests.counselor_campaign_bulk")
    yield user
    post_save.disconnect(sender=Candidate, dispatch_uid="tests.counselor_campaign")
    candidates_created.disconnect(dispatch_uid="tests.counselor_campaign_bulk")


def put_in_campaign(members, candidates, *, blind: bool = False, open: bool = False) -> Campaign:  # noqa: A002
    """A campaign of ``candidates`` for ``members`` (for tests that then open the plain review pages; closed unless
    ``open``, since an open campaign's items are reviewed only through its queue)."""
    campaign = Campaign.objects.create(
        name="test campaign",
        kind="dialogue",
        rubric=rubric_get_default(kind="dialogue"),
        overlap=2,
        blind=blind,
        status=Campaign.Status.OPEN if open else Campaign.Status.CLOSED,
    )
    campaign.members.add(*members)
    for candidate in candidates:
        CampaignItem.objects.get_or_create(campaign=campaign, candidate=candidate)
    return campaign
