import time

import pytest
from django.core import signing
from django.urls import reverse
from django.utils.html import escape

from annotations.forms.reviews import MAX_REVIEW_SECONDS
from annotations.models import AuditEvent, Review
from annotations.rubrics import DIALOGUE_RUBRIC
from annotations.services import audit, edits, reviews
from generation.models import Candidate, Revision
from tests import factories

from . import scoping

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
EDITED = "That sounds exhausting. What would you tell a friend who felt this way before an exam?"


@pytest.fixture
def counselor(db):
    """A counselor sees only their campaigns' candidates: this one's campaign takes every candidate."""
    yield from scoping.counselor_in_campaign()


def _urls(candidate) -> dict[str, tuple[str, str]]:
    """Every page and action of the review app, with the method it answers."""
    pk = candidate.pk
    return {
        "queue": ("get", reverse("annotations:queue")),
        "candidate": ("get", reverse("annotations:candidate", args=[pk])),
        "turn": ("get", reverse("annotations:turn", args=[pk, 1])),
        "turn_edit_form": ("get", reverse("annotations:turn_edit_form", args=[pk, 1])),
        "turn_post": ("post", reverse("annotations:turn", args=[pk, 1])),
        "review": ("post", reverse("annotations:review", args=[pk])),
        "sign_off": ("post", reverse("annotations:sign_off", args=[pk])),
    }


def _scores(value: int = 4) -> dict:
    return {f"score_{c['key']}": str(value) for c in DIALOGUE_RUBRIC["criteria"]}


def _review_data(candidate, decision: str = "approve", **extra) -> dict:
    return {**_scores(), "decision": decision, "comment": "", "version": candidate.version, **extra}


def _turn_data(candidate, text: str = EDITED, **extra) -> dict:
    return {"text": text, "category": "wording", "reason": "warmer", "version": candidate.version, **extra}


def _risky_candidate():
    content = factories.dialogue_content()
    content["turns"][0]["text"] = "Sometimes I think everyone would be better off dead without me."
    return factories.make_candidate(content=content)


# --- Access -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["queue", "candidate", "turn", "turn_edit_form", "turn_post", "review", "sign_off"])
def test_anonymous_is_sent_to_the_login_page(client, candidate, name):
    method, url = _urls(candidate)[name]
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"


@pytest.mark.parametrize("name", ["queue", "candidate", "turn", "turn_edit_form", "turn_post", "review", "sign_off"])
def test_a_user_without_a_role_gets_403(client, outsider, candidate, name):
    client.force_login(outsider)
    method, url = _urls(candidate)[name]
    response = getattr(client, method)(url)
    assert response.status_code == 403
    assert not Revision.objects.filter(candidate=candidate, number__gt=0).exists()
    assert not Review.objects.exists()


def test_a_missing_candidate_is_404(client, counselor, taxonomy):
    client.force_login(counselor)
    assert client.get(reverse("annotations:candidate", args=[999_999])).status_code == 404


def test_a_missing_turn_is_404(client, counselor, candidate):
    client.force_login(counselor)
    assert client.get(reverse("annotations:turn_edit_form", args=[candidate.pk, 99]), **HTMX).status_code == 404


def test_a_counselor_cannot_open_the_admin(client, counselor):
    client.force_login(counselor)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_curator_can_look_at_candidates_in_the_admin_but_not_add_them(client, role_groups, curator, candidate):
    client.force_login(curator)
    assert client.get("/admin/generation/candidate/").status_code == 200
    assert client.get(f"/admin/generation/candidate/{candidate.pk}/change/").status_code == 200
    assert client.get("/admin/generation/candidate/add/").status_code == 403
    assert client.get("/admin/annotations/auditevent/").status_code == 200


def test_nobody_can_add_or_delete_audit_events_in_the_admin(client, counselor, candidate):
    admin_user = factories.make_user(None, is_staff=True, is_superuser=True)
    event = audit.audit_record(actor=counselor, action="test.event", candidate=candidate)
    client.force_login(admin_user)
    assert client.get("/admin/annotations/auditevent/add/").status_code == 403
    assert client.get(f"/admin/annotations/auditevent/{event.pk}/delete/").status_code == 403
    assert client.post(f"/admin/annotations/auditevent/{event.pk}/change/", {"action": "x"}).status_code == 403
    event.refresh_from_db()
    assert event.action == "test.event"


