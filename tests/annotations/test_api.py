"""The review API: candidates, turn edits, reviews, risk sign-offs; auth, the permission matrix, the schema."""

import time

import pytest
from django.core import signing
from django.urls import reverse
from knox.crypto import hash_token
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.services import token_create
from annotations.models import AuditEvent, Review
from annotations.rubrics import DIALOGUE_RUBRIC
from annotations.services import adjudication, edits, reviews
from generation.models import Candidate, GenerationRun, Revision, RiskFlag
from generation.services.modelspecs import modelspec_get_default
from psyroom_admin import roles
from tests import factories

# A counselor sees only their campaigns' candidates: this one's campaign takes every candidate.
from . import scoping

pytestmark = pytest.mark.django_db

EDITED = "That sounds exhausting. What would you tell a friend who felt this way before an exam?"
ROLES = ["anonymous", "no_role", roles.COUNSELOR, roles.SENIOR_CLINICIAN, roles.CURATOR, roles.ADMIN]


@pytest.fixture
def counselor(db):
    yield from scoping.counselor_in_campaign()


@pytest.fixture
def api():
    return APIClient()


def _as(api: APIClient, user) -> APIClient:
    api.force_login(user)
    return api


def _scores(value: int = 4) -> dict:
    return {c["key"]: value for c in DIALOGUE_RUBRIC["criteria"]}


def _review(candidate, decision: str = "approve", **extra) -> dict:
    return {"candidate": candidate.pk, "version": candidate.version, "scores": _scores(), "decision": decision, **extra}


def _edit(candidate, text: str = EDITED, **extra) -> dict:
    return {"text": text, "category": "wording", "reason": "warmer", "version": candidate.version, **extra}


def _risky_candidate():
    content = factories.dialogue_content()
    content["turns"][0]["text"] = "Sometimes I think everyone would be better off dead without me."
    return factories.make_candidate(content=content)


def _sign_off(candidate, clinician, note="Handled well."):
    flags = list(candidate.flags.values_list("pk", flat=True))
    adjudication.risk_sign_off(
        candidate=candidate, clinician=clinician, note=note, flag_ids=flags, base_version=candidate.version
    )


def _url(name: str, *args) -> str:
    return reverse(f"api:{name}", args=args)


# --- Access: every endpoint x every role ------------------------------------------------------------------------

# What each role gets. A POST with an empty body tells "allowed" (400: the input is checked) from "refused" (403)
# without writing anything.
ALLOWED_ALL = {
    "anonymous": 401,
    "no_role": 403,
    "counselor": 200,
    "senior_clinician": 200,
    "curator": 200,
    "admin": 200,
}
REVIEWERS_ONLY = {
    "anonymous": 401,
    "no_role": 403,
    "counselor": 400,
    "senior_clinician": 400,
    "curator": 403,
    "admin": 403,
}
SIGNERS_ONLY = {**REVIEWERS_ONLY, "counselor": 403}
MATRIX = {
    "candidate-list": ("get", lambda c: _url("candidate-list"), ALLOWED_ALL),
    "candidate-detail": ("get", lambda c: _url("candidate-detail", c.pk), ALLOWED_ALL),
    "candidate-turn": ("post", lambda c: _url("candidate-turn", c.pk, 1), REVIEWERS_ONLY),
    "review-create": ("post", lambda c: _url("review-create"), REVIEWERS_ONLY),
    "candidate-sign-off": ("post", lambda c: _url("candidate-sign-off", c.pk), SIGNERS_ONLY),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", list(MATRIX))
def test_permission_matrix(api, candidate, endpoint, role):
    method, url, expected = MATRIX[endpoint]
    if role == "no_role":
        _as(api, factories.make_user(None))
    elif role != "anonymous":
        user = factories.make_user(role)
        if role == roles.COUNSELOR:
            scoping.put_in_campaign([user], [candidate])  # a counselor sees only their campaigns' candidates
        _as(api, user)
    response = getattr(api, method)(url(candidate), {}, format="json")
    assert response.status_code == expected[role], response.content
    assert not Revision.objects.filter(number__gt=0).exists()
    assert not Review.objects.exists()


def test_anonymous_is_told_to_authenticate_with_a_token(api, candidate):
    response = api.get(_url("candidate-list"))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_a_superuser_counts_as_an_admin_reads_but_does_not_review(api, candidate):
    _as(api, factories.make_user(None, is_superuser=True, is_staff=True))
    assert api.get(_url("candidate-detail", candidate.pk)).json()["can_review"] is False
    assert api.post(_url("review-create"), _review(candidate), format="json").status_code == 403
    assert not Review.objects.exists()


def test_a_role_check_comes_before_a_404(api, taxonomy):
    """A user without a role cannot probe which candidates exist."""
    _as(api, factories.make_user(None))
    assert api.get(_url("candidate-detail", 999_999)).status_code == 403
    _as(api, factories.make_user(roles.COUNSELOR))
    assert api.get(_url("candidate-detail", 999_999)).status_code == 404


# --- Token auth -------------------------------------------------------------------------------------------------


def test_token_auth_works_and_a_wrong_token_is_401(api, counselor, candidate):
    _, key = token_create(user=counselor)
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = api.get(_url("candidate-list"))
    assert response.status_code == 200
    assert response.json()["count"] == 1

    response = api.post(_url("candidate-turn", candidate.pk, 1), _edit(candidate), format="json")
    assert response.status_code == 201
    assert Revision.objects.get(candidate=candidate, number=1).author == counselor

    api.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = api.get(_url("candidate-list"))
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}


