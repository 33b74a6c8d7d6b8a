"""What a release holds (ReleaseItem), cancelling a build, and the agreement of the campaigns it draws on."""

import json

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from annotations.models import AuditEvent, Campaign, CampaignItem, Review
from annotations.services.rubrics import rubric_get_default
from dashboards.selectors import AgreementFilters, agreement_compute
from generation.models import Candidate, Revision
from releases import card, formats, ledger, selectors, services, tasks
from releases.models import Release, ReleaseItem
from tests import factories

from .helpers import all_rows

pytestmark = pytest.mark.django_db

SPLITS = {"train": 0.5, "validation": 0.25, "test": 0.25, "seed": 3}


def approved(prefix: str, **kwargs) -> Candidate:
    return factories.make_candidate(content=factories.dialogue_content(prefix=prefix), status="approved", **kwargs)


def edited(prefix: str) -> Candidate:
    """An approved dialogue whose approved revision is a counselor's edit of the model's second counselor turn."""
    candidate = factories.make_candidate(content=factories.dialogue_content(prefix=prefix))
    content = json.loads(json.dumps(candidate.content))
    content["turns"][3]["text"] = f"{prefix}What would you like to feel on the morning of the exam instead?"
    revision = Revision.objects.create(candidate=candidate, number=1, content=content)
    Candidate.objects.filter(pk=candidate.pk).update(status="approved", approved_revision=revision, content=content)
    candidate.refresh_from_db()
    return candidate


def items(release) -> set[tuple[int, int, str, str, int]]:
    return set(
        ReleaseItem.objects.filter(release=release).values_list(
            "candidate_id", "revision_id", "format", "split", "rows"
        )
    )


def test_a_ready_release_records_each_candidate_its_revision_split_and_format(taxonomy, build):
    plain = [approved(f"Plain {i}. ") for i in range(4)]
    changed = edited("Edited. ")
    release = build({"formats": ["dpo", "sft"], "splits": SPLITS})
    assert release.status == Release.Status.READY, release.error
    expected = set()
    for fmt in ("sft", "dpo"):
        for split in ("train", "validation", "test"):
            path = services.release_dir(release) / fmt / f"{split}.jsonl"
            for line in path.read_text(encoding="utf-8").splitlines():
                meta = json.loads(line)["metadata"]
                candidate = Candidate.objects.get(pk=meta["candidate_id"])
                expected.add((candidate.pk, candidate.approved_revision_id, fmt, split, 1))
    assert items(release) == expected
    # One sft row per candidate; the dpo file only the edited one, as its approved revision (the edit), not 0.
    assert {c for c, _, f, _, _ in expected if f == "sft"} == {c.pk for c in [*plain, changed]}
    [(_, revision, _, _, _)] = [i for i in expected if i[2] == "dpo"]
    assert revision == changed.approved_revision_id and changed.approved_revision.number == 1
    assert set(selectors.release_items_visible().values_list("pk", flat=True)) == set(
        ReleaseItem.objects.filter(release=release).values_list("pk", flat=True)
    )
    assert set(selectors.released_candidate_ids().values_list("candidate_id", flat=True)) == {
        c.pk for c in [*plain, changed]
    }


def test_rows_of_a_release_not_ready_are_never_visible(taxonomy, build, monkeypatch):
    for i in range(5):
        approved(f"Seen {i}. ")
    monkeypatch.setattr(ledger, "BATCH", 2)
    seen = []
    write = formats.JsonlWriter.write

    def spy(self, row):
        release = Release.objects.get(status=Release.Status.BUILDING)
        seen.append((ReleaseItem.objects.filter(release=release).count(), selectors.release_items_visible().count()))
        write(self, row)

    monkeypatch.setattr(formats.JsonlWriter, "write", spy)
    release = build({"formats": ["sft"], "splits": SPLITS})
    assert release.status == Release.Status.READY
    assert max(written for written, _ in seen) >= 2  # batches were written while the build ran ...
    assert {visible for _, visible in seen} == {0}  # ... and none of them counted before it was ready
    assert selectors.release_items_visible().count() == 5


def test_a_failed_build_leaves_no_items(taxonomy, build, monkeypatch, releases_dir):
    for i in range(6):
        approved(f"Failing {i}. ")
    monkeypatch.setattr(ledger, "BATCH", 2)
    write = formats.JsonlWriter.write
    calls = []

    def full_disk(self, row):
        calls.append(row)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        write(self, row)

    monkeypatch.setattr(formats.JsonlWriter, "write", full_disk)
    release = build({"formats": ["sft"], "splits": SPLITS})
    assert release.status == Release.Status.FAILED and "No space left" in release.error
    assert not ReleaseItem.objects.exists()  # two batches had been written; both are gone
    assert list(releases_dir.iterdir()) == []


