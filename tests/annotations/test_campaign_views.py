"""The campaign pages: who may open what, the review screen, drafts, idempotent submits, flags and adjudication."""

import json
import re
import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from annotations.models import Adjudication, Assignment, AuditEvent, Campaign, CampaignItem, Draft, Review
from annotations.rubrics import DIALOGUE_RUBRIC
from annotations.selectors import queues
from annotations.services import campaigns, edits, queue, reviews
from generation.models import Candidate, GenerationRun
from psyroom_admin import roles
from tests import factories

pytestmark = pytest.mark.django_db

JSON = {"HTTP_ACCEPT": "application/json"}
KEYS = [c["key"] for c in DIALOGUE_RUBRIC["criteria"]]


def _risky_candidate():
    content = factories.dialogue_content()
    content["turns"][0]["text"] = "Sometimes I think everyone would be better off dead without me."
    return factories.make_candidate(content=content)


def _campaign(creator, members, candidates, *, overlap=2, blind=True, guidelines="") -> Campaign:
    return campaigns.campaign_create(
        creator=creator,
        name="Exam anxiety",
        kind="dialogue",
        overlap=overlap,
        members=members,
        guidelines=guidelines,
        blind=blind,
        candidate_ids=[c.pk for c in candidates],
    )


def _review_data(candidate, decision="approve", score=4, **extra) -> dict:
    data = {f"score_{key}": str(score) for key in KEYS}
    return {"decision": decision, "comment": "", "version": candidate.version, **data, **extra}


def _claim(client, campaign) -> int:
    """Take the next item through the page (a POST: **Review next**) and return its candidate id."""
    response = client.post(reverse("annotations:campaign_next", args=[campaign.pk]))
    assert response.status_code == 302, response.content[:500]
    return int(response["Location"].rstrip("/").split("/")[-1])


@pytest.fixture
def setup(taxonomy, counselor, senior, curator):
    roles.roles_ensure()
    candidates = [factories.make_candidate() for _ in range(3)]
    campaign = _campaign(curator, [counselor, senior], candidates)
    assignment = queue.queue_claim_next(campaign=campaign, counselor=counselor)
    item = assignment.item
    reviews.review_submit(
        candidate=item.candidate,
        assignment=queue.queue_claim_next(campaign=campaign, counselor=senior),
        reviewer=senior,
        scores=dict.fromkeys(KEYS, 2),
        decision="reject",
        comment="Turn 2 dismisses the client.",
        base_version=1,
    )
    return {"campaign": campaign, "item": item, "candidate": item.candidate}


def _urls(setup) -> dict[str, tuple[str, str, dict]]:
    c, pk = setup["campaign"].pk, setup["candidate"].pk
    item = setup["item"].pk
    return {
        "list": ("get", reverse("annotations:campaign_list"), {}),
        "create": ("get", reverse("annotations:campaign_create"), {}),
        "guidelines": ("get", reverse("annotations:campaign_guidelines", args=[c]), {}),
        "next": ("get", reverse("annotations:campaign_next", args=[c]), {}),
        "claim": ("post", reverse("annotations:campaign_next", args=[c]), {}),
        "item": ("get", reverse("annotations:campaign_item", args=[c, pk]), {}),
        "preview": ("get", reverse("annotations:campaign_item_preview", args=[c, pk]), {}),
        "submit": ("post", reverse("annotations:campaign_submit", args=[c, pk]), {}),
        "draft": ("post", reverse("annotations:campaign_draft", args=[c, pk]), {}),
        "release": ("post", reverse("annotations:campaign_release", args=[c, pk]), {}),
        "regenerate": ("post", reverse("annotations:campaign_regenerate", args=[c, pk]), {}),
        "adjudication_list": ("get", reverse("annotations:adjudication_list"), {}),
        "adjudication_item": ("get", reverse("annotations:adjudication_item", args=[item]), {}),
        "adjudicate": ("post", reverse("annotations:adjudication_item", args=[item]), {}),
        "adjudication_sign_off": ("post", reverse("annotations:adjudication_sign_off", args=[item]), {}),
    }


