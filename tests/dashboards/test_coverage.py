"""Coverage: counts per sub-emotion against the quota, the heat map, and filling the gaps through the run service."""

import html

import pytest
from kombu.exceptions import OperationalError

from generation.models import GenerationRun
from generation.services import runs as run_services
from tests import factories

from .test_views import _client, _csv

pytestmark = pytest.mark.django_db

PAGE = "/dashboards/coverage/"
FILL = "/dashboards/coverage/fill/"
API = "/api/dashboards/coverage/"


@pytest.fixture
def stock(taxonomy, settings):
    """Quota 3: anxiety.1 has 2 approved and 1 waiting (full); anxiety.2 has 1 approved (2 missing); fear.0 one
    rejected (3 missing); every other sub-emotion has nothing (3 missing)."""
    settings.PSYROOM_COVERAGE_QUOTA = 3
    for key, status in [
        ("anxiety.1", "approved"),
        ("anxiety.1", "approved"),
        ("anxiety.1", "in_review"),
        ("anxiety.2", "approved"),
        ("fear.0", "rejected"),
    ]:
        factories.make_candidate(content=factories.dialogue_content(prefix=f"{key} {status} "), sub_emotion_key=key,
                                 status=status)  # fmt: skip


@pytest.fixture
def queued(monkeypatch):
    ids = []
    monkeypatch.setattr(run_services, "run_queue", ids.append)
    return ids


def test_counts_and_gaps(stock):
    from dashboards.selectors.coverage import coverage_get

    coverage = coverage_get()
    assert len(coverage.categories) == 8
    subs = {s.key: s for c in coverage.categories for s in c.subs}
    assert len(subs) == 35
    assert (subs["anxiety.1"].generated, subs["anxiety.1"].waiting, subs["anxiety.1"].approved) == (3, 1, 2)
    assert subs["anxiety.1"].missing == 0
    assert subs["anxiety.2"].missing == 2
    assert subs["fear.0"].generated == 1 and subs["fear.0"].missing == 3
    assert coverage.missing == 2 + 33 * 3


def test_released_counts_what_ready_releases_hold(stock, curator, settings, tmp_path):
    from dashboards.selectors.coverage import coverage_get
    from releases import services as release_services
    from releases.models import Release

    settings.PSYROOM_RELEASES_DIR = tmp_path / "releases"
    assert {s.released for c in coverage_get().categories for s in c.subs} == {0}
    # (the two approved anxiety.1 dialogues have the same text: exact dedup is off to keep both)
    spec = {
        "formats": ["sft"],
        "sub_emotions": ["anxiety.1"],
        "splits": {"train": 1, "seed": 0},
        "dedup": {"exact": False},
    }
    release = release_services.release_create(name="cov", version="1", spec=spec, user=curator, queue=False)
    queued = release_services.release_create(
        name="cov", version="2", spec={**spec, "sub_emotions": ["anxiety.2"]}, user=curator, queue=False
    )
    assert release_services.release_build(release=release).status == Release.Status.READY
    release_services.release_cancel(release=queued, user=curator)
    coverage = coverage_get()
    subs = {s.key: s for c in coverage.categories for s in c.subs}
    assert (subs["anxiety.1"].approved, subs["anxiety.1"].released) == (2, 2)
    assert subs["anxiety.2"].released == 0  # its release was cancelled before it was built
    assert sum(s.released for s in subs.values()) == 2
    [anxiety] = [c for c in coverage.categories if c.key == "anxiety"]
    assert anxiety.released == 2
    body = html.unescape(_client(curator).get(PAGE).content.decode())
    assert "2 approved, 2 released" in body
    api = _client(curator).get(API).json()
    [api_sub] = [s for c in api["categories"] for s in c["subs"] if s["key"] == "anxiety.1"]
    assert api_sub["released"] == 2
    rows = _csv(_client(curator).get(PAGE, {"format": "csv", "table": "sub_emotions"}))
    assert rows[0][6] == "Released" and {r[1]: r[6] for r in rows[1:]}["anxiety.1"] == "2"


def test_page_and_api(stock, senior, curator, counselor):
    page = _client(senior).get(PAGE)
    assert page.status_code == 200
    body = page.content.decode()
    assert 'class="heat heat-3"' in body  # anxiety.1: 2 of 3 approved
    assert 'id="coverage-fill"' not in body  # a senior clinician starts no runs
    assert 'id="coverage-fill"' in _client(curator).get(PAGE).content.decode()
    rows = _csv(_client(senior).get(PAGE, {"format": "csv", "table": "sub_emotions"}))
    assert rows[0][-1] == "Missing" and len(rows) == 36
    data = _client(curator).get(API).json()
    assert data["quota"] == 3 and data["missing"] == 101
    assert _client(counselor).get(PAGE).status_code == 403
    assert _client(counselor).get(API).status_code == 403
    assert _client(senior).get(PAGE, {"colour": "red"}).status_code == 400
    assert "colour" in _client(senior).get(API, {"colour": "red"}).json()


def test_fill_one_gap_starts_one_run_and_shows_it(stock, curator, queued):
    response = _client(curator).post(FILL, {"sub_emotion": "anxiety.2"})
    run = GenerationRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert run.count == 2 and [t["sub_emotion"] for t in run.targets] == ["anxiety.2"]
    assert run.created_by == curator


def test_fill_every_gap_groups_by_size(stock, curator, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _client(curator).post(FILL)
    runs = {run.count // len(run.targets): run for run in GenerationRun.objects.all()}
    assert sorted(runs) == [2, 3]
    assert [t["sub_emotion"] for t in runs[2].targets] == ["anxiety.2"]
    assert len(runs[3].targets) == 33 and runs[3].count == 99
    assert sorted(queued) == sorted(r.pk for r in runs.values())


def test_fill_respects_roles_limit_and_queue(stock, senior, curator, settings, monkeypatch):
    assert _client(senior).post(FILL).status_code == 403
    assert _client(curator).get(FILL).status_code == 405
    settings.PSYROOM_RUNS_PER_USER = 1
    monkeypatch.setattr(run_services, "run_queue", lambda run_id: None)
    client = _client(curator)
    response = client.post(FILL, follow=True)
    assert GenerationRun.objects.count() == 1
    assert "Some gaps were left" in html.unescape(response.content.decode())
    response = client.post(FILL, {"sub_emotion": "fear.0"}, follow=True)
    assert GenerationRun.objects.count() == 1
    assert "at most 1" in html.unescape(response.content.decode())


@pytest.mark.django_db(transaction=True)
def test_fill_when_the_queue_is_down_says_so(stock, curator, monkeypatch):
    # A real commit, so that the run is queued (and refused) inside run_create, as in production.
    def down(run_id):
        raise OperationalError("Connection refused.")

    monkeypatch.setattr(run_services, "run_task_send", down)
    response = _client(curator).post(FILL, {"sub_emotion": "fear.0"}, follow=True)
    assert response.redirect_chain[-1][0] == PAGE
    assert GenerationRun.objects.count() == 0
    assert "messages" in response.context and any("queue" in str(m).lower() for m in response.context["messages"])


def test_fill_nothing_missing(stock, curator, queued):
    response = _client(curator).post(FILL, {"sub_emotion": "anxiety.1"}, follow=True)
    assert GenerationRun.objects.count() == 0
    assert "nothing is missing" in html.unescape(response.content.decode())