def test_a_curator_cancels_a_running_build_which_stops_within_a_batch(taxonomy, curator, releases_dir, monkeypatch):
    for i in range(12):
        approved(f"Cancelled {i}. ")
    monkeypatch.setattr(ledger, "BATCH", 3)
    release = services.release_create(
        name="cancel", version="1", spec={"formats": ["sft"], "splits": SPLITS}, user=curator, queue=False
    )
    write = formats.JsonlWriter.write
    written = []

    def click_cancel(self, row):
        write(self, row)
        written.append(row)
        if len(written) == 2:  # the curator presses Cancel while the rows are being written
            services.release_cancel(release=Release.objects.get(pk=release.pk), user=curator)

    monkeypatch.setattr(formats.JsonlWriter, "write", click_cancel)
    result = services.release_build(release=release)
    assert result.status == Release.Status.CANCELLED
    assert len(written) <= 2 + 3  # stopped at the next batch's check, not at the end of 12
    assert result.files == [] and result.manifest == {} and result.built_at is None
    assert list(releases_dir.iterdir()) == []  # no release folder, no temporary one
    assert not ReleaseItem.objects.exists()
    assert AuditEvent.objects.filter(action="release.cancel", actor=curator, data__release=release.pk).exists()
    assert not AuditEvent.objects.filter(action__in=["release.build", "release.build_failed"]).exists()
    with pytest.raises(ValidationError, match="only a queued or building"):
        services.release_cancel(release=result, user=curator)


def test_a_cancel_after_the_last_batch_still_wins(taxonomy, curator, releases_dir, monkeypatch):
    approved("Late. ")
    release = services.release_create(
        name="late", version="1", spec={"formats": ["sft"], "splits": SPLITS}, user=curator, queue=False
    )
    card_text = card.card_text

    def cancel_while_writing_the_card(manifest):
        Release.objects.filter(pk=release.pk).update(status=Release.Status.CANCELLED)
        return card_text(manifest)

    monkeypatch.setattr(card, "card_text", cancel_while_writing_the_card)
    result = services.release_build(release=release)
    assert result.status == Release.Status.CANCELLED
    assert list(releases_dir.iterdir()) == [] and not ReleaseItem.objects.exists()


def test_a_queued_release_cancelled_is_never_built(taxonomy, curator, releases_dir):
    approved("Queued. ")
    release = services.release_create(name="queued", version="1", spec={"formats": ["sft"]}, user=curator, queue=False)
    services.release_cancel(release=release, user=curator)
    assert tasks.release_build_task(release.pk) is None
    release.refresh_from_db()
    assert release.status == Release.Status.CANCELLED
    assert not releases_dir.exists() or list(releases_dir.iterdir()) == []


def test_only_curators_and_admins_cancel(taxonomy, curator, counselor, senior, build):
    approved("Guarded. ")
    release = services.release_create(name="guard", version="1", spec={"formats": ["sft"]}, user=curator, queue=False)
    for user in (counselor, senior):
        with pytest.raises(PermissionDenied):
            services.release_cancel(release=release, user=user)
    release.refresh_from_db()
    assert release.status == Release.Status.QUEUED
    assert not AuditEvent.objects.filter(action="release.cancel").exists()
    ready = build({"formats": ["sft"]})
    with pytest.raises(ValidationError, match="is ready"):
        services.release_cancel(release=ready, user=curator)
    ready.refresh_from_db()
    assert ready.status == Release.Status.READY and ReleaseItem.objects.filter(release=ready).exists()


# --- Campaign agreement ----------------------------------------------------------------------------------------------


def campaign_with(name: str, decisions: dict[Candidate, tuple[str, str]], raters) -> Campaign:
    """A campaign holding the candidates, each reviewed by the two raters with the given decisions."""
    rubric = rubric_get_default(kind="dialogue")
    campaign = Campaign.objects.create(name=name, kind="dialogue", rubric=rubric)
    for candidate, pair in decisions.items():
        CampaignItem.objects.create(campaign=campaign, candidate=candidate)
        revision = candidate.approved_revision or candidate.revisions.get(number=0)
        for rater, decision in zip(raters, pair, strict=True):
            Review.objects.create(
                candidate=candidate,
                revision=revision,
                reviewer=rater,
                rubric=rubric,
                campaign=campaign,
                scores={c["key"]: 4 for c in rubric.criteria},
                decision=decision,
            )
    return campaign


@pytest.fixture
def two_campaigns(taxonomy, counselor, other_counselor):
    raters = (counselor, other_counselor)
    agreed = [approved(f"Agreed {i}. ") for i in range(3)]
    refused = factories.make_candidate(content=factories.dialogue_content(prefix="Refused. "), status="rejected")
    disputed = [approved(f"Disputed {i}. ") for i in range(3)]
    good = campaign_with(
        "agreeing", {**{c: ("approve", "approve") for c in agreed}, refused: ("reject", "reject")}, raters
    )
    bad = campaign_with(
        "disputed",
        {disputed[0]: ("approve", "reject"), disputed[1]: ("reject", "approve"), disputed[2]: ("approve", "approve")},
        raters,
    )
    return good, bad, agreed, disputed


