import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from generation.models import Candidate, EmotionCategory, GenerationRun, Revision, RiskFlag, SubEmotion
from generation.schemas import ContentError
from generation.selectors import runs_waiting
from generation.services.candidates import (
    COPY_FROM_ROWS,
    StaleVersion,
    candidate_build,
    candidate_revise,
    candidate_set_status,
    candidates_created,
    candidates_save_new,
)
from generation.services.modelspecs import modelspec_get_default
from generation.services.runs import runs_waiting_lock_count
from generation.services.taxonomy import taxonomy_load
from psyroom_admin import roles
from tests import factories

pytestmark = pytest.mark.django_db


def test_taxonomy_load_is_idempotent():
    assert taxonomy_load() == (8, 35)
    assert taxonomy_load() == (0, 0)
    assert EmotionCategory.objects.count() == 8
    assert SubEmotion.objects.count() == 35
    assert SubEmotion.objects.get(key="anxiety.1").label_zh == "焦虑1-自我施加的压力"


def test_taxonomy_load_puts_changed_labels_back_and_keeps_the_rows():
    taxonomy_load()
    sub = SubEmotion.objects.get(key="anxiety.1")
    SubEmotion.objects.filter(pk=sub.pk).update(label_en="changed by hand")
    EmotionCategory.objects.filter(key=sub.category.key).update(label_zh="改过")
    assert taxonomy_load() == (0, 0)
    reloaded = SubEmotion.objects.get(key="anxiety.1")
    assert reloaded.pk == sub.pk
    assert reloaded.label_en != "changed by hand"
    assert reloaded.category.label_zh != "改过"


def test_candidate_revise_keeps_the_original_and_bumps_the_version(candidate, counselor):
    content = factories.dialogue_content(prefix="edited ")
    revision = candidate_revise(
        candidate=candidate, author=counselor, content=content, base_version=1, category="wording"
    )
    candidate.refresh_from_db()
    assert (revision.number, candidate.version, candidate.content) == (1, 2, content)
    assert Revision.objects.get(candidate=candidate, number=0).content == factories.dialogue_content()


def test_candidate_revise_on_a_stale_version_writes_nothing(candidate, counselor):
    candidate_revise(
        candidate=candidate,
        author=counselor,
        content=factories.dialogue_content(prefix="a "),
        base_version=1,
        category="wording",
    )
    with pytest.raises(StaleVersion):
        candidate_revise(
            candidate=candidate,
            author=counselor,
            content=factories.dialogue_content(prefix="b "),
            base_version=1,
            category="wording",
        )
    candidate.refresh_from_db()
    assert candidate.content == factories.dialogue_content(prefix="a ")
    assert candidate.revisions.count() == 2


def test_candidate_revise_rejects_invalid_content(candidate, counselor):
    with pytest.raises(ContentError, match=r"turns\[0\]\.text"):
        candidate_revise(
            candidate=candidate,
            author=counselor,
            content={"turns": [{"role": "client", "text": " "}]},
            base_version=1,
            category="wording",
        )
    candidate.refresh_from_db()
    assert candidate.version == 1 and candidate.revisions.count() == 1


def test_risk_screen_flags_self_harm_and_blocks_approval(taxonomy):
    content = {
        "turns": [
            {"role": "client", "text": "Sometimes I think about killing myself."},
            {"role": "counselor", "text": "Thank you for telling me. Are you safe right now?"},
        ]
    }
    flagged = factories.make_candidate(content=content)
    assert flagged.has_open_risk
    flag = flagged.flags.get()
    assert (flag.code, flag.source, flag.revision.number, flag.is_open) == ("self_harm", "screen", 0, True)
    with pytest.raises(ValidationError, match="senior clinician"):
        candidate_set_status(candidate=flagged, status=Candidate.Status.APPROVED, revision=flagged.revisions.get())
    flagged.refresh_from_db()
    assert flagged.status == Candidate.Status.GENERATED


def test_chinese_self_harm_mention_is_flagged(taxonomy):
    content = {
        "turns": [{"role": "client", "text": "我有时候想自杀。"}, {"role": "counselor", "text": "谢谢你告诉我。"}]
    }
    assert factories.make_candidate(content=content).has_open_risk


def _built(n: int, *, risky: set[int] = frozenset(), hashes: dict[int, str] | None = None) -> list[Candidate]:
    return [
        candidate_build(
            kind="dialogue",
            content={
                "turns": [
                    {"role": "client", "text": "I want to die." if i in risky else f"Client line {i}."},
                    {"role": "counselor", "text": "Tell me more."},
                ]
            },  # fmt: skip
            source={"dataset": "test", "record": i},
            source_hash=(hashes or {}).get(i, f"{i:064x}"),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("count", [3, COPY_FROM_ROWS + 50])
def test_candidates_save_new_saves_rows_revisions_and_flags_in_bulk(taxonomy, count):
    # From COPY_FROM_ROWS rows PostgreSQL gets them by COPY; below, and elsewhere, by bulk_create: the same rows.
    received = []
    candidates_created.connect(lambda candidates, **kw: received.extend(candidates), weak=False, dispatch_uid="t")
    try:
        with transaction.atomic():
            saved = candidates_save_new(candidates=_built(count, risky={1, count - 1}))
    finally:
        candidates_created.disconnect(dispatch_uid="t")

    assert [c.pk for c in saved] == list(Candidate.objects.order_by("id").values_list("id", flat=True))
    assert received == saved and all(not c._state.adding for c in saved)
    stored = Candidate.objects.get(pk=saved[1].pk)
    assert (stored.source, stored.source_hash, stored.status, stored.version) == (
        {"dataset": "test", "record": 1},
        f"{1:064x}",
        "generated",
        1,
    )
    assert stored.created_at is not None and stored.content == saved[1].content
    assert Revision.objects.filter(number=0).count() == count
    assert Revision.objects.get(candidate=stored).content == stored.content
    assert sorted(RiskFlag.objects.values_list("candidate_id", flat=True)) == [saved[1].pk, saved[-1].pk]
    assert RiskFlag.objects.get(candidate=stored).revision.candidate_id == stored.pk
    # The table's sequence went on past the rows: the next row gets a new key.
    assert factories.make_candidate().pk > saved[-1].pk


@pytest.mark.parametrize("count", [3, COPY_FROM_ROWS + 50])
def test_candidates_save_new_raises_integrity_error_on_a_duplicate_hash(taxonomy, count):
    factories.make_candidate(source_hash="f" * 64)

    with pytest.raises(IntegrityError), transaction.atomic():
        candidates_save_new(candidates=_built(count, hashes={count // 2: "f" * 64}))

    assert Candidate.objects.count() == 1


def test_runs_waiting_are_a_users_queued_and_running_runs(taxonomy):
    curator, other = factories.make_user(roles.CURATOR), factories.make_user(roles.CURATOR)
    spec = modelspec_get_default()
    made = {
        (user.pk, status): GenerationRun.objects.create(
            kind="dialogue", count=1, model_spec=spec, prompt_version="v1", created_by=user, status=status,
            targets=[{"sub_emotion": "anxiety.1"}],
        )
        for user in (curator, other)
        for status in GenerationRun.Status.values
    }  # fmt: skip
    waiting = set(runs_waiting(user=curator))
    assert waiting == {made[(curator.pk, "queued")], made[(curator.pk, "running")]}
    with transaction.atomic():
        assert runs_waiting_lock_count(user=curator) == 2
