"""The trust chain through every way in: nothing leaves for training that clinicians did not see and accept.

- one counselor can never approve an item of a k>1 campaign, from the candidate page or the API;
- an edit after approval, or after a risk sign-off, never reaches an export without a new review or sign-off;
- every write of text is screened, and what is derived from a flagged item is flagged;
- profiles and questions are scoped like the candidates they belong to.
"""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotations.exports.sft import sft_export
from annotations.models import Adjudication, AuditEvent, CampaignItem, Review
from annotations.rubrics import DIALOGUE_RUBRIC
from annotations.selectors import queues
from annotations.services import adjudication, campaigns, edits, queue, reviews
from annotations.services import questions as question_services
from generation.models import Candidate, CandidateKind, ClientProfile, RiskFlag
from generation.services.candidates import candidate_create
from psyroom_admin import roles
from tests import factories

from . import scoping

pytestmark = pytest.mark.django_db

PLAN = {
    "case_formulation": "The client pressures herself before exams; perfectionism keeps it going.",
    "goals": ["Reduce exam anxiety"],
    "interventions": [{"technique": "Cognitive restructuring", "rationale": "Her beliefs drive it."}],
    "homework": ["Thought record"],
    "session_schedule": ["Session 1: assessment"],
    "risk_assessment": {"level": "low", "rationale": "No thoughts of harm."},
    "safety_plan": ["Call a friend"],
    "referral_criteria": ["Panic attacks"],
}
EDITED = "That sounds exhausting. What would you tell a friend who felt this way before an exam?"
METHOD = "I have the pills ready and I am going to kill myself tonight."


def _scores(value: int = 4) -> dict:
    return {c["key"]: value for c in DIALOGUE_RUBRIC["criteria"]}


def _page_review(candidate, decision: str = "approve") -> dict:
    data = {f"score_{key}": str(value) for key, value in _scores().items()}
    return {**data, "decision": decision, "comment": "", "version": candidate.version}