def test_the_manifest_and_card_hold_the_agreement_the_dashboards_show(two_campaigns, build, curator):
    good, bad, agreed, disputed = two_campaigns
    loose = approved("In no campaign. ")
    release = build({"formats": ["sft"], "splits": SPLITS})
    agreement = release.manifest["agreement"]
    assert agreement["campaigns"] == [good.pk, bad.pk]
    for campaign in (good, bad):
        shown = agreement_compute(user=curator, campaign=campaign, filters=AgreementFilters())
        figures = agreement["figures"][str(campaign.pk)]
        assert figures["reviews"] == shown.reviews and figures["raters"] == 2
        assert figures["decision"]["alpha"] == pytest.approx(shown.decision.alpha.value, abs=1e-4)
        assert set(figures["criteria"]) == {c.key for c in shown.criteria}
    assert agreement["figures"][str(good.pk)]["decision"]["alpha"] == 1.0
    assert agreement["figures"][str(bad.pk)]["decision"]["alpha"] < 0.5
    text = (services.release_dir(release) / "README.md").read_text(encoding="utf-8")
    assert "alpha (decision)" in text and f"| {good.pk} | 8 | 4 | 2 | 1.000 |" in text
    # Counts and ids only: no reviewer's name or username reaches the manifest or the card.
    manifest_text = (services.release_dir(release) / "manifest.json").read_text(encoding="utf-8")
    for user in {r.reviewer for r in Review.objects.select_related("reviewer")}:
        assert user.username not in manifest_text and user.username not in text
    assert loose.pk in {r["metadata"]["candidate_id"] for r in all_rows(release, "sft")}


def test_min_agreement_keeps_the_candidates_of_campaigns_that_reach_it(two_campaigns, build):
    good, bad, agreed, disputed = two_campaigns
    approved("In no campaign. ")
    release = build({"formats": ["sft"], "splits": SPLITS, "min_agreement": 0.8})
    assert release.spec["min_agreement"] == 0.8
    assert {r["metadata"]["candidate_id"] for r in all_rows(release, "sft")} == {c.pk for c in agreed}
    assert release.manifest["agreement"]["campaigns"] == [good.pk]
    assert "at least 0.8" in (services.release_dir(release) / "README.md").read_text(encoding="utf-8")
    # A floor no campaign reaches selects nothing, and says so before anything is built.
    with pytest.raises(ValidationError, match="selects nothing"):
        services.release_create(
            name="strict",
            version="1",
            spec={"formats": ["sft"], "min_agreement": 1.0, "campaigns": [bad.pk]},
            user=None,
        )
    assert not Release.objects.filter(name="strict").exists()


@pytest.mark.django_db(transaction=True)
def test_a_cancel_from_another_connection_stops_a_running_build(taxonomy, curator, releases_dir, monkeypatch):
    """As in production: the build runs on its own connection (a worker), the curator cancels on another (a web
    request), and the build sees the committed cancel at its next batch."""
    import threading

    from django.db import connection

    for i in range(12):
        approved(f"Threaded {i}. ")
    monkeypatch.setattr(ledger, "BATCH", 3)
    release = services.release_create(
        name="threaded", version="1", spec={"formats": ["sft"], "splits": SPLITS}, user=curator, queue=False
    )
    started, go_on = threading.Event(), threading.Event()
    write = formats.JsonlWriter.write
    written = []

    def paced(self, row):
        write(self, row)
        written.append(row)
        if len(written) == 2:
            started.set()
            assert go_on.wait(30)

    monkeypatch.setattr(formats.JsonlWriter, "write", paced)
    result = {}

    def worker():
        try:
            result["release"] = services.release_build(release=Release.objects.get(pk=release.pk))
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert started.wait(60), "the build never started writing"
        services.release_cancel(release=Release.objects.get(pk=release.pk), user=curator)
    finally:
        go_on.set()
        thread.join(60)
    assert not thread.is_alive()
    assert result["release"].status == Release.Status.CANCELLED
    assert 2 <= len(written) <= 2 + 3
    assert list(releases_dir.iterdir()) == []
    assert not ReleaseItem.objects.exists()
    assert Release.objects.get(pk=release.pk).built_at is None


def test_a_cancel_while_duplicates_are_sought_stops_before_any_file_is_written(
    taxonomy, curator, releases_dir, monkeypatch
):
    for i in range(12):
        approved(f"Early {i}. ")
    monkeypatch.setattr(ledger, "BATCH", 3)
    release = services.release_create(
        name="early", version="1", spec={"formats": ["sft"], "splits": SPLITS}, user=curator, queue=False
    )
    text_hash = formats.text_hash
    hashed, written = [], []

    def cancel_during_pass_one(text):
        hashed.append(text)
        if len(hashed) == 2:
            services.release_cancel(release=Release.objects.get(pk=release.pk), user=curator)
        return text_hash(text)

    monkeypatch.setattr(formats, "text_hash", cancel_during_pass_one)
    monkeypatch.setattr(formats.JsonlWriter, "write", lambda self, row: written.append(row))
    result = services.release_build(release=release)
    assert result.status == Release.Status.CANCELLED
    assert len(hashed) <= 3 and written == []  # stopped at the first batch's check, before pass 2
    assert list(releases_dir.iterdir()) == [] and not ReleaseItem.objects.exists()
