"""Campaign services: creation, scoping, the queue on any database, reviews, policy, adjudication, drafts, audit."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from annotations.models import Adjudication, Assignment, AuditEvent, Campaign, CampaignItem, Draft, Review
from annotations.selectors import queues, visibility
from annotations.services import adjudication, campaigns, drafts, edits, queue, reviews
from annotations.services.rubrics import rubric_get_default
from generation.models import Candidate
from generation.services import runs as run_services
from psyroom_admin import roles
from tests import factories

pytestmark = pytest.mark.django_db


def _scores(value: int = 4) -> dict:
    return {c["key"]: value for c in rubric_get_default(kind="dialogue").criteria}


@pytest.fixture
def dialogues(taxonomy):
    return [factories.make_candidate() for _ in range(3)]


@pytest.fixture
def campaign(curator, counselor, other_counselor, senior, dialogues):
    return campaigns.campaign_create(
        creator=curator,
        name="Exam stress",
        kind="dialogue",
        overlap=2,
        members=[counselor, other_counselor, senior],
        candidate_ids=[c.pk for c in dialogues],
    )


def _submit(assignment, user, *, decision="approve", value=4, key=None, risk=None, comment=""):
    candidate = Candidate.objects.get(pk=assignment.item.candidate_id)
    return reviews.review_submit(
        candidate=candidate,
        assignment=assignment,
        reviewer=user,
        scores=_scores(value),
        decision=decision,
        comment=comment,
        risk_flags=risk,
        base_version=candidate.version,
        idempotency_key=key,
    )


def test_create_makes_items_and_audits(campaign, dialogues, curator):
    assert campaign.items.count() == 3
    assert campaign.policy["min_approvals"] == 2
    assert AuditEvent.objects.filter(action="campaign.create", actor=curator, data__campaign=campaign.pk).exists()


def test_create_only_by_curator_and_unknown_ids_named(counselor, curator, dialogues):
    with pytest.raises(PermissionDenied):
        campaigns.campaign_create(creator=counselor, name="x", kind="dialogue", overlap=2, members=[])
    with pytest.raises(ValidationError) as error:
        campaigns.campaign_create(
            creator=curator, name="x", kind="dialogue", overlap=2, members=[], candidate_ids=[dialogues[0].pk, 999999]
        )
    assert "999999" in str(error.value)
    assert not Campaign.objects.exists()


def test_create_from_filters(curator, dialogues, taxonomy):
    other = factories.make_candidate(sub_emotion_key="anxiety.2")
    made = campaigns.campaign_create(
        creator=curator, name="f", kind="dialogue", overlap=1, members=[], filters={"sub_emotions": ["anxiety.2"]}
    )
    assert list(made.items.values_list("candidate_id", flat=True)) == [other.pk]


def test_counselor_sees_only_own_campaigns(campaign, counselor, senior, curator, dialogues, taxonomy):
    stranger = factories.counselor()
    extra = factories.make_candidate()
    assert list(visibility.campaign_list_for(user=stranger)) == []
    assert list(visibility.campaign_list_for(user=counselor)) == [campaign]
    assert set(visibility.candidate_list_visible_to(user=counselor).values_list("pk", flat=True)) == {
        c.pk for c in dialogues
    }
    assert not visibility.candidate_list_visible_to(user=stranger).exists()
    assert visibility.candidate_list_visible_to(user=senior).filter(pk=extra.pk).exists()
    assert visibility.candidate_list_visible_to(user=curator).filter(pk=extra.pk).exists()


def test_claim_in_order_never_twice_and_own_claim_first(campaign, counselor, dialogues):
    first = queue.queue_claim_next(campaign=campaign, counselor=counselor)
    assert first.item.candidate_id == dialogues[0].pk
    assert queue.queue_claim_next(campaign=campaign, counselor=counselor).pk == first.pk
    assert queues.queue_peek_next(campaign=campaign, counselor=counselor).pk == dialogues[1].pk
    _submit(first, counselor)
    second = queue.queue_claim_next(campaign=campaign, counselor=counselor)
    assert second.item.candidate_id == dialogues[1].pk
    assert AuditEvent.objects.filter(action="queue.claim", actor=counselor).count() == 2


def test_a_claim_whose_audit_record_fails_is_not_kept(campaign, counselor, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(queue, "audit_record", broken)
    with pytest.raises(RuntimeError, match="audit log unavailable"):
        queue.queue_claim_next(campaign=campaign, counselor=counselor)
    assert not Assignment.objects.filter(counselor=counselor).exists()

    monkeypatch.undo()
    assignment = queue.queue_claim_next(campaign=campaign, counselor=counselor)
    assert AuditEvent.objects.filter(action="queue.claim", data__assignment=assignment.pk).count() == 1


def test_non_member_cannot_claim(campaign):
    with pytest.raises(PermissionDenied):
        queue.queue_claim_next(campaign=campaign, counselor=factories.counselor())


def test_item_full_at_k_and_lease_expiry_frees_slot(curator, counselor, other_counselor, dialogues):
    one = campaigns.campaign_create(
        creator=curator,
        name="one",
        kind="dialogue",
        overlap=1,
        members=[counselor, other_counselor],
        candidate_ids=[dialogues[0].pk],
    )
    held = queue.queue_claim_next(campaign=one, counselor=counselor)
    assert held is not None
    assert queue.queue_claim_next(campaign=one, counselor=other_counselor) is None
    Assignment.objects.filter(pk=held.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    taken = queue.queue_claim_next(campaign=one, counselor=other_counselor)
    assert taken is not None and taken.item_id == held.item_id
    # The lapsed claim cannot be submitted any more: its slot went to someone else.
    held.refresh_from_db()
    with pytest.raises(ValidationError):
        _submit(held, counselor)
    assert not Review.objects.filter(reviewer=counselor).exists()


def test_expired_lease_submit_accepted_while_slot_free(campaign, counselor):
    held = queue.queue_claim_next(campaign=campaign, counselor=counselor)
    Assignment.objects.filter(pk=held.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    held.refresh_from_db()
    review = _submit(held, counselor)
    assert review.assignment_id == held.pk


def test_release_skips_and_is_not_served_again(campaign, counselor, dialogues):
    held = queue.queue_claim_next(campaign=campaign, counselor=counselor)
    queue.assignment_release(assignment=held, counselor=counselor)
    held.refresh_from_db()
    assert held.status == Assignment.Status.RELEASED
    nxt = queue.queue_claim_next(campaign=campaign, counselor=counselor)
    assert nxt.item.candidate_id == dialogues[1].pk
    assert AuditEvent.objects.filter(action="queue.release", actor=counselor).count() == 1
    with pytest.raises(ValidationError):
        queue.assignment_release(assignment=held, counselor=counselor)


def test_idempotent_submit(campaign, counselor):
    held = queue.queue_claim_next(campaign=campaign, counselor=counselor)
    first = _submit(held, counselor, key="abc-1")
    again = _submit(held, counselor, key="abc-1")
    assert first.pk == again.pk
    assert Review.objects.filter(reviewer=counselor).count() == 1
    assert AuditEvent.objects.filter(action="review.submit", actor=counselor).count() == 1


def test_policy_approves_when_k_agree(campaign, counselor, other_counselor, dialogues):
    for user in (counselor, other_counselor):
        _submit(queue.queue_claim_next(campaign=campaign, counselor=user), user)
    item = CampaignItem.objects.get(campaign=campaign, candidate=dialogues[0])
    assert item.state == CampaignItem.State.DECIDED and item.reviews_done == 2
    assert Candidate.objects.get(pk=dialogues[0].pk).status == Candidate.Status.APPROVED


def test_policy_disagreement_goes_to_adjudication_senior_only(campaign, counselor, other_counselor, senior, dialogues):
    _submit(queue.queue_claim_next(campaign=campaign, counselor=counselor), counselor)
    _submit(queue.queue_claim_next(campaign=campaign, counselor=other_counselor), other_counselor, decision="reject")
    item = CampaignItem.objects.get(campaign=campaign, candidate=dialogues[0])
    assert item.state == CampaignItem.State.ADJUDICATION
    assert Candidate.objects.get(pk=dialogues[0].pk).status != Candidate.Status.APPROVED
    assert list(queues.adjudication_queue(clinician=senior)) == [item]
    with pytest.raises(PermissionDenied):
        queues.adjudication_queue(clinician=counselor)
    with pytest.raises(PermissionDenied):
        adjudication.adjudicate(item=item, clinician=counselor, decision="approve", reason="fine", base_version=1)
    assert not Adjudication.objects.exists()
    version = Candidate.objects.get(pk=dialogues[0].pk).version
    adjudication.adjudicate(
        item=item, clinician=senior, decision="reject", reason="too directive", base_version=version
    )
    item.refresh_from_db()
    assert item.state == CampaignItem.State.DECIDED
    assert Candidate.objects.get(pk=dialogues[0].pk).status == Candidate.Status.REJECTED
    assert AuditEvent.objects.filter(action="adjudication", actor=senior).exists()


def test_risk_blocks_approval_until_senior_signs_off(campaign, counselor, other_counselor, senior, dialogues):
    _submit(
        queue.queue_claim_next(campaign=campaign, counselor=counselor),
        counselor,
        decision="needs_revision",
        risk=["self_harm"],
        comment="misses the disclosure in turn 3",
    )
    # The other counselor cannot approve what is flagged, on this path or any other: nothing is written.
    held = queue.queue_claim_next(campaign=campaign, counselor=other_counselor)
    with pytest.raises(ValidationError, match="flagged for risk"):
        _submit(held, other_counselor)
    assert Review.objects.filter(reviewer=other_counselor).count() == 0
    _submit(held, other_counselor, decision="needs_revision")
    candidate = Candidate.objects.get(pk=dialogues[0].pk)
    assert candidate.status != Candidate.Status.APPROVED and candidate.has_open_risk
    item = CampaignItem.objects.get(campaign=campaign, candidate=candidate)
    assert item.state == CampaignItem.State.ADJUDICATION
    # The senior rated nothing here, so the item is in their queue; approving must name the open flag they read.
    assert item in queues.adjudication_queue(clinician=senior)
    [flag] = candidate.flags.all()
    with pytest.raises(ValidationError, match=f"risk flag\\(s\\) {flag.pk} are open and not among those you read"):
        adjudication.adjudicate(
            item=item, clinician=senior, decision="approve", reason="handled in turn 5", base_version=candidate.version
        )
    assert not Adjudication.objects.exists()
    adjudication.adjudicate(
        item=item,
        clinician=senior,
        decision="approve",
        reason="handled in turn 5",
        base_version=candidate.version,
        flag_ids=[flag.pk],
    )
    candidate.refresh_from_db()
    assert candidate.status == Candidate.Status.APPROVED and not candidate.has_open_risk
    assert candidate.approved_revision == candidate.revisions.get()
    flag.refresh_from_db()
    assert (flag.signed_off_by, flag.note) == (senior, "handled in turn 5")


def test_only_an_item_waiting_for_adjudication_is_adjudicated_and_not_by_a_rater(
    campaign, counselor, senior, dialogues
):
    item = CampaignItem.objects.get(campaign=campaign, candidate=dialogues[0])
    # Open, with no review in: nothing to settle.
    with pytest.raises(ValidationError, match="this item is waiting for reviews: only items waiting for adjudication"):
        adjudication.adjudicate(item=item, clinician=senior, decision="approve", reason="fine", base_version=1)
    _submit(queue.queue_claim_next(campaign=campaign, counselor=counselor), counselor)
    _submit(queue.queue_claim_next(campaign=campaign, counselor=senior), senior, decision="reject")
    item.refresh_from_db()
    assert item.state == CampaignItem.State.ADJUDICATION
    # The senior rated it: it is not in their queue and they cannot settle it.
    assert item not in queues.adjudication_queue(clinician=senior)
    with pytest.raises(ValidationError, match="you rated this item"):
        adjudication.adjudicate(item=item, clinician=senior, decision="reject", reason="fine", base_version=1)
    other_senior = factories.make_user(roles.SENIOR_CLINICIAN)
    assert item in queues.adjudication_queue(clinician=other_senior)
    adjudication.adjudicate(item=item, clinician=other_senior, decision="approve", reason="fine", base_version=1)
    # Decided: a second adjudication is refused.
    with pytest.raises(ValidationError, match="this item is decided"):
        adjudication.adjudicate(
            item=item, clinician=other_senior, decision="reject", reason="changed my mind", base_version=1
        )
    assert Adjudication.objects.count() == 1


def test_a_plain_review_of_an_item_in_an_open_campaign_is_refused(campaign, counselor, senior, dialogues):
    """One counselor approving a k=2 campaign item outside the campaign: refused, nothing written."""
    candidate = dialogues[0]
    for user in (counselor, senior):
        with pytest.raises(ValidationError, match="is in campaign 'Exam stress' \\(k=2\\): review it there"):
            reviews.review_submit(
                candidate=candidate,
                reviewer=user,
                scores=_scores(5),
                decision="approve",
                base_version=candidate.version,
            )
    assert not Review.objects.exists()
    candidate.refresh_from_db()
    assert candidate.status == Candidate.Status.GENERATED
    item = CampaignItem.objects.get(campaign=campaign, candidate=candidate)
    assert (item.state, item.reviews_done) == (CampaignItem.State.OPEN, 0)


def test_blind_visibility(campaign, counselor, other_counselor, senior, dialogues):
    _submit(queue.queue_claim_next(campaign=campaign, counselor=counselor), counselor, decision="reject")
    mine = queue.queue_claim_next(campaign=campaign, counselor=other_counselor)
    assert visibility.reviews_visible_to(user=other_counselor, candidate=dialogues[0]) == []
    _submit(mine, other_counselor, decision="reject")
    seen = visibility.reviews_visible_to(user=other_counselor, candidate=dialogues[0])
    assert [r.reviewer_id for r in seen] == [other_counselor.pk]
    assert len(visibility.reviews_visible_to(user=senior, candidate=dialogues[0])) == 2
    Campaign.objects.filter(pk=campaign.pk).update(blind=False)
    assert len(visibility.reviews_visible_to(user=other_counselor, candidate=dialogues[0])) == 2


def test_drafts_saved_and_deleted_on_submit(campaign, counselor, dialogues):
    held = queue.queue_claim_next(campaign=campaign, counselor=counselor)
    drafts.draft_save(user=counselor, candidate=dialogues[0], data={"comment": "half", "scores": {"empathy": 3}})
    assert drafts.draft_get(user=counselor, candidate=dialogues[0])["comment"] == "half"
    with pytest.raises(ValidationError):
        drafts.draft_save(user=counselor, candidate=dialogues[0], data={"nonsense": 1})
    _submit(held, counselor)
    assert not Draft.objects.filter(user=counselor).exists()
    assert drafts.draft_get(user=counselor, candidate=dialogues[0]) == {}


def test_history_lists_audit_events(campaign, counselor, senior, dialogues):
    held = queue.queue_claim_next(campaign=campaign, counselor=counselor)
    _submit(held, counselor)
    actions = list(visibility.candidate_history(candidate=dialogues[0], user=senior).values_list("action", flat=True))
    assert actions[:2] == ["review.submit", "queue.claim"]


def test_permission_change_audited(counselor, curator, role_groups):
    from django.contrib.auth.models import Group

    counselor.groups.add(Group.objects.get(name=roles.SENIOR_CLINICIAN))
    event = AuditEvent.objects.filter(action="permission.change").latest("id")
    assert event.data["user"] == counselor.pk
    assert event.data["action"] == "add" and roles.SENIOR_CLINICIAN in event.data["groups"]
    counselor.groups.remove(Group.objects.get(name=roles.SENIOR_CLINICIAN))
    assert AuditEvent.objects.filter(action="permission.change", data__action="remove").exists()


def test_regenerate_with_critique_joins_campaign(campaign, counselor, dialogues):
    from generation.services.runs import run_execute
    from tests.generation.scripted import ScriptedBackend

    run = edits.candidate_regenerate_with_critique(
        candidate=dialogues[0], reviewer=counselor, critique="Ask about the exam itself.", campaign=campaign
    )
    assert run.targets[0]["feedback"] == "Ask about the exam itself."
    assert run.targets[0]["parent"] == dialogues[0].pk
    assert AuditEvent.objects.filter(action="candidate.regenerate", actor=counselor, data__run=run.pk).exists()
    backend = ScriptedBackend()
    run_execute(run_id=run.pk, backend=backend)
    new = Candidate.objects.get(run=run)
    assert new.parent_id == dialogues[0].pk
    assert CampaignItem.objects.filter(campaign=campaign, candidate=new).exists()
    prompts = "\n".join(m["content"] for call in backend.calls for p in call for m in p)
    assert "Ask about the exam itself." in prompts
    with pytest.raises(ValidationError):
        edits.candidate_regenerate_with_critique(candidate=dialogues[1], reviewer=counselor, critique="  ")


def test_a_reviewer_has_at_most_a_few_regenerations_waiting(campaign, counselor, dialogues, settings, monkeypatch):
    # @@ALIAS gen_services
    from generation.models import GenerationRun

    monkeypatch.setattr(run_services, "run_queue", lambda run_id: None)
    settings.PSYROOM_REGENERATIONS_PER_USER = 2
    for candidate in dialogues[:2]:
        run = edits.candidate_regenerate_with_critique(
            candidate=candidate, reviewer=counselor, critique="Reflect first.", campaign=campaign
        )
        assert run.created_by == counselor
    with pytest.raises(ValidationError, match="you have 2 regenerations waiting or running \\(at most 2\\)"):
        edits.candidate_regenerate_with_critique(
            candidate=dialogues[2], reviewer=counselor, critique="Reflect first.", campaign=campaign
        )
    assert GenerationRun.objects.count() == 2
    assert AuditEvent.objects.filter(action="candidate.regenerate").count() == 2
    # A finished one frees a place.
    GenerationRun.objects.filter(pk=run.pk).update(status=GenerationRun.Status.SUCCEEDED)
    edits.candidate_regenerate_with_critique(
        candidate=dialogues[2], reviewer=counselor, critique="Reflect first.", campaign=campaign
    )
    assert GenerationRun.objects.count() == 3
