"""Review of a multi-session course: the timeline, session and course rubrics, edits, versions, permissions."""

from pathlib import Path

import pytest
from django.urls import reverse

from annotations.models import AuditEvent, Campaign, Review
from annotations.rubrics import COURSE_RUBRIC, SESSION_RUBRIC
from annotations.services import campaigns
from generation.importers.courses import course_import_muspsy
from generation.models import Candidate, ClientProfile, Revision
from generation.selectors import course_sessions
from psyroom_admin import roles
from tests import factories

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "muspsy"
NEW_MEMORY = {
    "emotion_cognitive": "Calmer; fear of death still present.",
    "observations": "Opens up about his friend's death.",
    "assignments": "Talk to one resident in the support group.",
    "session_goal": "Reduce death anxiety.",
    "summary": "We talked about loss and support. He will join the group.",
}


@pytest.fixture
def course(curator, counselor, other_counselor):
    """The imported MusPsy course, in a campaign of the two counselors (counselors see only their campaigns)."""
    course = course_import_muspsy(
        dialogues=FIXTURES / "dialogues_1000.txt",
        memories=FIXTURES / "memories_1000.txt",
        cards=FIXTURES / "usercards_1000.txt",
    ).course
    campaigns.campaign_create(
        creator=curator, name="Courses", kind="course", overlap=2, members=[counselor, other_counselor],
        candidate_ids=[course.pk],
    )  # fmt: skip
    return course


def test_a_counselor_outside_the_course_campaign_does_not_see_it(client, course):
    stranger = factories.make_user(roles.COUNSELOR)
    client.force_login(stranger)
    assert client.get(reverse("annotations:course", args=[course.pk])).status_code == 404
    session = _session(course)
    assert client.post(reverse("annotations:session_memory", args=[session.pk]), {}).status_code == 404
    assert client.get(f"/api/courses/{course.pk}/").status_code == 404


def _session(course, n: int = 1) -> Candidate:
    return course_sessions(course=course).get(sequence=n)


def _review_data(rubric: dict, prefix: str, version: int, decision: str = "approve") -> dict:
    data = {f"{prefix}-score_{c['key']}": "4" for c in rubric["criteria"]}
    return {**data, f"{prefix}-decision": decision, f"{prefix}-comment": "", f"{prefix}-version": str(version)}


def _memory_data(session, version: int | None = None, **memory) -> dict:
    prefix = f"m{session.pk}"
    data = {f"{prefix}-{k}": v for k, v in {**NEW_MEMORY, **memory}.items()}
    return {**data, f"{prefix}-category": "clinical", f"{prefix}-reason": "memory missed the loss",
            f"{prefix}-version": str(version or session.version)}  # fmt: skip


