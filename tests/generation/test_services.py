import pytest
from django.core.exceptions import ValidationError

from generation import services
from generation.models import Candidate, EmotionCategory, Revision, SubEmotion
from tests import factories

pytestmark = pytest.mark.django_db


def test_taxonomy_load_is_idempotent():
    assert services.taxonomy_load() == (8, 35)
    assert services.taxonomy_load() == (0, 0)
    assert EmotionCategory.objects.count() == 8
    assert SubEmotion.objects.count() == 35
    assert SubEmotion.objects.get(key="anxiety.1").label_zh == "焦虑1-自我施加的压力"


def test_taxonomy_load_puts_changed_labels_back_and_keeps_the_rows():
    services.taxonomy_load()
    sub = SubEmotion.objects.get(key="anxiety.1")
    SubEmotion.objects.filter(pk=sub.pk).update(label_en="changed by hand")
    EmotionCategory.objects.filter(key=sub.category.key).update(label_zh="改过")
    assert services.taxonomy_load() == (0, 0)
    reloaded = SubEmotion.objects.get(key="anxiety.1")
    assert reloaded.pk == sub.pk
    assert reloaded.label_en != "changed by hand"
    assert reloaded.category.label_zh != "改过"


def test_candidate_revise_keeps_the_original_and_bumps_the_version(candidate, counselor):
    content = factories.dialogue_content(prefix="edited ")
    revision = services.candidate_revise(
        candidate=candidate, author=counselor, content=content, base_version=1, category="wording"
    )
    candidate.refresh_from_db()
    assert (revision.number, candidate.version, candidate.content) == (1, 2, content)
    assert Revision.objects.get(candidate=candidate, number=0).content == factories.dialogue_content()


def test_candidate_revise_on_a_stale_version_writes_nothing(candidate, counselor):
    services.candidate_revise(
        candidate=candidate,
        author=counselor,
        content=factories.dialogue_content(prefix="a "),
        base_version=1,
        category="wording",
    )
    with pytest.raises(services.StaleVersion):
        services.candidate_revise(
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
    with pytest.raises(services.ContentError, match=r"turns\[0\]\.text"):
        services.candidate_revise(
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
        services.candidate_set_status(
            candidate=flagged, status=Candidate.Status.APPROVED, revision=flagged.revisions.get()
        )
    flagged.refresh_from_db()
    assert flagged.status == Candidate.Status.GENERATED


def test_chinese_self_harm_mention_is_flagged(taxonomy):
    content = {
        "turns": [{"role": "client", "text": "我有时候想自杀。"}, {"role": "counselor", "text": "谢谢你告诉我。"}]
    }
    assert factories.make_candidate(content=content).has_open_risk