def test_a_token_for_a_username_and_password(api, counselor, candidate):
    response = api.post(
        _url("auth-token"), {"username": counselor.username, "password": factories.PASSWORD}, format="json"
    )
    assert response.status_code == 200
    key = response.json()["token"]
    assert response.json()["expiry"]
    assert AuthToken.objects.get(user=counselor).digest == hash_token(key)
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get(_url("candidate-detail", candidate.pk)).status_code == 200


def test_no_token_for_a_wrong_password(api, counselor):
    response = api.post(_url("auth-token"), {"username": counselor.username, "password": "nope"}, format="json")
    assert response.status_code == 400
    assert not AuthToken.objects.exists()


def test_a_token_of_an_inactive_user_is_refused(api, counselor, candidate):
    _, key = token_create(user=counselor)
    counselor.is_active = False
    counselor.save()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get(_url("candidate-list")).status_code == 401


# --- Candidate list ---------------------------------------------------------------------------------------------


def test_list_is_paginated_in_id_order(api, counselor, taxonomy):
    made = [factories.make_candidate() for _ in range(3)]
    _as(api, counselor)
    body = api.get(_url("candidate-list"), {"limit": 2}).json()
    assert body["count"] == 3
    assert [row["id"] for row in body["results"]] == [made[0].pk, made[1].pk]
    assert "offset=2" in body["next"]
    body = api.get(body["next"]).json()
    assert [row["id"] for row in body["results"]] == [made[2].pk]
    assert body["next"] is None
    row = body["results"][0]
    assert row["kind"] == "dialogue"
    assert row["sub_emotion"] == "anxiety.1"
    assert (row["version"], row["has_risk_flag"], row["open_risk"]) == (1, False, False)