def _api(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def _api_review(candidate, decision: str = "approve") -> dict:
    return {"candidate": candidate.pk, "version": candidate.version, "scores": _scores(), "decision": decision}


def _exported(tmp_path) -> list[int]:
    result = sft_export(out=tmp_path / "sft.jsonl")
    return [int(line.split('"candidate_id": ')[1].split(",")[0]) for line in result.path.read_text().splitlines()]


def _approve_as_senior(candidate) -> Candidate:
    senior = factories.make_user(roles.SENIOR_CLINICIAN)
    reviews.review_submit(
        candidate=candidate, reviewer=senior, scores=_scores(), decision="approve", base_version=candidate.version
    )
    candidate.refresh_from_db()
    assert candidate.status == Candidate.Status.APPROVED
    return candidate


# --- One path: a campaign item is reviewed in its campaign --------------------------------------------------------


def test_one_counselor_cannot_approve_a_k2_campaign_item_from_the_page_or_the_api(
    client, curator, counselor, other_counselor, taxonomy, tmp_path
):
    candidate = factories.make_candidate()
    campaigns.campaign_create(
        creator=curator, name="Blind k=2", kind="dialogue", overlap=2, members=[counselor, other_counselor],
        candidate_ids=[candidate.pk],
    )  # fmt: skip
    client.force_login(counselor)
    response = client.post(reverse("annotations:review", args=[candidate.pk]), _page_review(candidate))
    assert response.status_code == 400
    assert "is in campaign &#x27;Blind k=2&#x27; (k=2): review it there, from the campaign&#x27;s queue." in (
        response.text
    )
    response = _api(counselor).post(reverse("api:review-create"), _api_review(candidate), format="json")
    assert response.status_code == 400
    assert response.json() == {
        "candidate": [f"{candidate} is in campaign 'Blind k=2' (k=2): review it there, from the campaign's queue."]
    }
    assert not Review.objects.exists()
    assert not AuditEvent.objects.filter(action="review.submit").exists()
    candidate.refresh_from_db()
    assert (candidate.status, candidate.approved_revision) == (Candidate.Status.GENERATED, None)
    item = CampaignItem.objects.get(candidate=candidate)
    assert (item.state, item.reviews_done) == (CampaignItem.State.OPEN, 0)
    assert _exported(tmp_path) == []


def test_one_counselors_approval_outside_campaigns_waits_for_the_policy(counselor, taxonomy, tmp_path):
    candidate = factories.make_candidate()
    scoping.put_in_campaign([counselor], [candidate])
    response = _api(counselor).post(reverse("api:review-create"), _api_review(candidate), format="json")
    assert (response.status_code, response.json()["candidate_status"]) == (201, "in_review")
    assert _exported(tmp_path) == []


# --- Approvals bind to a revision -----------------------------------------------------------------------------------


def test_an_edit_after_approval_sends_it_back_to_review_and_out_of_the_export(
    client, counselor, senior, taxonomy, tmp_path
):
    candidate = factories.make_candidate()
    scoping.put_in_campaign([counselor], [candidate])
    candidate = _approve_as_senior(candidate)
    assert _exported(tmp_path) == [candidate.pk]

    # Through the API ...
    edit = {"text": EDITED, "category": "wording", "reason": "warmer", "version": candidate.version}
    response = _api(counselor).post(reverse("api:candidate-turn", args=[candidate.pk, 1]), edit, format="json")
    assert response.status_code == 201
    candidate.refresh_from_db()
    assert (candidate.status, candidate.approved_revision.number) == (Candidate.Status.IN_REVIEW, 0)
    assert _exported(tmp_path) == []
    # ... and the page: the older approval does not come back, and a review of the old version is stale.
    client.force_login(senior)
    response = client.post(
        reverse("annotations:review", args=[candidate.pk]), {**_page_review(candidate), "version": 1}
    )
    assert response.status_code == 409
    assert _exported(tmp_path) == []
    # A senior reviews the edit: now the edited revision is what leaves.
    response = client.post(reverse("annotations:review", args=[candidate.pk]), _page_review(candidate))
    assert response.status_code == 302
    candidate.refresh_from_db()
    assert (candidate.status, candidate.approved_revision.number) == (Candidate.Status.APPROVED, 1)
    assert _exported(tmp_path) == [candidate.pk]
    assert EDITED in (tmp_path / "sft.jsonl").read_text()


def test_an_edit_of_a_decided_campaign_item_sends_it_to_adjudication(
    curator, counselor, other_counselor, senior, taxonomy, tmp_path
):
    candidate = factories.make_candidate()
    campaign = campaigns.campaign_create(
        creator=curator, name="k2", kind="dialogue", overlap=2, members=[counselor, other_counselor],
        candidate_ids=[candidate.pk],
    )  # fmt: skip
    for user in (counselor, other_counselor):
        held = queue.queue_claim_next(campaign=campaign, counselor=user)
        reviews.review_submit(
            candidate=candidate, reviewer=user, scores=_scores(), decision="approve",
            base_version=Candidate.objects.get(pk=candidate.pk).version, assignment=held,
        )  # fmt: skip
    item = CampaignItem.objects.get(candidate=candidate)
    assert item.state == CampaignItem.State.DECIDED
    assert _exported(tmp_path) == [candidate.pk]

    candidate.refresh_from_db()
    edits.turn_edit(
        candidate=candidate, editor=counselor, index=1, text=EDITED, base_version=candidate.version,
        category="wording", reason="warmer",
    )  # fmt: skip
    item.refresh_from_db()
    assert item.state == CampaignItem.State.ADJUDICATION
    assert _exported(tmp_path) == []
    # The editor's edit is judged by a senior who did not rate it, on the version they read.
    assert item in queues.adjudication_queue(clinician=senior)
    adjudication.adjudicate(
        item=item, clinician=senior, decision="approve", reason="the edit is warmer",
        base_version=Candidate.objects.get(pk=candidate.pk).version,
    )  # fmt: skip
    candidate.refresh_from_db()
    assert candidate.approved_revision.number == 1
    assert _exported(tmp_path) == [candidate.pk]


# --- Sign-offs bind to flags and revisions --------------------------------------------------------------------------


def test_an_edit_after_sign_off_that_adds_a_method_opens_a_new_flag(counselor, senior, taxonomy, tmp_path):
    content = factories.dialogue_content()
    content["turns"][0]["text"] = "Sometimes I think everyone would be better off dead without me."
    candidate = factories.make_candidate(content=content)
    scoping.put_in_campaign([counselor], [candidate])
    [screened] = candidate.flags.all()
    adjudication.risk_sign_off(
        candidate=candidate, clinician=senior, note="Explored well.", flag_ids=[screened.pk],
        base_version=candidate.version,
    )  # fmt: skip
    candidate = _approve_as_senior(candidate)
    assert _exported(tmp_path) == [candidate.pk]

    edit = {"text": METHOD, "category": "clinical", "reason": "more specific", "version": candidate.version}
    response = _api(counselor).post(reverse("api:candidate-turn", args=[candidate.pk, 2]), edit, format="json")
    assert response.status_code == 201
    assert response.json()["risk"]["open"] is True
    candidate.refresh_from_db()
    new = candidate.flags.get(signed_off_at__isnull=True)
    assert (new.source, new.revision.number) == (RiskFlag.Source.SCREEN, 1)
    assert new.detail.startswith("turn 3 (client)")
    assert _exported(tmp_path) == []
    # The old sign-off does not cover it: no approval until a senior signs the new flag off.
    with pytest.raises(Exception, match="flagged for risk"):
        reviews.review_submit(
            candidate=candidate, reviewer=senior, scores=_scores(), decision="approve", base_version=candidate.version
        )
    assert _exported(tmp_path) == []


def test_a_plan_or_session_derived_from_a_flagged_item_inherits_an_open_flag(taxonomy):
    content = factories.dialogue_content()
    content["turns"][0]["text"] = "I want to kill myself."
    dialogue = factories.make_candidate(content=content)
    plan = candidate_create(kind=CandidateKind.PLAN, content=PLAN, parent=dialogue, sub_emotion=dialogue.sub_emotion)
    [flag] = plan.flags.all()
    assert (flag.source, flag.is_open) == (RiskFlag.Source.INHERITED, True)
    assert str(dialogue.pk) in flag.detail
    assert Candidate.objects.get(pk=plan.pk).has_open_risk


def test_every_write_of_text_is_screened_memories_and_rationales_too(counselor, taxonomy):
    from .test_question_review import make_question

    question = make_question()
    question_services.question_rate_rationales(
        candidate=question, reviewer=counselor, ratings=[{"index": i, "correct": 4, "clinical": 4, "clear": 4}
        for i in range(2)], best=0, edited="The client says: I want to kill myself.", base_version=question.version,
    )  # fmt: skip
    question.refresh_from_db()
    assert question.has_open_risk
    assert "answers[0].rationale" in question.flags.get().detail


# --- Profiles and questions are scoped ------------------------------------------------------------------------------


def test_profiles_and_questions_are_scoped_like_their_candidates(curator, counselor, taxonomy):
    from .test_question_review import make_question

    question = make_question()
    ClientProfile.objects.create(name="Li, 71", background="Lost his friend at the care home.")
    stranger = factories.make_user(roles.COUNSELOR)
    api = _api(stranger)
    assert api.get(reverse("api:profile-list")).json()["results"] == []
    assert api.get(reverse("api:question-list")).json()["results"] == []
    assert api.get(reverse("api:question-detail", args=[question.pk])).status_code == 404
    campaigns.campaign_create(
        creator=curator, name="Questions", kind="question", overlap=1, members=[stranger],
        candidate_ids=[question.pk],
    )  # fmt: skip
    assert [q["id"] for q in api.get(reverse("api:question-list")).json()["results"]] == [question.pk]
    assert api.get(reverse("api:profile-list")).json()["results"] == []
    assert _api(curator).get(reverse("api:profile-list")).json()["count"] == 1


# --- The policy outside campaigns -----------------------------------------------------------------------------------


def test_a_curator_sets_the_policy_and_only_a_curator(curator, counselor, taxonomy):
    url = reverse("api:review-policy")
    assert _api(counselor).get(url).json()["min_counselor_approvals"] == 2
    body = {"min_senior_approvals": 1, "min_counselor_approvals": 1, "min_mean": 3.5}
    assert _api(counselor).put(url, body, format="json").status_code == 403
    response = _api(curator).put(url, {**body, "min_counselor_approvals": 0}, format="json")
    assert response.status_code == 400
    assert response.json() == {"min_counselor_approvals": ["a whole number from 1 to 20, not 0"]}
    assert not AuditEvent.objects.filter(action="policy.set").exists()
    response = _api(curator).put(url, body, format="json")
    assert (response.status_code, response.json()["updated_by"]) == (200, curator.username)
    assert AuditEvent.objects.get(action="policy.set").actor == curator

    # Now one counselor's approval suffices, if every criterion's mean reaches 3.5.
    low, high = factories.make_candidate(), factories.make_candidate()
    scoping.put_in_campaign([counselor], [low, high])
    for candidate, value, expected in ((low, 3, "in_review"), (high, 4, "approved")):
        review = {**_api_review(candidate), "scores": _scores(value)}
        response = _api(counselor).post(reverse("api:review-create"), review, format="json")
        assert response.json()["candidate_status"] == expected


def test_a_session_with_an_open_flag_blocks_its_course(curator, senior, taxonomy):
    from generation.importers.courses import course_import_muspsy
    from generation.selectors import course_sessions

    from .test_course_review import FIXTURES

    course = course_import_muspsy(
        dialogues=FIXTURES / "dialogues_1000.txt",
        memories=FIXTURES / "memories_1000.txt",
        cards=FIXTURES / "usercards_1000.txt",
    ).course
    session = course_sessions(course=course).get(sequence=2)
    edits.candidate_edit(
        candidate=session, editor=senior, content={**session.content, "turns": [
            *session.content["turns"][:1], {"role": "client", "text": "I want to kill myself tonight."},
            *session.content["turns"][2:]]},
        base_version=session.version, category="clinical", reason="test", action="session.edit_turn",
    )  # fmt: skip
    course.refresh_from_db()
    assert course.has_open_risk
    other = factories.make_user(roles.SENIOR_CLINICIAN)
    with pytest.raises(Exception, match="flagged for risk"):
        reviews.review_submit(
            candidate=course, reviewer=other, scores={k: 4 for k in ("arc", "goal_attainment", "client_consistency")},
            decision="approve", base_version=course.version,
        )  # fmt: skip
    body = _api(other).get(reverse("api:candidate-detail", args=[course.pk])).json()
    [flag] = [f for f in body["risk"]["flags"] if f["open"]]
    assert flag["on"] == "session 2"
    # A sign-off on the course names the session's flag.
    adjudication.risk_sign_off(
        candidate=course, clinician=other, note="Handled.", flag_ids=[flag["id"]], base_version=course.version
    )
    course.refresh_from_db()
    assert not course.has_open_risk


# --- Adjudication only of items waiting for it, never by a rater: the page and the API ------------------------------


def test_adjudication_refusals_through_the_page_and_the_api(client, curator, counselor, senior, taxonomy):
    candidate = factories.make_candidate()
    campaign = campaigns.campaign_create(
        creator=curator, name="k2", kind="dialogue", overlap=2, members=[counselor, senior],
        candidate_ids=[candidate.pk],
    )  # fmt: skip
    item = CampaignItem.objects.get(candidate=candidate)
    other_senior = factories.make_user(roles.SENIOR_CLINICIAN)
    decide = {"decision": "approve", "reason": "fine", "version": candidate.version}
    # Not waiting for adjudication: the page offers no decision, and both ways in refuse one.
    client.force_login(other_senior)
    page = client.get(reverse("annotations:adjudication_item", args=[item.pk])).text
    assert 'id="not-for-decision"' in page and 'id="adjudication-form"' not in page
    response = client.post(reverse("annotations:adjudication_item", args=[item.pk]), decide)
    assert response.status_code == 400
    assert "only items waiting for adjudication are adjudicated" in response.text
    response = _api(other_senior).post(reverse("api:adjudication-decide", args=[item.pk]), decide, format="json")
    assert response.status_code == 400
    assert "only items waiting for adjudication" in response.json()["item"][0]

    # The senior rates it and the reviews disagree: they may not settle it, by either way in.
    for user, decision in ((counselor, "approve"), (senior, "reject")):
        held = queue.queue_claim_next(campaign=campaign, counselor=user)
        reviews.review_submit(
            candidate=candidate, reviewer=user, scores=_scores(), decision=decision,
            base_version=candidate.version, assignment=held,
        )  # fmt: skip
    item.refresh_from_db()
    assert item.state == CampaignItem.State.ADJUDICATION
    client.force_login(senior)
    response = client.post(reverse("annotations:adjudication_item", args=[item.pk]), decide)
    assert response.status_code == 400 and "you rated this item" in response.text
    response = _api(senior).post(reverse("api:adjudication-decide", args=[item.pk]), decide, format="json")
    assert response.status_code == 400 and "you rated this item" in response.json()["item"][0]
    assert not Adjudication.objects.exists()
    assert not AuditEvent.objects.filter(action="adjudication").exists()
    candidate.refresh_from_db()
    assert candidate.status != Candidate.Status.APPROVED


def test_one_counselor_approving_twice_is_one_approval(counselor, taxonomy):
    candidate = factories.make_candidate()
    scoping.put_in_campaign([counselor], [candidate])
    api = _api(counselor)
    first = api.post(reverse("api:review-create"), _api_review(candidate), format="json")
    again = api.post(reverse("api:review-create"), _api_review(candidate), format="json")
    # The same review again is the same review; a changed one is a change of mind, still one person.
    assert (first.status_code, again.status_code, again.json()["id"]) == (201, 201, first.json()["id"])
    changed = {**_api_review(candidate), "comment": "On reflection, fine."}
    response = api.post(reverse("api:review-create"), changed, format="json")
    assert (response.status_code, response.json()["candidate_status"]) == (201, "in_review")
    assert Review.objects.filter(candidate=candidate).count() == 2
    candidate.refresh_from_db()
    assert (candidate.status, candidate.approved_revision) == (Candidate.Status.IN_REVIEW, None)
