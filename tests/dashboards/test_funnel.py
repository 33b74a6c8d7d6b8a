"""Funnel and throughput: counts by stage and group, rejection criteria, flags, edits; per reviewer pace, own row
only for a counselor, suspicious fast reviews."""

import html

import pytest

from annotations.models import Adjudication, Review
from generation.models import Revision, RiskFlag
from tests import factories

from .conftest import add_review, make_campaign
from .test_views import _client, _csv

pytestmark = pytest.mark.django_db

PAGE = "/dashboards/funnel/"
API = "/api/dashboards/funnel/"


@pytest.fixture
def pipeline(taxonomy, curator, counselor, other_counselor, settings):
    """Three dialogues in a campaign: approved, rejected (adjudicated), in review. The counselor reviews all three
    (30 s, 10 s, 60 s; scores 5, 1, 3) and edits the first; the other counselor reviews two (100 s each)."""
    settings.PSYROOM_REVIEW_MIN_SECONDS = 20
    campaign, dialogues = make_campaign(curator, [counselor, other_counselor], 3)
    for dialogue, status in zip(dialogues, ["approved", "rejected", "in_review"], strict=True):
        factories.set_status(dialogue, status)
    for dialogue, score, seconds in zip(dialogues, [5, 1, 3], [30, 10, 60], strict=True):
        review = add_review(campaign, dialogue, counselor, score)
        Review.objects.filter(pk=review.pk).update(time_spent_s=seconds)
    for dialogue in dialogues[:2]:
        review = add_review(campaign, dialogue, other_counselor, 4)
        Review.objects.filter(pk=review.pk).update(time_spent_s=100)
    Revision.objects.create(
        candidate=dialogues[0], number=1, content=dialogues[0].content, author=counselor, category="clinical"
    )
    Adjudication.objects.create(
        candidate=dialogues[1], campaign=campaign, clinician=curator, decision="reject", reason="unsafe",
        revision=dialogues[1].revisions.get(number=0),
    )  # fmt: skip
    RiskFlag.objects.create(
        candidate=dialogues[1], revision=dialogues[1].revisions.get(number=0), code="self_harm", source="review"
    )
    return campaign


def test_stages_and_reasons_for_a_curator(pipeline, curator):
    data = _client(curator).get(API, {"by": "sub_emotion"}).json()
    assert data["scope"] == "all"
    assert data["stages"] == [
        {
            "group": "anxiety.1",
            "counts": {
                "total": 3, "generated": 0, "in_review": 1, "approved": 1, "rejected": 1, "needs_revision": 0,
                "adjudicated": 1, "exported": 0,
            },
        }
    ]  # fmt: skip
    rejections = {r["name"]: r["count"] for r in data["rejection_criteria"]}
    assert rejections["Rejecting reviews"] == 1 and rejections["Safety"] == 1
    assert data["risk_flags"] == [{"name": "self_harm", "count": 1}]
    assert data["edits"] == [{"name": "clinical", "count": 1}]


def test_throughput_per_reviewer(pipeline, curator, counselor):
    rows = {r["reviewer"]: r for r in _client(curator).get(API).json()["throughput"]}
    mine = rows[counselor.get_username()]
    assert mine["reviews"] == 3
    assert mine["median_seconds"] == 30
    assert mine["items_per_hour"] == pytest.approx(round(3 / (100 / 3600), 1))
    assert mine["edited_share"] == pytest.approx(0.333)
    assert mine["fast"] == 1 and mine["suspicious"] is True
    other = next(r for name, r in rows.items() if name != counselor.get_username())
    assert other["fast"] == 0 and other["suspicious"] is False and other["edited_share"] == 0


def test_campaign_policy_sets_the_floor(pipeline, curator):
    pipeline.policy = {**pipeline.policy, "min_seconds": 61}
    pipeline.save()
    data = _client(curator).get(API, {"campaign": pipeline.pk}).json()
    assert data["floor_seconds"] == 61
    assert sorted(r["fast"] for r in data["throughput"]) == [0, 3]


def test_counselor_sees_only_own_row(pipeline, counselor, other_counselor):
    data = _client(counselor).get(API).json()
    assert data["scope"] == "own" and data["stages"] == [] and data["risk_flags"] == []
    assert [r["reviewer"] for r in data["throughput"]] == [counselor.get_username()]
    page = _client(counselor).get(PAGE).content.decode()
    assert other_counselor.get_username() not in page
    assert 'id="table-stages"' not in page
    rows = _csv(_client(counselor).get(PAGE, {"format": "csv", "table": "throughput"}))
    assert [r[0] for r in rows[1:]] == [counselor.get_username()]
    assert _client(counselor).get(PAGE, {"format": "csv", "table": "stages"}).status_code == 400