def test_list_filters(api, counselor, senior, taxonomy):
    plain = factories.make_candidate()
    other = factories.make_candidate(sub_emotion_key="anger.1", status=Candidate.Status.APPROVED)
    risky = _risky_candidate()
    signed = _risky_candidate()
    _sign_off(signed, senior)
    run = GenerationRun.objects.create(
        kind="dialogue", count=1, model_spec=modelspec_get_default(), prompt_version="v1"
    )
    from_run = factories.make_candidate(run=run, run_index=0)

    _as(api, counselor)

    def ids(**params) -> list[int]:
        response = api.get(_url("candidate-list"), params)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    everything = [plain.pk, other.pk, risky.pk, signed.pk, from_run.pk]
    assert ids() == everything
    assert ids(kind="dialogue") == everything
    assert ids(kind="plan") == []
    assert ids(status="approved") == [other.pk]
    assert ids(sub_emotion="anger.1") == [other.pk]
    assert ids(run=run.pk) == [from_run.pk]
    assert ids(has_risk_flag="true") == [risky.pk, signed.pk]
    assert ids(has_risk_flag="false") == [plain.pk, other.pk, from_run.pk]
    assert ids(open_risk="true") == [risky.pk]
    assert ids(reviewable="true") == [plain.pk, risky.pk, signed.pk, from_run.pk]
    assert ids(reviewable="true", has_risk_flag="true", open_risk="false") == [signed.pk]


def test_a_bad_filter_is_400_naming_it(api, counselor, taxonomy):
    _as(api, counselor)
    response = api.get(_url("candidate-list"), {"status": "lost", "sub_emotion": "joy.99"})
    assert response.status_code == 400
    assert set(response.json()) == {"status", "sub_emotion"}
    assert '"lost" is not a valid choice.' in response.json()["status"]


# --- Candidate detail -------------------------------------------------------------------------------------------


def test_detail_has_the_latest_revision_risk_lineage_and_reviews(api, counselor, other_counselor, taxonomy):
    risky = _risky_candidate()
    Candidate.objects.filter(pk=risky.pk).update(
        lineage={"model": "smollm2-135m-instruct", "seed": 7}, ai_review={"mean": 3.5}
    )
    edits.turn_edit(candidate=risky, editor=other_counselor, index=1, text=EDITED, base_version=1, category="clinical")
    risky.refresh_from_db()
    reviews.review_submit(
        candidate=risky,
        reviewer=other_counselor,
        scores=_scores(2),
        decision="needs_revision",
        comment="The risk is not explored.",
        risk_flags=["self_harm"],
        base_version=risky.version,
    )

    _as(api, counselor)
    response = api.get(_url("candidate-detail", risky.pk))
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["kind"], body["status"], body["version"], body["revision"]) == (
        risky.pk,
        "dialogue",
        "needs_revision",
        2,
        1,
    )
    assert body["content"]["turns"][1]["text"] == EDITED
    assert body["sub_emotion"]["key"] == "anxiety.1"
    assert body["lineage"] == {"model": "smollm2-135m-instruct", "seed": 7}
    assert body["ai_review"] == {"mean": 3.5}
    assert body["risk"]["open"] is True
    assert [(f["source"], f["revision"], f["open"]) for f in body["risk"]["flags"]] == [
        ("screen", 0, True),
        ("review", 1, True),
    ]
    assert body["risk"]["flags"][-1]["code"] == "self_harm"
    assert [(r["number"], r["category"], r["author"]) for r in body["revisions"]] == [
        (0, "original", "model / import"),
        (1, "clinical", other_counselor.username),
    ]
    [review] = body["reviews"]
    assert (review["reviewer"], review["decision"], review["revision"], review["risk_flags"]) == (
        other_counselor.username,
        "needs_revision",
        1,
        ["self_harm"],
    )
    assert review["scores"] == _scores(2)
    assert [c["key"] for c in body["rubric"]["criteria"]] == list(_scores())
    assert (body["can_review"], body["can_sign_off"]) == (True, False)
    assert body["started_at"]


def test_a_curator_reads_the_detail_without_review_rights(api, curator, candidate):
    _as(api, curator)
    body = api.get(_url("candidate-detail", candidate.pk)).json()
    assert (body["can_review"], body["can_sign_off"], body["started_at"]) == (False, False, None)
    assert body["content"] == candidate.content


def test_detail_of_a_kind_without_a_rubric_has_none(api, counselor, candidate):
    # Every kind has a default rubric now (courses and sessions too): a kind outside them stands in.
    Candidate.objects.filter(pk=candidate.pk).update(kind="other")
    _as(api, counselor)
    response = api.get(_url("candidate-detail", candidate.pk))
    assert response.status_code == 200
    assert response.json()["rubric"] is None


