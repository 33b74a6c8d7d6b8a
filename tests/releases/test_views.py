"""The Releases page: who sees it, the live count, create, status, the card, downloads and the zip."""

import io
import zipfile

import pytest
from django.urls import reverse

from annotations.models import AuditEvent
from psyroom_admin import roles
from releases import services
from releases.models import Release
from tests import factories

pytestmark = pytest.mark.django_db

FORM = {
    "name": "spring", "version": "1.0.0", "formats": ["sft"], "train": "1", "validation": "0", "test": "0",
    "seed": "0", "exact_dedup": "on", "pii_action": "block", "parquet": "on",
}  # fmt: skip


@pytest.fixture
def admin(db):
    return factories.make_user(roles.ADMIN)


@pytest.fixture
def ready(taxonomy, build):
    factories.make_candidate(status="approved")
    return build({"formats": ["sft"], "splits": {"train": 1, "seed": 0}}, name="spring")


@pytest.mark.parametrize(
    ("who", "expected"),
    [("curator", 200), ("admin", 200), ("counselor", 404), ("senior", 404), ("outsider", 404)],
)
def test_only_curators_and_admins_see_releases(client, request, ready, who, expected):
    client.force_login(request.getfixturevalue(who))
    for url in (
        reverse("release_pages:releases"),
        reverse("release_pages:release-new"),
        reverse("release_pages:release", args=[ready.pk]),
        reverse("release_pages:release-status", args=[ready.pk]),
        reverse("release_pages:release-file", args=[ready.pk, "sft/train.jsonl"]),
        reverse("release_pages:release-zip", args=[ready.pk]),
    ):
        assert client.get(url).status_code == expected, url
    page = client.get(reverse("annotations:queue"))
    assert (b'href="/releases/"' in page.content) == (expected == 200)


def test_anonymous_users_are_sent_to_log_in(client, ready):
    assert client.get(reverse("release_pages:releases")).status_code == 302


def test_the_list_shows_name_version_status_and_counts(client, curator, ready):
    client.force_login(curator)
    page = client.get(reverse("release_pages:releases")).content.decode()
    assert "spring" in page and ready.version in page and "Ready" in page


def test_the_live_count_says_what_the_spec_selects(client, curator, taxonomy):
    factories.make_candidate(status="approved")
    factories.make_candidate(status="approved", sub_emotion_key="anger.1")
    factories.make_candidate()  # not approved
    client.force_login(curator)
    url = reverse("release_pages:release-count")
    page = client.post(url, {**FORM, "name": ""}).content.decode()
    assert "<strong>2</strong> candidates selected: 2 dialogues" in page
    page = client.post(url, {**FORM, "sub_emotions": ["anger.1"]}).content.decode()
    assert "<strong>1</strong> candidate selected" in page
    page = client.post(url, {**FORM, "languages": ["zh"]}).content.decode()
    assert "<strong>0</strong>" in page and "nothing to build" in page
    page = client.post(url, {**FORM, "train": "0.5"}).content.decode()
    assert "must sum to 1" in page
    client.force_login(factories.make_user(roles.COUNSELOR))
    assert client.post(url, FORM).status_code == 404


def test_a_curator_creates_a_release_and_watches_it(client, curator, taxonomy, monkeypatch):
    factories.make_candidate(status="approved")
    queued = []
    monkeypatch.setattr(services, "_enqueue", queued.append)
    client.force_login(curator)
    form = client.get(reverse("release_pages:release-new")).content.decode()
    assert 'hx-post="/releases/count/"' in form and "<script>" not in form
    bad = client.post(reverse("release_pages:release-new"), {**FORM, "formats": []})
    assert bad.status_code == 400
    response = client.post(reverse("release_pages:release-new"), {**FORM, "near_dedup": "0.9", "pii_action": "redact"})
    release = Release.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("release_pages:release", args=[release.pk])
    assert release.spec["dedup"] == {"exact": True, "near": 0.9} and release.spec["pii"]["action"] == "redact"
    assert release.created_by == curator
    status_url = reverse("release_pages:release-status", args=[release.pk]) + "?polling=1"
    page = client.get(status_url)
    assert b'hx-trigger="every 2s"' in page.content and "HX-Refresh" not in page
    services.release_build(release=release)
    page = client.get(status_url)
    assert b"every 2s" not in page.content and page["HX-Refresh"] == "true"
    detail = client.get(reverse("release_pages:release", args=[release.pk])).content.decode()
    assert "sft/train.parquet" in detail and "Dataset card" in detail and "<h2>Composition</h2>" in detail
    # The same name and version again: refused, naming it.
    again = client.post(reverse("release_pages:release-new"), FORM)
    assert again.status_code == 400 and "a new build is a new version" in again.content.decode()