def test_page_groups_and_csv(pipeline, senior):
    for by in ("run", "model", "prompt_version", "source", "sub_emotion"):
        response = _client(senior).get(PAGE, {"by": by})
        assert response.status_code == 200, by
    rows = _csv(_client(senior).get(PAGE, {"format": "csv", "table": "stages", "by": "model"}))
    assert rows[1][:2] == ["(none)", "3"]


@pytest.mark.parametrize(
    ("query", "name"),
    [({"by": "colour"}, "by"), ({"campaign": "0"}, "campaign"), ({"until": "x"}, "until"), ({"x": "1"}, "x")],
)
def test_bad_filters(pipeline, senior, query, name):
    page = _client(senior).get(PAGE, query)
    assert page.status_code == 400 and f'"{name}"' in html.unescape(page.content.decode())
    api = _client(senior).get(API, query)
    assert api.status_code == 400 and name in api.json()


def test_someone_elses_campaign_is_refused_to_a_counselor(pipeline, taxonomy, curator):
    stranger = factories.counselor()
    assert _client(stranger).get(API, {"campaign": pipeline.pk}).status_code == 400
    assert _client(stranger).get(PAGE).status_code == 200


def test_empty_and_roles(taxonomy, curator, outsider):
    assert 'id="funnel-empty"' in _client(curator).get(PAGE).content.decode()
    assert _client(outsider).get(PAGE).status_code == 403
    assert _client(None).get(PAGE).status_code == 302
    assert _client(outsider).get(API).status_code == 403


def test_index_links_each_role_to_its_dashboards(taxonomy, curator, counselor):
    links = _client(curator).get("/dashboards/").content.decode()
    assert all(url in links for url in ("/dashboards/calibration/", "/dashboards/coverage/", "/dashboards/funnel/"))
    mine = _client(counselor).get("/dashboards/").content.decode()
    assert "/dashboards/funnel/" in mine and "/dashboards/calibration/" not in mine


@pytest.mark.parametrize("url", ["/dashboards/calibration/", "/dashboards/funnel/", "/dashboards/coverage/"])
@pytest.mark.parametrize("name", ["model", "prompt_version", "campaign", "category", "by", "since"])
def test_a_nul_or_a_huge_value_is_a_400_never_a_500(taxonomy, curator, url, name):
    client = _client(curator)
    api = url.replace("/dashboards/", "/api/dashboards/")
    # A NUL, a huge number, and a lone surrogate's bytes (no valid UTF-8).
    for value in ("a%00b", "9" * 5000, "%ED%A0%80"):
        assert client.get(f"{url}?{name}={value}").status_code == 400
        assert client.get(f"{api}?{name}={value}").status_code == 400


def test_exported_counts_candidates_in_ready_releases_only(pipeline, curator, settings, tmp_path):
    from generation.models import Candidate
    from releases import services as release_services
    from releases.models import Release

    settings.PSYROOM_RELEASES_DIR = tmp_path / "releases"

    def exported() -> int:
        [row] = _client(curator).get(API, {"by": "sub_emotion"}).json()["stages"]
        return row["counts"]["exported"]

    assert exported() == 0  # and now cached
    spec = {"formats": ["sft"], "splits": {"train": 1, "seed": 0}}
    queued = release_services.release_create(name="funnel", version="1", spec=spec, user=curator, queue=False)
    Release.objects.filter(pk=queued.pk).update(status=Release.Status.BUILDING)
    approved = Candidate.objects.get(status="approved")
    from releases.models import ReleaseItem

    ReleaseItem.objects.create(
        release=queued, candidate=approved, revision=approved.approved_revision, format="sft", split="train"
    )
    assert exported() == 0  # a building release's rows do not count
    ReleaseItem.objects.all().delete()
    Release.objects.filter(pk=queued.pk).update(status=Release.Status.FAILED)
    ready = release_services.release_create(name="funnel", version="2", spec=spec, user=curator, queue=False)
    assert release_services.release_build(release=ready).status == Release.Status.READY
    assert exported() == 1  # the cached funnel is not stale
    again = release_services.release_create(name="funnel", version="3", spec=spec, user=curator, queue=False)
    release_services.release_build(release=again)
    assert exported() == 1  # a candidate in two releases is exported once