def test_a_senior_may_sign_off(api, senior, candidate):
    _as(api, senior)
    body = api.get(_url("candidate-detail", candidate.pk)).json()
    assert (body["can_review"], body["can_sign_off"]) == (True, True)


# --- Turn edits -------------------------------------------------------------------------------------------------


def test_turn_edit_writes_a_revision_and_bumps_the_version(api, counselor, candidate):
    original = candidate.content["turns"][1]["text"]
    _as(api, counselor)
    response = api.post(_url("candidate-turn", candidate.pk, 1), _edit(candidate), format="json")

    assert response.status_code == 201
    body = response.json()
    assert (body["candidate"], body["version"], body["revision"]) == (candidate.pk, 2, 1)
    assert body["turn"] == {"index": 1, "role": "counselor", "text": EDITED}
    candidate.refresh_from_db()
    assert (candidate.version, candidate.content["turns"][1]["text"]) == (2, EDITED)
    revision = Revision.objects.get(candidate=candidate, number=1)
    assert (revision.author, revision.category, revision.reason, revision.base_number) == (
        counselor,
        "wording",
        "warmer",
        0,
    )
    assert Revision.objects.get(candidate=candidate, number=0).content["turns"][1]["text"] == original
    assert AuditEvent.objects.filter(candidate=candidate, action="candidate.edit", actor=counselor).exists()


def test_turn_edit_on_a_stale_version_is_409_with_the_current_text_and_writes_nothing(
    api, counselor, other_counselor, candidate
):
    edits.turn_edit(
        candidate=candidate, editor=other_counselor, index=1, text="Theirs.", base_version=1, category="wording"
    )
    _as(api, counselor)
    response = api.post(_url("candidate-turn", candidate.pk, 1), _edit(candidate, version=1), format="json")

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "stale_version"
    assert body["version"] == 2
    assert body["turn"] == {"index": 1, "role": "counselor", "text": "Theirs."}
    assert body["draft"] == EDITED
    assert "nothing was saved" in body["detail"]
    candidate.refresh_from_db()
    assert (candidate.version, candidate.content["turns"][1]["text"]) == (2, "Theirs.")
    assert list(candidate.revisions.values_list("number", flat=True)) == [0, 1]
    assert AuditEvent.objects.filter(action="candidate.edit").count() == 1


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"text": "   "}, "text", "This field may not be blank."),
        ({"text": None}, "text", "This field may not be null."),
        ({"version": 0}, "version", "Ensure this value is greater than or equal to 1."),
        ({"category": "original"}, "category", '"original" is not a valid choice.'),
        ({"text": "SAME"}, "text", "nothing changed"),
    ],
)
def test_turn_edit_with_bad_input_is_400_naming_the_field_and_writes_nothing(
    api, counselor, candidate, data, field, message
):
    if data.get("text") == "SAME":
        data = {"text": candidate.content["turns"][1]["text"]}
    _as(api, counselor)
    response = api.post(_url("candidate-turn", candidate.pk, 1), {**_edit(candidate), **data}, format="json")
    assert response.status_code == 400
    assert response.json()[field] == [message]
    assert not Revision.objects.filter(number__gt=0).exists()
    candidate.refresh_from_db()
    assert candidate.version == 1


def test_turn_edit_of_a_missing_turn_or_candidate_is_404(api, counselor, candidate):
    _as(api, counselor)
    assert api.post(_url("candidate-turn", candidate.pk, 99), _edit(candidate), format="json").status_code == 404
    assert api.post(_url("candidate-turn", 999_999, 1), _edit(candidate), format="json").status_code == 404
    assert not Revision.objects.filter(number__gt=0).exists()