def test_the_timeline_shows_every_session_with_its_memory_beside_its_turns(client, counselor, course):
    client.force_login(counselor)
    response = client.get(reverse("annotations:course", args=[course.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    for n in range(1, 7):
        assert f'id="session-{n}"' in page
    assert "Since the memorial at the home I can&#x27;t stop thinking about dying." in page
    assert "Li is assigned to reflect on moments during the week" in page
    # The session rubric (continuity, progress, adaptation and the PsyRoom dimensions) and the course rubric.
    for key in ("continuity", "progress_tracking", "adaptation", "empathy", "safety"):
        assert f'data-criterion="{key}"' in page
    for key in ("arc", "goal_attainment", "client_consistency"):
        assert f'data-criterion="{key}"' in page
    assert page.index("Session 1") < page.index("Session 2") < page.index("Session 6")


def test_a_session_review_is_saved_on_the_session_rubric(client, counselor, other_counselor, course):
    session = _session(course, 2)
    for n, reviewer in enumerate((counselor, other_counselor), start=1):
        client.force_login(reviewer)
        response = client.post(
            reverse("annotations:session_review", args=[session.pk]),
            _review_data(SESSION_RUBRIC, f"r{session.pk}", session.version),
        )
        assert response.status_code == 302
        session.refresh_from_db()
        # The default policy outside a campaign: two counselors (or one senior clinician) approve.
        assert session.status == (Candidate.Status.IN_REVIEW if n == 1 else Candidate.Status.APPROVED)
    review = Review.objects.filter(candidate=session).first()
    assert review.rubric.name == "MusPsy session"
    assert set(review.scores) == {c["key"] for c in SESSION_RUBRIC["criteria"]}
    assert review.decision == "approve"
    assert session.approved_revision == session.revisions.get()


def test_a_course_in_an_open_campaign_is_reviewed_there_only(client, senior, course):
    client.force_login(senior)
    response = client.post(
        reverse("annotations:course_review", args=[course.pk]),
        _review_data(COURSE_RUBRIC, "cr", course.version),
    )
    assert response.status_code == 400
    assert "is in campaign &#x27;Courses&#x27; (k=2): review it there" in response.content.decode()
    assert not Review.objects.filter(candidate=course).exists()
    course.refresh_from_db()
    assert course.status == Candidate.Status.GENERATED


def test_a_course_review_is_saved_on_the_course_rubric(client, senior, course):
    Campaign.objects.update(status=Campaign.Status.CLOSED)
    client.force_login(senior)
    response = client.post(
        reverse("annotations:course_review", args=[course.pk]),
        _review_data(COURSE_RUBRIC, "cr", course.version, decision="needs_revision"),
    )
    assert response.status_code == 302
    review = Review.objects.get(candidate=course)
    assert set(review.scores) == {"arc", "goal_attainment", "client_consistency"}
    course.refresh_from_db()
    assert course.status == Candidate.Status.NEEDS_REVISION


def test_a_review_missing_a_score_is_refused(client, counselor, course):
    session = _session(course)
    data = _review_data(SESSION_RUBRIC, f"r{session.pk}", session.version)
    del data[f"r{session.pk}-score_continuity"]
    client.force_login(counselor)
    response = client.post(reverse("annotations:session_review", args=[session.pk]), data)
    assert response.status_code == 400
    assert Review.objects.count() == 0


def test_a_memory_edit_creates_a_revision_and_keeps_the_turns(client, counselor, course):
    session = _session(course, 3)
    turns, before = session.content["turns"], session.content["memory"]
    client.force_login(counselor)
    response = client.post(reverse("annotations:session_memory", args=[session.pk]), _memory_data(session))
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.version == 2
    assert session.content == {"turns": turns, "memory": NEW_MEMORY}
    revision = session.revisions.get(number=1)
    assert revision.author == counselor and revision.category == "clinical" and revision.base_number == 0
    assert session.revisions.get(number=0).content["memory"] == before
    assert AuditEvent.objects.filter(action="session.memory_edit", candidate=session).count() == 1
    page = client.get(reverse("annotations:course", args=[course.pk])).content.decode()
    assert "He will join the group." in page


def test_a_memory_edit_on_a_stale_version_is_refused_with_409(client, counselor, other_counselor, course):
    session = _session(course)
    client.force_login(other_counselor)
    assert (
        client.post(reverse("annotations:session_memory", args=[session.pk]), _memory_data(session)).status_code == 302
    )
    client.force_login(counselor)
    stale = _memory_data(session, version=1, summary="My edit, based on version 1.")
    response = client.post(reverse("annotations:session_memory", args=[session.pk]), stale)
    assert response.status_code == 409
    assert "changed since you opened it" in response.content.decode()
    session.refresh_from_db()
    assert session.version == 2 and session.content["memory"]["summary"] == NEW_MEMORY["summary"]
    assert session.revisions.count() == 2


def test_a_stale_session_review_is_refused_with_409(client, counselor, course):
    session = _session(course)
    client.force_login(counselor)
    client.post(reverse("annotations:session_memory", args=[session.pk]), _memory_data(session))
    response = client.post(
        reverse("annotations:session_review", args=[session.pk]), _review_data(SESSION_RUBRIC, f"r{session.pk}", 1)
    )
    assert response.status_code == 409
    assert Review.objects.count() == 0


def test_an_empty_memory_field_is_refused(client, counselor, course):
    session = _session(course)
    client.force_login(counselor)
    response = client.post(
        reverse("annotations:session_memory", args=[session.pk]), _memory_data(session, assignments="")
    )
    assert response.status_code == 400
    assert session.revisions.count() == 1


def test_a_turn_of_a_session_and_the_course_fields_are_edited_as_revisions(client, counselor, course):
    session = _session(course, 2)
    client.force_login(counselor)
    prefix = f"s{session.pk}t1"
    response = client.post(
        reverse("annotations:session_turn", args=[session.pk, 1]),
        {f"{prefix}-text": "Thank you. How sure were you, when the worry came?", f"{prefix}-category": "wording",
         f"{prefix}-reason": "", f"{prefix}-version": "1"},
    )  # fmt: skip
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.content["turns"][1]["text"] == "Thank you. How sure were you, when the worry came?"
    assert session.content["memory"] == session.revisions.get(number=0).content["memory"]

    response = client.post(
        reverse("annotations:course_edit", args=[course.pk]),
        {"c-goals": "Live more calmly with the illness.", "c-notes": "Arc is good.", "c-category": "clinical",
         "c-reason": "", "c-version": str(course.version)},
    )  # fmt: skip
    assert response.status_code == 302
    course.refresh_from_db()
    assert course.content["goals"] == "Live more calmly with the illness." and course.version == 2
    assert course.content["profile"]["name"] == "李某"
    assert Revision.objects.filter(candidate=course).count() == 2


def test_anonymous_users_are_sent_to_log_in(client, course):
    session = _session(course)
    for method, url in (
        ("get", reverse("annotations:course", args=[course.pk])),
        ("post", reverse("annotations:session_memory", args=[session.pk])),
        ("post", reverse("annotations:session_review", args=[session.pk])),
        ("get", reverse("annotations:profile_edit", args=[course.profile_id])),
    ):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and response.url.startswith("/accounts/login/"), url


def test_users_without_a_role_get_403_and_non_reviewers_cannot_review_or_edit(client, outsider, curator, course):
    session = _session(course)
    client.force_login(outsider)
    assert client.get(reverse("annotations:course", args=[course.pk])).status_code == 403
    client.force_login(curator)
    # A curator may read the course but not review or edit it.
    assert client.get(reverse("annotations:course", args=[course.pk])).status_code == 200
    review = _review_data(SESSION_RUBRIC, f"r{session.pk}", session.version)
    assert client.post(reverse("annotations:session_review", args=[session.pk]), review).status_code == 403
    memory = client.post(reverse("annotations:session_memory", args=[session.pk]), _memory_data(session))
    assert memory.status_code == 403
    assert Review.objects.count() == 0 and session.revisions.count() == 1


def test_curators_edit_profiles_and_others_cannot(client, curator, counselor, course):
    profile = course.profile
    url = reverse("annotations:profile_edit", args=[profile.pk])
    data = {"name": "李某", "background": "Retired worker in a care home.", "personality": "Likes chess.",
            "assessment": "Anxiety.", "goals": "Face the illness calmly.", "language": "en"}  # fmt: skip
    client.force_login(counselor)
    assert client.get(url).status_code == 403
    assert client.post(url, data).status_code == 403
    assert ClientProfile.objects.get(pk=profile.pk).background != "Retired worker in a care home."

    client.force_login(curator)
    page = client.get(url)
    assert page.status_code == 200 and "Imported session history" in page.content.decode()
    assert client.post(url, data).status_code == 302
    assert ClientProfile.objects.get(pk=profile.pk).background == "Retired worker in a care home."
    # The course keeps the profile as it was written for.
    course.refresh_from_db()
    assert course.content["profile"]["background"].startswith("Li is an older gentleman")

    assert client.post(reverse("annotations:profile_new"), {**data, "name": ""}).status_code == 400
    assert client.post(reverse("annotations:profile_new"), {**data, "name": "Ana"}).status_code == 302
    assert ClientProfile.objects.filter(name="Ana").exists()


# --- The API ----------------------------------------------------------------------------------------------------


def test_the_api_reads_a_course_and_edits_a_memory_with_the_version_check(client, counselor, course):
    session = _session(course)
    client.force_login(counselor)
    body = client.get(f"/api/courses/{course.pk}/").json()
    assert [s["sequence"] for s in body["sessions"]] == [1, 2, 3, 4, 5, 6]
    assert body["sessions"][0]["memory"]["assignments"].startswith("Li is assigned")
    url = f"/api/sessions/{session.pk}/memory/"
    payload = {"memory": NEW_MEMORY, "version": 1, "category": "clinical", "reason": "API edit"}
    response = client.post(url, payload, content_type="application/json")
    assert response.status_code == 201 and response.json()["memory"] == NEW_MEMORY
    assert client.post(url, payload, content_type="application/json").status_code == 409
    assert session.revisions.count() == 2


def test_the_api_lets_only_curators_create_profiles(client, counselor, curator):
    payload = {"name": "Ana", "background": "A nurse."}
    client.force_login(counselor)
    assert client.post("/api/profiles/", payload, content_type="application/json").status_code == 403
    client.force_login(curator)
    response = client.post("/api/profiles/", payload, content_type="application/json")
    assert response.status_code == 201 and response.json()["name"] == "Ana"
    page = client.get("/api/profiles/").json()
    assert page["count"] == 1 and [p["name"] for p in page["results"]] == ["Ana"]
    client.logout()
    assert client.get("/api/profiles/").status_code in (401, 403)


def test_an_unparsed_memory_shows_its_raw_text_and_a_reviewer_writes_it(client, senior):
    from generation.services.runs import run_create, run_execute
    from tests.generation.scripted import ScriptedBackend

    profile = ClientProfile.objects.create(name="Mei", background="A student before her exams.")
    run = run_create(kind="course", profiles=[profile], sessions=2, count=1, turns=2)
    run_execute(run_id=run.pk, backend=ScriptedBackend(lambda prompt, call: "Some words without labels."))
    course = Candidate.objects.get(kind="course", run=run)
    session = _session(course)
    assert session.content["memory"]["unparsed"] is True
    client.force_login(senior)
    page = client.get(reverse("annotations:course", args=[course.pk])).content.decode()
    assert "could not be read" in page and "Some words without labels." in page
    response = client.post(reverse("annotations:session_memory", args=[session.pk]), _memory_data(session))
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.content["memory"] == NEW_MEMORY
    assert session.revisions.get(number=0).content["memory"]["raw"] == "Some words without labels."


def test_the_candidate_page_of_a_course_or_session_links_to_the_timeline(client, senior, course):
    client.force_login(senior)
    timeline = reverse("annotations:course", args=[course.pk])
    assert timeline in client.get(reverse("annotations:candidate", args=[course.pk])).content.decode()
    session_page = client.get(reverse("annotations:candidate", args=[_session(course, 2).pk]))
    assert session_page.status_code == 200 and f"{timeline}#session-2" in session_page.content.decode()