@pytest.mark.parametrize("name", ["review", "sign_off"])
def test_get_on_a_post_only_url_is_405(client, senior, candidate, name):
    client.force_login(senior)
    _, url = _urls(candidate)[name]
    assert client.get(url).status_code == 405


# --- Queue ------------------------------------------------------------------------------------------------------


def test_queue_lists_reviewable_candidates_and_not_approved_ones(client, counselor, candidate):
    approved = factories.make_candidate(status=Candidate.Status.APPROVED)
    client.force_login(counselor)
    response = client.get(reverse("annotations:queue"))
    assert response.status_code == 200
    assert [c.pk for c in response.context["page"].object_list] == [candidate.pk]
    assert f'href="/candidates/{candidate.pk}/"' in response.text
    assert f'href="/candidates/{approved.pk}/"' not in response.text


def test_queue_filters_by_sub_emotion_and_status(client, counselor, candidate):
    anger = factories.make_candidate(sub_emotion_key="anger.1")
    needs_revision = factories.make_candidate(status=Candidate.Status.NEEDS_REVISION)
    client.force_login(counselor)

    response = client.get(reverse("annotations:queue"), {"sub_emotion": "anger.1"})
    assert [c.pk for c in response.context["page"].object_list] == [anger.pk]
    response = client.get(reverse("annotations:queue"), {"status": "needs_revision"})
    assert [c.pk for c in response.context["page"].object_list] == [needs_revision.pk]


def test_queue_shows_a_risk_badge_and_pages_by_50(client, counselor, taxonomy):
    risky = _risky_candidate()
    for _ in range(50):
        factories.make_candidate()
    client.force_login(counselor)

    first = client.get(reverse("annotations:queue"))
    assert first.context["paginator"].count == 51
    assert len(first.context["page"].object_list) == 50
    assert "badge-risk" in first.text
    second = client.get(reverse("annotations:queue"), {"page": 2})
    assert len(second.context["page"].object_list) == 1
    assert risky.pk in [c.pk for c in first.context["page"].object_list]


# --- Candidate page -----------------------------------------------------------------------------------------------


def test_detail_shows_the_turns_the_rubric_anchors_and_the_review_form(client, counselor, candidate):
    client.force_login(counselor)
    response = client.get(reverse("annotations:candidate", args=[candidate.pk]))
    assert response.status_code == 200
    for index, turn in enumerate(candidate.content["turns"]):
        assert f'data-index="{index}"' in response.text
        assert turn["text"] in response.text
    for criterion in DIALOGUE_RUBRIC["criteria"]:
        assert criterion["label"] in response.text
        for value, anchor in criterion["anchors"].items():
            assert f'name="score_{criterion["key"]}" value="{value}"' in response.text
            assert escape(anchor) in response.text
    assert 'id="submit-review"' in response.text
    assert "edit-turn" in response.text


def test_detail_shows_source_lineage_and_earlier_reviews(client, counselor, other_counselor, taxonomy):
    candidate = factories.make_candidate(
        source={"dataset": "CPsyCounD", "license": "CC BY 4.0", "attribution": "Zhang et al. 2024"},
        lineage={"model": "smollm2-135m-instruct", "prompt_version": "dialogue/v1", "seed": 7},
    )
    reviews.review_submit(
        candidate=candidate,
        reviewer=other_counselor,
        scores={c["key"]: 3 for c in DIALOGUE_RUBRIC["criteria"]},
        decision="needs_revision",
        comment="Too many closed questions.",
        base_version=candidate.version,
    )
    client.force_login(counselor)
    response = client.get(reverse("annotations:candidate", args=[candidate.pk]))
    for needle in ["CPsyCounD", "CC BY 4.0", "Zhang et al. 2024", "smollm2-135m-instruct", "dialogue/v1", "Seed:"]:
        assert needle in response.text
    assert other_counselor.username in response.text
    assert "Needs revision" in response.text
    assert "Too many closed questions." in response.text


def test_a_curator_reads_the_detail_without_edit_or_review_controls(client, curator, candidate):
    client.force_login(curator)
    response = client.get(reverse("annotations:candidate", args=[candidate.pk]))
    assert response.status_code == 200
    assert candidate.content["turns"][0]["text"] in response.text
    assert "edit-turn" not in response.text
    assert 'id="submit-review"' not in response.text