def test_an_edit_that_mentions_self_harm_raises_a_flag(api, counselor, candidate):
    _as(api, counselor)
    text = "I have thought about suicide."
    response = api.post(_url("candidate-turn", candidate.pk, 0), _edit(candidate, text=text), format="json")
    assert response.status_code == 201
    assert response.json()["risk"]["open"] is True
    candidate.refresh_from_db()
    assert candidate.has_open_risk


def test_a_curator_cannot_edit_a_turn(api, curator, candidate):
    _as(api, curator)
    response = api.post(_url("candidate-turn", candidate.pk, 1), _edit(candidate), format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": "Only counselors and senior clinicians may edit and review."}
    assert not Revision.objects.filter(number__gt=0).exists()


# --- Reviews ----------------------------------------------------------------------------------------------------


def test_review_approves_and_records(api, counselor, other_counselor, candidate):
    # The default policy outside a campaign: two counselors (or one senior clinician) approve.
    _as(api, counselor)
    response = api.post(_url("review-create"), _review(candidate, comment="Warm and on topic."), format="json")
    assert response.status_code == 201
    review = Review.objects.get()
    body = response.json()
    assert (body["id"], body["candidate"], body["candidate_status"], body["revision"], body["decision"]) == (
        review.pk,
        candidate.pk,
        "in_review",
        0,
        "approve",
    )
    assert (review.reviewer, review.scores, review.comment, review.revision.number) == (
        counselor,
        _scores(),
        "Warm and on topic.",
        0,
    )
    assert AuditEvent.objects.filter(candidate=candidate, action="review.submit", actor=counselor).exists()

    scoping.put_in_campaign([other_counselor], [candidate])  # counselors see their campaigns' items only
    _as(api, other_counselor)
    response = api.post(_url("review-create"), _review(candidate), format="json")
    assert (response.status_code, response.json()["candidate_status"]) == (201, "approved")
    candidate.refresh_from_db()
    assert candidate.status == Candidate.Status.APPROVED
    assert candidate.approved_revision == candidate.revisions.get(number=0)


def test_review_time_spent_is_measured_from_the_detail_token(api, counselor, candidate):
    _as(api, counselor)
    signer = signing.Signer(salt="annotations.review.started_at")
    started_at = signer.sign(str(int(time.time()) - 90))
    response = api.post(_url("review-create"), _review(candidate, started_at=started_at), format="json")
    assert response.status_code == 201
    assert 89 <= Review.objects.get().time_spent_s <= 95

    other = factories.make_candidate()
    response = api.post(_url("review-create"), _review(other, started_at="1:forged"), format="json")
    assert response.status_code == 201
    assert Review.objects.get(candidate=other).time_spent_s == 0


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda d: d["scores"].pop("empathy"), "scores", "empathy: a score from 1 to 5 is required"),
        (lambda d: d["scores"].update(empathy=9), "scores", "empathy: 9 is not a score from 1 to 5"),
        (lambda d: d["scores"].update(charm=3), "scores", "unknown criteria: charm"),
        (lambda d: d.update(decision="maybe"), "decision", '"maybe" is not a valid choice.'),
        (lambda d: d.update(risk_flags=["boundary"]), "comment", "a comment is required with a risk flag"),
        (lambda d: d.update(candidate=999_999), "candidate", "object does not exist"),
        (lambda d: d.pop("version"), "version", "This field is required."),
    ],
)
def test_a_bad_review_is_400_naming_the_field_and_writes_nothing(api, counselor, candidate, change, field, message):
    data = _review(candidate)
    change(data)
    _as(api, counselor)
    response = api.post(_url("review-create"), data, format="json")
    assert response.status_code == 400
    assert message in " ".join(map(str, response.json()[field])), response.json()
    assert not Review.objects.exists()
    assert not AuditEvent.objects.exclude(action="permission.change").exists()  # role grants are audited too
    candidate.refresh_from_db()
    assert candidate.status == Candidate.Status.GENERATED