def test_a_blocked_build_shows_its_masked_hits(client, curator, taxonomy, build):
    content = factories.dialogue_content()
    content["turns"][0]["text"] = "Call me on +86 138 0013 8000."
    candidate = factories.make_candidate(content=content, status="approved")
    release = build({"formats": ["sft"]})
    client.force_login(curator)
    page = client.get(reverse("release_pages:release", args=[release.pk])).content.decode()
    assert "Failed" in page and f"#{candidate.pk}" in page and "+8*************00" in page
    assert "0013 8000" not in page


def test_downloads_and_the_zip_are_audited(client, curator, ready):
    client.force_login(curator)
    response = client.get(reverse("release_pages:release-file", args=[ready.pk, "sft/train.jsonl"]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == (services.release_dir(ready) / "sft/train.jsonl").read_bytes()
    assert client.get(reverse("release_pages:release-file", args=[ready.pk, "../../etc/passwd"])).status_code == 404
    response = client.get(reverse("release_pages:release-zip", args=[ready.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    prefix = f"spring-{ready.version}/"
    names = sorted(archive.namelist())
    assert names == sorted(prefix + n for n in ["manifest.json", *(f["name"] for f in ready.files)])
    for entry in ready.files:
        assert archive.read(prefix + entry["name"]) == (services.release_dir(ready) / entry["name"]).read_bytes()
    files = list(
        AuditEvent.objects.filter(action="release.download").order_by("pk").values_list("data__file", flat=True)
    )
    assert files == ["sft/train.jsonl", "*.zip"]


def test_a_release_not_ready_has_no_zip(client, curator, taxonomy):
    factories.make_candidate(status="approved")
    release = services.release_create(name="later", version="1", spec={"formats": ["sft"]}, user=curator, queue=False)
    client.force_login(curator)
    assert client.get(reverse("release_pages:release-zip", args=[release.pk])).status_code == 404


@pytest.mark.parametrize(("who", "expected"), [("counselor", 404), ("senior", 404), ("outsider", 404)])
def test_only_curators_and_admins_cancel_from_the_page(client, request, taxonomy, curator, who, expected):
    factories.make_candidate(status="approved")
    release = services.release_create(name="spring", version="1", spec={"formats": ["sft"]}, user=curator, queue=False)
    client.force_login(request.getfixturevalue(who))
    assert client.post(reverse("release_pages:release-cancel", args=[release.pk])).status_code == expected
    release.refresh_from_db()
    assert release.status == Release.Status.QUEUED


def test_a_curator_cancels_a_build_from_its_page(client, curator, taxonomy, releases_dir):
    factories.make_candidate(status="approved")
    release = services.release_create(name="spring", version="1", spec={"formats": ["sft"]}, user=curator, queue=False)
    client.force_login(curator)
    page = client.get(reverse("release_pages:release", args=[release.pk])).content.decode()
    cancel_url = reverse("release_pages:release-cancel", args=[release.pk])
    assert f'action="{cancel_url}"' in page and 'id="cancel-release"' in page
    assert client.get(cancel_url).status_code == 405
    response = client.post(cancel_url, follow=True)
    assert response.redirect_chain[-1][0] == reverse("release_pages:release", args=[release.pk])
    page = response.content.decode()
    assert "cancelled" in page and 'id="cancel-release"' not in page and "every 2s" not in page
    release.refresh_from_db()
    assert release.status == Release.Status.CANCELLED
    # The build the task would have run finds nothing to do and writes nothing.
    from releases import tasks

    assert tasks.release_build_task(release.pk) is None
    assert not releases_dir.exists() or list(releases_dir.iterdir()) == []
    again = client.post(cancel_url, follow=True).content.decode()
    assert "only a queued or building release can be cancelled" in again
    assert AuditEvent.objects.filter(action="release.cancel").count() == 1


def test_the_builder_offers_the_minimum_campaign_agreement(client, curator, taxonomy):
    factories.make_candidate(status="approved")
    client.force_login(curator)
    url = reverse("release_pages:release-count")
    assert "Minimum campaign agreement" in client.get(reverse("release_pages:release-new")).content.decode()
    page = client.post(url, {**FORM, "min_agreement": ""}).content.decode()
    assert "<strong>1</strong> candidate selected" in page
    # No campaign has reviews, so none reaches any floor: the count says so before anything is built.
    page = client.post(url, {**FORM, "min_agreement": "-1"}).content.decode()
    assert "<strong>0</strong>" in page and "nothing to build" in page
    page = client.post(url, {**FORM, "min_agreement": "1.5"}).content.decode()
    assert "less than or equal to 1" in page
    response = client.post(reverse("release_pages:release-new"), {**FORM, "min_agreement": "0.5"})
    assert response.status_code == 400 and "selects nothing" in response.content.decode()
    assert not Release.objects.exists()