# Expected status per view and role. The counselor holds a claim on the item; "stranger" is a counselor who is not
# a member; the senior clinician is a member; the curator made the campaign. Empty POSTs: 400 where the form
# answers, a redirect where the view does.
MATRIX = {
    #                        counselor stranger curator senior outsider
    "list": (200, 200, 200, 200, 403),
    "create": (403, 403, 200, 403, 403),
    "guidelines": (200, 404, 200, 200, 403),
    # GET: the counselor goes to the item they hold; the senior, who holds none, is shown the claim button.
    "next": (302, 404, 403, 200, 403),
    "claim": (302, 404, 403, 302, 403),
    "item": (200, 404, 403, 302, 403),
    "preview": (200, 404, 403, 200, 403),
    "submit": (400, 404, 403, 400, 403),
    "draft": (200, 404, 403, 200, 403),
    "release": (302, 404, 403, 302, 403),
    "regenerate": (302, 404, 403, 302, 403),
    "adjudication_list": (403, 403, 403, 200, 403),
    "adjudication_item": (403, 403, 403, 200, 403),
    "adjudicate": (403, 403, 403, 400, 403),
    "adjudication_sign_off": (403, 403, 403, 400, 403),
}
ROLES = ("counselor", "stranger", "curator", "senior", "outsider")


def test_anonymous_is_sent_to_the_login_page_everywhere(client, setup):
    for name, (method, url, data) in _urls(setup).items():
        response = getattr(client, method)(url, data)
        assert (name, response.status_code) == (name, 302)
        assert response["Location"] == f"/accounts/login/?next={url}"


@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(client, setup, counselor, other_counselor, curator, senior, outsider, role):
    """Every view, for one role: the status codes of MATRIX (one setup per role keeps this fast)."""
    users = {"counselor": counselor, "stranger": other_counselor, "curator": curator, "senior": senior}
    users["outsider"] = outsider
    client.force_login(users[role])
    got, expected = {}, {}
    # Reads first: a skip or a submit changes what the next view answers.
    for name in sorted(MATRIX, key=lambda n: _urls(setup)[n][0] == "post"):
        method, url, data = _urls(setup)[name]
        if name == "draft":
            response = client.post(url, data="{}", content_type="application/json")
        else:
            response = getattr(client, method)(url, data)
        got[name] = response.status_code
        expected[name] = MATRIX[name][ROLES.index(role)]
    assert got == expected


def test_a_counselor_lists_only_their_campaigns_with_progress(client, setup, curator, other_counselor, taxonomy):
    _campaign(curator, [other_counselor], [factories.make_candidate()])
    client.force_login(setup["item"].assignments.get(status="claimed").counselor)
    page = client.get(reverse("annotations:campaign_list"))
    assert [row["campaign"].pk for row in page.context["rows"]] == [setup["campaign"].pk]
    assert page.context["rows"][0]["progress"] == {
        "items": 3,
        "reviews_done": 1,
        "reviews_needed": 6,
        "adjudication": 0,
        "decided": 0,
    }
    client.force_login(curator)
    assert len(client.get(reverse("annotations:campaign_list")).context["rows"]) == 2


# --- Creating a campaign ----------------------------------------------------------------------------------------