def test_approving_a_risk_flagged_candidate_is_400_and_changes_nothing(api, counselor, taxonomy):
    risky = _risky_candidate()
    _as(api, counselor)
    response = api.post(_url("review-create"), _review(risky), format="json")
    assert response.status_code == 400
    assert "a senior clinician must sign it off" in response.json()["decision"][0]
    assert not Review.objects.exists()
    risky.refresh_from_db()
    assert risky.status == Candidate.Status.GENERATED


def test_a_review_with_a_risk_flag_flags_the_candidate(api, counselor, candidate):
    _as(api, counselor)
    data = _review(candidate, "needs_revision", risk_flags=["boundary"], comment="Gives a home phone number.")
    response = api.post(_url("review-create"), data, format="json")
    assert response.status_code == 201
    assert response.json()["risk_flags"] == ["boundary"]
    candidate.refresh_from_db()
    assert candidate.has_open_risk
    assert candidate.status == Candidate.Status.NEEDS_REVISION


def test_review_on_a_stale_version_is_409_and_writes_nothing(api, counselor, other_counselor, candidate):
    edits.turn_edit(
        candidate=candidate, editor=other_counselor, index=1, text="Theirs.", base_version=1, category="wording"
    )
    _as(api, counselor)
    response = api.post(_url("review-create"), _review(candidate, version=1), format="json")
    assert response.status_code == 409
    assert (response.json()["code"], response.json()["version"]) == ("stale_version", 2)
    assert not Review.objects.exists()
    candidate.refresh_from_db()
    assert candidate.status == Candidate.Status.GENERATED


def test_a_curator_cannot_review(api, curator, candidate):
    _as(api, curator)
    response = api.post(_url("review-create"), _review(candidate), format="json")
    assert response.status_code == 403
    assert not Review.objects.exists()
    candidate.refresh_from_db()
    assert candidate.status == Candidate.Status.GENERATED


# --- Risk sign-off ----------------------------------------------------------------------------------------------


def test_senior_sign_off_then_approval_works(api, senior, counselor, taxonomy):
    risky = _risky_candidate()
    [flag] = risky.flags.all()
    _as(api, senior)
    body = {"note": "Risk explored; plan given.", "version": risky.version, "flags": [flag.pk]}
    response = api.post(_url("candidate-sign-off", risky.pk), body, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["candidate"], body["risk"]["open"]) == (risky.pk, False)
    assert [(f["id"], f["signed_off_by"], f["note"]) for f in body["risk"]["flags"]] == [
        (flag.pk, senior.username, "Risk explored; plan given.")
    ]
    flag.refresh_from_db()
    assert (flag.signed_off_by, flag.is_open) == (senior, False)
    event = AuditEvent.objects.get(candidate=risky, action="risk.sign_off")
    assert (event.actor, event.data["note"], event.data["flags"]) == (senior, "Risk explored; plan given.", [flag.pk])

    assert api.post(_url("review-create"), _review(risky), format="json").status_code == 201
    risky.refresh_from_db()
    assert risky.status == Candidate.Status.APPROVED


def test_a_sign_off_covers_only_the_flags_and_version_the_senior_read(api, senior, counselor, taxonomy):
    risky = _risky_candidate()
    [screened] = risky.flags.all()
    # A counselor flags it after the senior opened the page: a new flag, a new version.
    _as(api, counselor)
    review = _review(risky, decision="needs_revision", risk_flags=["self_harm"], comment="Method named in turn 3.")
    assert api.post(_url("review-create"), review, format="json").status_code == 201
    reviewed = Candidate.objects.get(pk=risky.pk)
    flags = list(reviewed.flags.order_by("pk"))
    assert len(flags) == 2

    # ... and edits a turn: the version the senior read is stale, nothing is signed.
    assert api.post(_url("candidate-turn", risky.pk, 1), _edit(reviewed), format="json").status_code == 201
    _as(api, senior)
    stale = {"note": "Handled.", "version": risky.version, "flags": [screened.pk]}
    response = api.post(_url("candidate-sign-off", risky.pk), stale, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "stale_version")
    assert reviewed.flags.filter(signed_off_at__isnull=False).count() == 0
    reviewed.refresh_from_db()
    # Signing off the flag they read leaves the reviewer's flag open: still no approval.
    body = {"note": "Handled.", "version": reviewed.version, "flags": [screened.pk]}
    assert api.post(_url("candidate-sign-off", risky.pk), body, format="json").status_code == 200
    assert list(reviewed.flags.filter(signed_off_at__isnull=True)) == [flags[1]]
    response = api.post(_url("review-create"), _review(reviewed), format="json")
    assert response.status_code == 400
    assert "flagged for risk" in response.json()["decision"][0]
    reviewed.refresh_from_db()
    assert reviewed.status != Candidate.Status.APPROVED and reviewed.approved_revision is None
    # Signing off again what is already signed is refused, naming the flag.
    response = api.post(_url("candidate-sign-off", risky.pk), body, format="json")
    assert response.status_code == 400
    assert response.json() == {"flags": [f"flag(s) {screened.pk} are already signed off"]}