def test_detail_shows_the_models_text_under_an_edited_turn(client, counselor, candidate):
    original = candidate.content["turns"][1]["text"]
    edits.turn_edit(
        candidate=candidate, editor=counselor, index=1, text=EDITED, base_version=1, category="clinical", reason="r"
    )
    client.force_login(counselor)
    response = client.get(reverse("annotations:candidate", args=[candidate.pk]))
    assert EDITED in response.text
    assert "Model's text" in response.text
    assert original in response.text
    assert response.text.count("turn-original-text") == 1


def test_detail_of_a_risky_candidate_warns_and_offers_sign_off_to_seniors_only(client, counselor, senior, taxonomy):
    risky = _risky_candidate()
    client.force_login(counselor)
    response = client.get(reverse("annotations:candidate", args=[risky.pk]))
    assert "Content warning: this item" in response.text
    assert "mentions self-harm or suicide" in response.text
    assert "senior clinician" in response.text
    assert 'id="sign-off"' not in response.text

    client.force_login(senior)
    response = client.get(reverse("annotations:candidate", args=[risky.pk]))
    assert 'id="sign-off"' in response.text


# --- Turn edits ---------------------------------------------------------------------------------------------------


def test_edit_form_partial_has_the_fields(client, counselor, candidate):
    client.force_login(counselor)
    url = reverse("annotations:turn_edit_form", args=[candidate.pk, 1])
    response = client.get(url, {"version": candidate.version}, **HTMX)
    assert response.status_code == 200
    for needle in ['name="text"', 'name="category"', 'name="reason"', 'name="version"', "save-turn"]:
        assert needle in response.text
    assert candidate.content["turns"][1]["text"] in response.text
    assert "<html" not in response.text


def test_edit_form_on_a_stale_page_is_409(client, counselor, candidate):
    client.force_login(counselor)
    url = reverse("annotations:turn_edit_form", args=[candidate.pk, 1])
    response = client.get(url, {"version": candidate.version + 1}, **HTMX)
    assert response.status_code == 409
    assert "Someone else changed this dialogue" in response.text


def test_turn_edit_writes_a_revision_and_updates_every_version_field(client, counselor, candidate):
    original = candidate.content["turns"][1]["text"]
    client.force_login(counselor)
    response = client.post(reverse("annotations:turn", args=[candidate.pk, 1]), _turn_data(candidate), **HTMX)

    assert response.status_code == 200
    assert EDITED in response.text
    assert 'class="candidate-version" value="2" hx-swap-oob="outerHTML:input.candidate-version"' in response.text
    candidate.refresh_from_db()
    assert candidate.version == 2
    assert candidate.content["turns"][1]["text"] == EDITED
    revision = Revision.objects.get(candidate=candidate, number=1)
    assert (revision.content["turns"][1]["text"], revision.author, revision.category, revision.reason) == (
        EDITED,
        counselor,
        "wording",
        "warmer",
    )
    assert Revision.objects.get(candidate=candidate, number=0).content["turns"][1]["text"] == original
    assert AuditEvent.objects.filter(candidate=candidate, action="candidate.edit", actor=counselor).exists()


def test_turn_edit_without_htmx_redirects_back_to_the_page(client, counselor, candidate):
    client.force_login(counselor)
    response = client.post(reverse("annotations:turn", args=[candidate.pk, 1]), _turn_data(candidate))
    assert response.status_code == 302
    assert response["Location"] == f"/candidates/{candidate.pk}/#turn-1"
    assert Revision.objects.filter(candidate=candidate, number=1).exists()


def test_turn_edit_on_a_stale_version_is_409_and_writes_nothing(client, counselor, other_counselor, candidate):
    edits.turn_edit(
        candidate=candidate, editor=other_counselor, index=1, text="Theirs.", base_version=1, category="wording"
    )
    client.force_login(counselor)
    response = client.post(
        reverse("annotations:turn", args=[candidate.pk, 1]), _turn_data(candidate, version=1), **HTMX
    )

    assert response.status_code == 409
    assert "Someone else changed this dialogue" in response.text
    assert "Theirs." in response.text
    assert EDITED in response.text  # the draft is kept, to be copied
    candidate.refresh_from_db()
    assert candidate.content["turns"][1]["text"] == "Theirs."
    assert list(candidate.revisions.values_list("number", flat=True)) == [0, 1]