def test_a_curator_creates_a_campaign_from_an_id_file(client, curator, counselor, senior, taxonomy):
    candidates = [factories.make_candidate() for _ in range(2)]
    client.force_login(curator)
    ids = SimpleUploadedFile("ids.txt", "\n".join(str(c.pk) for c in candidates).encode())
    response = client.post(
        reverse("annotations:campaign_create"),
        {
            "name": "Pilot",
            "kind": "dialogue",
            "overlap": 2,
            "members": [counselor.pk, senior.pk],
            "guidelines": "# Rate *carefully*",
            "blind": "on",
            "min_mean": "3.5",
            "lease_minutes": 20,
            "id_file": ids,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    campaign = Campaign.objects.get(name="Pilot")
    assert sorted(campaign.items.values_list("candidate_id", flat=True)) == sorted(c.pk for c in candidates)
    assert set(campaign.members.all()) == {counselor, senior}
    assert (campaign.overlap, campaign.blind, campaign.lease_seconds) == (2, True, 1200)
    assert campaign.policy["min_mean"] == 3.5


def test_an_id_file_with_unknown_ids_creates_nothing(client, curator, counselor, taxonomy):
    client.force_login(curator)
    ids = SimpleUploadedFile("ids.txt", b"999991\n999992\n")
    response = client.post(
        reverse("annotations:campaign_create"),
        {
            "name": "Bad",
            "kind": "dialogue",
            "overlap": 1,
            "members": [counselor.pk],
            "lease_minutes": 30,
            "min_mean": "3",
            "id_file": ids,
        },
    )
    assert response.status_code == 400
    assert "999991" in response.content.decode()
    assert not Campaign.objects.filter(name="Bad").exists()


def test_guidelines_are_rendered_from_markdown_without_raw_html(client, curator, counselor, taxonomy):
    campaign = _campaign(curator, [counselor], [factories.make_candidate()], guidelines="# Be kind\n<script>x</script>")
    client.force_login(counselor)
    html = client.get(reverse("annotations:campaign_guidelines", args=[campaign.pk])).content.decode()
    assert "<h1>Be kind</h1>" in html
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html


# --- Claiming is a POST ------------------------------------------------------------------------------------------


def _queue_rows() -> tuple:
    """What a claim writes: assignments (with their status and lease) and the audit events."""
    return (
        sorted(Assignment.objects.values_list("pk", "status", "lease_expires_at")),
        AuditEvent.objects.count(),
    )


def test_a_get_of_review_next_claims_nothing_and_shows_the_claim_button(client, setup, other_counselor, curator):
    campaign = setup["campaign"]
    campaign.members.add(other_counselor)
    client.force_login(other_counselor)
    before = _queue_rows()
    url = reverse("annotations:campaign_next", args=[campaign.pk])
    for _ in range(3):
        response = client.get(url)
        assert response.status_code == 200
        html = response.content.decode()
        assert 'id="claim-next"' in html
        assert re.search(
            rf'<form method="post" action="{url}" class="claim-form">\s*<input type="hidden" name="csrf', html
        )
    # Nor does the list (its "Review next" is a form that POSTs), nor an item's page, nor its preview.
    listing = client.get(reverse("annotations:campaign_list")).content.decode()
    assert f'<form method="post" action="{url}" class="claim-form">' in listing
    assert f'href="{url}"' not in listing
    item = reverse("annotations:campaign_item", args=[campaign.pk, setup["candidate"].pk])
    assert client.get(item).status_code == 302
    assert (
        client.get(reverse("annotations:campaign_item_preview", args=[campaign.pk, setup["candidate"].pk])).status_code
        == 200
    )
    assert _queue_rows() == before
    assert not Assignment.objects.filter(counselor=other_counselor).exists()


def test_review_next_claims_on_post_and_a_get_then_shows_the_claim_held(client, setup, other_counselor):
    campaign = setup["campaign"]
    campaign.members.add(other_counselor)
    client.force_login(other_counselor)
    url = reverse("annotations:campaign_next", args=[campaign.pk])
    claimed = client.post(url)
    assert claimed.status_code == 302
    assignment = Assignment.objects.get(counselor=other_counselor)
    assert assignment.status == Assignment.Status.CLAIMED
    item_url = reverse("annotations:campaign_item", args=[campaign.pk, assignment.item.candidate_id])
    assert claimed["Location"] == item_url
    before = _queue_rows()
    # A GET now goes to the item held; the item's page shows it; a second POST hands back the same claim.
    assert client.get(url)["Location"] == item_url
    assert client.get(item_url).status_code == 200
    assert _queue_rows() == before
    assert client.post(url)["Location"] == item_url
    assert Assignment.objects.filter(counselor=other_counselor).count() == 1


def test_a_get_of_review_next_with_nothing_left_says_so_and_writes_nothing(client, taxonomy, curator, counselor):
    campaign = _campaign(curator, [counselor], [], overlap=1)
    client.force_login(counselor)
    before = _queue_rows()
    response = client.get(reverse("annotations:campaign_next", args=[campaign.pk]))
    assert response.status_code == 200
    assert b'id="queue-empty"' in response.content and b'id="claim-next"' not in response.content
    assert _queue_rows() == before


def test_claiming_needs_the_csrf_token(setup, other_counselor):
    campaign = setup["campaign"]
    campaign.members.add(other_counselor)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(other_counselor)
    url = reverse("annotations:campaign_next", args=[campaign.pk])
    # A form posted from another site carries no token: refused, nothing claimed.
    forged = browser.post(url)
    assert forged.status_code == 403
    assert not Assignment.objects.filter(counselor=other_counselor).exists()
    # The claim button's form carries the token: the same POST from it claims.
    page = browser.get(url).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    claimed = browser.post(url, {"csrfmiddlewaretoken": token})
    assert claimed.status_code == 302
    assert Assignment.objects.get(counselor=other_counselor).status == Assignment.Status.CLAIMED


def test_after_a_submit_without_javascript_the_next_item_is_one_click_away(client, setup, counselor):
    client.force_login(counselor)
    campaign, candidate = setup["campaign"], setup["candidate"]
    url = reverse("annotations:campaign_submit", args=[campaign.pk, candidate.pk])
    response = client.post(url, _review_data(candidate), follow=True)
    assert response.redirect_chain == [(reverse("annotations:campaign_next", args=[campaign.pk]), 302)]
    assert b'id="claim-next"' in response.content
    # The submit claimed nothing new: the counselor's only assignment is the one submitted.
    assert list(Assignment.objects.filter(counselor=counselor).values_list("status", flat=True)) == ["submitted"]


# --- The review screen ------------------------------------------------------------------------------------------


def test_the_review_screen_shows_the_rubric_prefetches_the_next_item_and_hides_others_in_a_blind_campaign(
    client, setup, counselor
):
    client.force_login(counselor)
    pk = _claim(client, setup["campaign"])
    assert pk == setup["candidate"].pk
    html = client.get(reverse("annotations:campaign_item", args=[setup["campaign"].pk, pk])).content.decode()
    for criterion in DIALOGUE_RUBRIC["criteria"]:
        assert escape(criterion["anchors"]["5"]) in html
    peek = queues.queue_peek_next(campaign=setup["campaign"], counselor=counselor)
    assert (
        f'rel="prefetch" id="prefetch-next" href="/campaigns/{setup["campaign"].pk}/items/{peek.pk}/preview/"' in html
    )
    # Blind: the senior clinician's review of another item is never shown, nor the AI review section.
    assert "Turn 2 dismisses the client." not in html
    assert 'id="ai-review-title"' not in html
    assert 'id="shortcut-help"' in html


def test_a_submit_is_recorded_once_whatever_the_retries(client, setup, counselor):
    client.force_login(counselor)
    campaign, candidate = setup["campaign"], setup["candidate"]
    url = reverse("annotations:campaign_submit", args=[campaign.pk, candidate.pk])
    data = _review_data(candidate, comment="Warm and safe.", idempotency_key="k-123", time_spent_s="42")
    first = client.post(url, data, **JSON)
    again = client.post(url, data, **JSON)
    assert first.status_code == again.status_code == 200
    assert first.json()["review"] == again.json()["review"]
    assert first.json()["next"] == reverse("annotations:campaign_next", args=[campaign.pk])
    review = Review.objects.get(reviewer=counselor)
    assert (review.campaign, review.comment, review.time_spent_s, review.idempotency_key) == (
        campaign,
        "Warm and safe.",
        42,
        "k-123",
    )
    assert Assignment.objects.get(item=setup["item"], counselor=counselor).status == "submitted"


@pytest.mark.django_db(transaction=True)
def test_twin_submits_at_once_save_one_review_and_every_answer_says_saved(taxonomy, curator, counselor):
    """The screen's retried submit raced its first try: each twin, in its own thread and database connection, must be
    told the review was saved (once), none that the slot is "submitted, not claimed"."""
    campaign = _campaign(curator, [counselor], [factories.make_candidate()], overlap=1)
    assignment = queue.queue_claim_next(campaign=campaign, counselor=counselor)
    candidate = assignment.item.candidate
    url = reverse("annotations:campaign_submit", args=[campaign.pk, candidate.pk])
    data = _review_data(candidate, idempotency_key=f"assignment-{assignment.pk}")
    twins = 8
    barrier = threading.Barrier(twins)
    answers: list = [None] * twins

    def fire(i: int) -> None:
        try:
            browser = Client()
            browser.force_login(counselor)
            barrier.wait()
            response = browser.post(url, data, **JSON)
            answers[i] = (response.status_code, response.json())
        finally:
            connection.close()

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(twins)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    review = Review.objects.get(reviewer=counselor)
    assert (
        answers
        == [(200, {"review": review.pk, "next": reverse("annotations:campaign_next", args=[campaign.pk])})] * twins
    )


def test_a_submit_without_scores_is_refused_with_the_fields_named(client, setup, counselor):
    client.force_login(counselor)
    url = reverse("annotations:campaign_submit", args=[setup["campaign"].pk, setup["candidate"].pk])
    response = client.post(url, {"decision": "approve", "version": 1}, **JSON)
    assert response.status_code == 400
    assert "score_empathy" in response.json()["errors"]
    assert not Review.objects.filter(reviewer=counselor).exists()


def test_a_draft_is_saved_and_comes_back(client, setup, counselor):
    client.force_login(counselor)
    url = reverse("annotations:campaign_draft", args=[setup["campaign"].pk, setup["candidate"].pk])
    data = {"scores": {"empathy": "4"}, "comment": "half-way", "decision": "reject", "time_spent_s": 12}
    assert client.post(url, json.dumps(data), content_type="application/json").status_code == 200
    assert Draft.objects.get(user=counselor, candidate=setup["candidate"]).data["comment"] == "half-way"
    assert client.get(url).json()["data"]["scores"] == {"empathy": "4"}
    page = client.get(reverse("annotations:campaign_item", args=[setup["campaign"].pk, setup["candidate"].pk]))
    assert page.context["server_draft"]["data"]["comment"] == "half-way"
    assert page.context["server_draft"]["saved_at"] > 0
    assert client.post(url, "[1]", content_type="application/json").status_code == 400


def test_a_flagged_item_is_hidden_behind_a_warning_and_cannot_be_approved(client, taxonomy, curator, counselor):
    risky = _risky_candidate()
    campaign = _campaign(curator, [counselor], [risky], overlap=1)
    client.force_login(counselor)
    assert _claim(client, campaign) == risky.pk
    html = client.get(reverse("annotations:campaign_item", args=[campaign.pk, risky.pk])).content.decode()
    assert 'id="content-warning"' in html
    assert 'id="item-content" class="item-content" hidden' in html
    assert 'value="approve" id="id_decision_0"\n                       \n                       disabled' in html or (
        'disabled aria-describedby="approve-blocked"' in html
    )
    url = reverse("annotations:campaign_submit", args=[campaign.pk, risky.pk])
    response = client.post(url, _review_data(risky), **JSON)
    assert response.status_code == 400
    assert "senior clinician" in json.dumps(response.json())
    assert not Review.objects.exists()


def test_an_edited_turn_shows_a_word_diff_against_the_model_text(client, setup, counselor):
    candidate = setup["candidate"]
    edits.turn_edit(
        candidate=candidate,
        editor=counselor,
        index=1,
        text="Counselor turn 0: That sounds very hard. What helps?",
        base_version=1,
        category="wording",
    )
    client.force_login(counselor)
    html = client.get(reverse("annotations:campaign_item", args=[setup["campaign"].pk, candidate.pk])).content.decode()
    assert "That sounds <ins>very </ins>hard. What <del>helps you?</del><ins>helps?</ins>" in html
    # The item's history lists the edit.
    assert '<span class="history-action">candidate.edit</span>' in html


def test_regenerate_with_critique_queues_a_run_and_needs_a_critique(client, setup, counselor):
    client.force_login(counselor)
    url = reverse("annotations:campaign_regenerate", args=[setup["campaign"].pk, setup["candidate"].pk])
    before = GenerationRun.objects.count()
    refused = client.post(url, {"critique": "  "}, follow=True)
    assert "a critique is required" in refused.content.decode()
    assert GenerationRun.objects.count() == before
    response = client.post(url, {"critique": "Explore the fear of failing before giving advice."})
    assert response.status_code == 302
    run = GenerationRun.objects.latest("pk")
    assert GenerationRun.objects.count() == before + 1
    assert "Explore the fear of failing" in json.dumps([run.parameters, run.targets], default=str)


def test_skip_releases_the_claim(client, setup, counselor):
    client.force_login(counselor)
    response = client.post(reverse("annotations:campaign_release", args=[setup["campaign"].pk, setup["candidate"].pk]))
    assert response.status_code == 302
    assert Assignment.objects.get(item=setup["item"], counselor=counselor).status == "released"


# --- Three counselors and a senior clinician, to adjudication ----------------------------------------------------


def test_three_counselors_and_a_senior_clinician_work_a_blind_campaign_to_adjudication(
    client, taxonomy, curator, senior
):
    counselors = [factories.counselor() for _ in range(3)]
    candidates = [factories.make_candidate() for _ in range(6)]
    campaign = _campaign(curator, [*counselors, senior], candidates, overlap=2)
    # The first two approve everything they get; the third rejects, so every item the third saw is disputed.
    decisions = {counselors[0]: "approve", counselors[1]: "approve", counselors[2]: "reject"}
    active = list(counselors)
    rounds = 0
    while active and rounds < 50:
        rounds += 1
        for person in list(active):
            client.force_login(person)
            response = client.post(reverse("annotations:campaign_next", args=[campaign.pk]))
            if response.status_code == 200:
                assert b'id="queue-empty"' in response.content
                active.remove(person)
                continue
            pk = int(response["Location"].rstrip("/").split("/")[-1])
            page = client.get(response["Location"])
            assert page.status_code == 200
            # Blind: no other counselor's comment is ever on the page.
            for other in counselors:
                if other != person:
                    assert f"comment by {other.username}".encode() not in page.content
            candidate = Candidate.objects.get(pk=pk)
            result = client.post(
                reverse("annotations:campaign_submit", args=[campaign.pk, pk]),
                _review_data(
                    candidate,
                    decisions[person],
                    comment=f"comment by {person.username}",
                    idempotency_key=f"{person.pk}-{pk}",
                ),
                **JSON,
            )
            assert result.status_code == 200, result.content
    assert not active

    items = list(CampaignItem.objects.filter(campaign=campaign))
    for item in items:
        assert item.assignments.filter(status="submitted").count() <= 2
        assert Review.objects.filter(campaign=campaign, candidate=item.candidate).count() == item.reviews_done == 2
        assert item.state in ("decided", "adjudication")
    assert Review.objects.filter(campaign=campaign).count() == 12
    disputed = [i for i in items if i.state == "adjudication"]
    assert disputed, "the third counselor's rejections must send items to adjudication"
    for item in items:
        if item.state == "decided":
            assert item.candidate.status == Candidate.Status.APPROVED

    client.force_login(senior)
    queue = client.get(reverse("annotations:adjudication_list"))
    assert {i.pk for i in queue.context["items"]} == {i.pk for i in disputed}
    for item in disputed:
        page = client.get(reverse("annotations:adjudication_item", args=[item.pk]))
        assert page.status_code == 200
        html = page.content.decode()
        for review in Review.objects.filter(candidate=item.candidate):
            assert review.comment in html and review.reviewer.username in html
        response = client.post(
            reverse("annotations:adjudication_item", args=[item.pk]),
            {"decision": "reject", "reason": "Turn 2 misses the fear of failing.", "version": item.candidate.version},
        )
        assert response.status_code == 302, response.content.decode()[:2000]
    for item in disputed:
        item.refresh_from_db()
        item.candidate.refresh_from_db()
        assert item.state == "decided"
        assert item.candidate.status == Candidate.Status.REJECTED
    assert Adjudication.objects.filter(campaign=campaign).count() == len(disputed)
    assert not client.get(reverse("annotations:adjudication_list")).context["items"]


def test_a_one_character_edit_of_a_chinese_turn_shows_that_character_only():
    """The diff of a real CPsyCounD client turn: two characters changed, not the sentence deleted and rewritten."""
    from annotations.templatetags.campaign_tags import text_diff

    turn = "我丈夫和我婆婆一起生活，我们之间有很多矛盾，我感到很压抑。"  # CPsyCounD case 10, the client's second turn
    edited = "我丈夫和我公公一起生活，我们之间有很多矛盾，我感到很压抑。"
    changed = "我丈夫和我<del>婆婆</del><ins>公公</ins>一起生活，我们之间有很多矛盾，我感到很压抑。"
    assert text_diff(turn, edited) == changed
    # Mixed text: Chinese by character, English by word, markup escaped.
    assert text_diff("我用了CBT <b>方法", "我用过CBT <b>方法") == "我用<del>了</del><ins>过</ins>CBT &lt;b&gt;方法"
    assert text_diff("What helps you?", "What helped you?") == "What <del>helps</del><ins>helped</ins> you?"


def test_the_revisions_card_shows_what_each_edit_changed(client, setup, counselor):
    candidate = setup["candidate"]
    original = candidate.content["turns"][1]["text"]
    edits.turn_edit(
        candidate=candidate, editor=counselor, index=1, text=original + " 我们慢慢来。", base_version=1,
        category="wording",
    )  # fmt: skip
    client.force_login(counselor)
    html = client.get(reverse("annotations:campaign_item", args=[setup["campaign"].pk, candidate.pk])).content.decode()
    revisions = html[html.index('id="revisions"') :]
    assert '<span class="muted small">turn 2 (counselor)</span>' in revisions
    assert f"{original}<ins> 我们慢慢来。</ins>" in revisions