@pytest.mark.parametrize(("note", "message"), [("  ", "This field may not be blank."), (None, "may not be null")])
def test_sign_off_without_a_note_is_400(api, senior, taxonomy, note, message):
    risky = _risky_candidate()
    _as(api, senior)
    response = api.post(_url("candidate-sign-off", risky.pk), {"note": note}, format="json")
    assert response.status_code == 400
    assert message in response.json()["note"][0]
    risky.refresh_from_db()
    assert risky.has_open_risk
    assert not AuditEvent.objects.exclude(action="permission.change").exists()  # role grants are audited too


def test_sign_off_of_a_flag_the_candidate_does_not_have_is_400(api, senior, candidate, taxonomy):
    risky = _risky_candidate()
    _as(api, senior)
    for flags, message in (([], "This list may not be empty."), ([risky.flags.get().pk], f"{candidate} has no risk")):
        body = {"note": "Fine.", "version": candidate.version, "flags": flags}
        response = api.post(_url("candidate-sign-off", candidate.pk), body, format="json")
        assert response.status_code == 400
        assert message in response.json()["flags"][0]
    response = api.post(_url("candidate-sign-off", candidate.pk), {"note": "Fine."}, format="json")
    assert set(response.json()) == {"version", "flags"}
    assert not RiskFlag.objects.filter(signed_off_at__isnull=False).exists()
    assert not AuditEvent.objects.filter(action="risk.sign_off").exists()


def test_a_counselor_cannot_sign_off(api, counselor, taxonomy):
    risky = _risky_candidate()
    _as(api, counselor)
    response = api.post(_url("candidate-sign-off", risky.pk), {"note": "Looks fine to me."}, format="json")
    assert response.status_code == 403
    risky.refresh_from_db()
    assert risky.has_open_risk


def test_a_get_on_a_post_only_endpoint_is_405(api, senior, candidate):
    _as(api, senior)
    assert api.get(_url("candidate-sign-off", candidate.pk)).status_code == 405
    assert api.get(_url("review-create")).status_code == 405


# --- Schema and docs --------------------------------------------------------------------------------------------


def test_the_schema_lists_every_endpoint(api):
    response = api.get(reverse("api-schema"), {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in [
        "/api/auth/token/",
        "/api/candidates/",
        "/api/candidates/{id}/",
        "/api/candidates/{id}/turns/{index}/",
        "/api/candidates/{id}/sign-off/",
        "/api/reviews/",
        "/api/runs/",
        "/api/runs/{id}/",
        "/api/runs/{id}/cancel/",
        "/api/runs/{id}/resume/",
    ]:
        assert path in paths
    assert "409" in paths["/api/candidates/{id}/turns/{index}/"]["post"]["responses"]
    assert {"knoxApiToken", "cookieAuth"} <= set(response.json()["components"]["securitySchemes"])


def test_the_docs_page_is_served_without_a_cdn(api):
    response = api.get(reverse("api-docs"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn.jsdelivr.net" not in html