def test_turn_edit_with_empty_text_is_400_and_writes_nothing(client, counselor, candidate):
    client.force_login(counselor)
    response = client.post(
        reverse("annotations:turn", args=[candidate.pk, 1]), _turn_data(candidate, text="   "), **HTMX
    )
    assert response.status_code == 400
    assert "This field is required" in response.text
    assert not Revision.objects.filter(candidate=candidate, number__gt=0).exists()


def test_turn_edit_that_changes_nothing_is_400_with_the_services_message(client, counselor, candidate):
    client.force_login(counselor)
    same = candidate.content["turns"][1]["text"]
    response = client.post(reverse("annotations:turn", args=[candidate.pk, 1]), _turn_data(candidate, text=same))
    assert response.status_code == 400
    assert "nothing changed" in response.text
    assert not Revision.objects.filter(candidate=candidate, number__gt=0).exists()


def test_a_curator_cannot_edit_a_turn(client, curator, candidate):
    client.force_login(curator)
    response = client.post(reverse("annotations:turn", args=[candidate.pk, 1]), _turn_data(candidate), **HTMX)
    assert response.status_code == 403
    assert not Revision.objects.filter(candidate=candidate, number__gt=0).exists()


# --- Reviews ------------------------------------------------------------------------------------------------------


def test_review_approves_records_and_redirects_to_the_queue(client, senior, candidate):
    """One senior clinician approves outside a campaign (the default policy; two counselors would too)."""
    counselor = senior
    client.force_login(counselor)
    response = client.post(
        reverse("annotations:review", args=[candidate.pk]), _review_data(candidate, comment="Warm and safe.")
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("annotations:queue")
    review = Review.objects.get(candidate=candidate)
    assert (review.reviewer, review.decision, review.comment, review.revision.number) == (
        counselor,
        "approve",
        "Warm and safe.",
        0,
    )
    assert review.scores == {c["key"]: 4 for c in DIALOGUE_RUBRIC["criteria"]}
    candidate.refresh_from_db()
    assert candidate.status == Candidate.Status.APPROVED
    assert AuditEvent.objects.filter(candidate=candidate, action="review.submit", actor=counselor).exists()
    page = client.get(response["Location"])
    assert f"Review of Dialogue #{candidate.pk} saved: approved" in page.text


def test_review_time_spent_is_measured_from_the_signed_start(client, counselor, candidate):
    ten_minutes_ago = signing.Signer(salt="annotations.review.started_at").sign(str(int(time.time()) - 600))
    client.force_login(counselor)
    client.post(reverse("annotations:review", args=[candidate.pk]), _review_data(candidate, started_at=ten_minutes_ago))
    assert 600 <= Review.objects.get(candidate=candidate).time_spent_s < 660


@pytest.mark.parametrize("started_at", ["forged:123", str(int(time.time()) - 100)], ids=["forged", "unsigned"])
def test_review_time_spent_is_zero_for_a_token_without_a_valid_signature(client, counselor, candidate, started_at):
    client.force_login(counselor)
    client.post(reverse("annotations:review", args=[candidate.pk]), _review_data(candidate, started_at=started_at))
    assert Review.objects.get(candidate=candidate).time_spent_s == 0


def test_review_time_spent_is_clamped(client, counselor, candidate):
    yesterday = signing.Signer(salt="annotations.review.started_at").sign(str(int(time.time()) - 86_400))
    client.force_login(counselor)
    client.post(reverse("annotations:review", args=[candidate.pk]), _review_data(candidate, started_at=yesterday))
    assert Review.objects.get(candidate=candidate).time_spent_s == MAX_REVIEW_SECONDS


def test_review_with_a_missing_score_is_400_keeps_the_input_and_writes_nothing(client, counselor, candidate):
    data = _review_data(candidate, comment="My careful comment.")
    del data["score_empathy"]
    client.force_login(counselor)
    response = client.post(reverse("annotations:review", args=[candidate.pk]), data)

    assert response.status_code == 400
    assert "The review was not saved" in response.text
    assert "Choose a score for this criterion." in response.text
    assert "My careful comment." in response.text
    assert 'name="score_expression" value="4" id="id_score_expression_3" required checked' in response.text
    assert not Review.objects.exists()
    candidate.refresh_from_db()
    assert candidate.status == Candidate.Status.GENERATED


def test_approving_a_risk_flagged_candidate_is_400_and_changes_nothing(client, counselor, taxonomy):
    risky = _risky_candidate()
    client.force_login(counselor)
    response = client.post(reverse("annotations:review", args=[risky.pk]), _review_data(risky))

    assert response.status_code == 400
    assert "a senior clinician must sign it off before approval" in response.text
    assert not Review.objects.exists()
    risky.refresh_from_db()
    assert risky.status == Candidate.Status.GENERATED


def test_a_risk_flag_without_a_comment_is_400(client, counselor, candidate):
    client.force_login(counselor)
    response = client.post(
        reverse("annotations:review", args=[candidate.pk]),
        _review_data(candidate, decision="reject", risk_flags=["harmful_advice"]),
    )
    assert response.status_code == 400
    assert "a comment is required with a risk flag" in response.text
    assert not Review.objects.exists()


def test_senior_sign_off_then_approval_works(client, senior, counselor, taxonomy):
    risky = _risky_candidate()
    [flag] = risky.flags.all()
    client.force_login(senior)
    # The page's form carries the version and the open flags the senior read.
    page = client.get(reverse("annotations:candidate", args=[risky.pk])).text
    assert f'<input type="hidden" name="flags" value="{flag.pk}">' in page
    data = {"note": "Risk explored; plan given.", "version": risky.version, "flags": [flag.pk]}
    response = client.post(reverse("annotations:sign_off", args=[risky.pk]), data)
    assert response.status_code == 302
    assert response["Location"] == reverse("annotations:candidate", args=[risky.pk])
    flag.refresh_from_db()
    assert flag.signed_off_by == senior
    assert not Candidate.objects.get(pk=risky.pk).has_open_risk
    assert AuditEvent.objects.filter(candidate=risky, action="risk.sign_off", actor=senior).exists()

    response = client.post(reverse("annotations:review", args=[risky.pk]), _review_data(risky))
    assert response.status_code == 302
    risky.refresh_from_db()
    assert risky.status == Candidate.Status.APPROVED


def test_a_sign_off_of_a_version_the_senior_did_not_read_is_409(client, senior, counselor, taxonomy):
    risky = _risky_candidate()
    [flag] = risky.flags.all()
    data = {"note": "Risk explored.", "version": risky.version, "flags": [flag.pk]}
    client.force_login(counselor)
    edit = _turn_data(risky, text="Sometimes I think everyone would be better off without me.")
    assert client.post(reverse("annotations:turn", args=[risky.pk, 0]), edit, **HTMX).status_code == 200
    client.force_login(senior)
    response = client.post(reverse("annotations:sign_off", args=[risky.pk]), data)
    assert response.status_code == 409
    assert "The item changed since you read it: read it again, then sign off." in response.text
    flag.refresh_from_db()
    assert flag.is_open and flag.signed_off_by is None
    assert not AuditEvent.objects.filter(action="risk.sign_off").exists()


def test_sign_off_without_a_note_is_400(client, senior, taxonomy):
    risky = _risky_candidate()
    client.force_login(senior)
    response = client.post(reverse("annotations:sign_off", args=[risky.pk]), {"note": "  "})
    assert response.status_code == 400
    risky.refresh_from_db()
    assert risky.has_open_risk


def test_a_counselor_cannot_sign_off(client, counselor, taxonomy):
    risky = _risky_candidate()
    client.force_login(counselor)
    response = client.post(reverse("annotations:sign_off", args=[risky.pk]), {"note": "Looks fine to me."})
    assert response.status_code == 403
    risky.refresh_from_db()
    assert risky.has_open_risk


def test_a_curator_cannot_review(client, curator, candidate):
    client.force_login(curator)
    response = client.post(reverse("annotations:review", args=[candidate.pk]), _review_data(candidate))
    assert response.status_code == 403
    assert not Review.objects.exists()
    candidate.refresh_from_db()
    assert candidate.status == Candidate.Status.GENERATED


def test_review_on_a_stale_version_is_409_and_writes_nothing(client, counselor, other_counselor, candidate):
    edits.turn_edit(
        candidate=candidate, editor=other_counselor, index=1, text="Theirs.", base_version=1, category="wording"
    )
    client.force_login(counselor)
    response = client.post(
        reverse("annotations:review", args=[candidate.pk]), _review_data(candidate, version=1, comment="Mine.")
    )
    assert response.status_code == 409
    assert "This dialogue changed while you were reviewing it" in response.text
    assert "Mine." in response.text
    assert "Theirs." in response.text
    assert not Review.objects.exists()
