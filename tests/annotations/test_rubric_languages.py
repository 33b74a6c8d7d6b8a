"""One rubric, two texts: every default rubric's texts have their Chinese, the definition (keys, scale) is one, and a
review given in Chinese is stored exactly as one given in English."""

import pytest
from django.urls import reverse
from django.utils import translation

from accounts.services import profile_set_language
from annotations.forms.reviews import ReviewForm
from annotations.models import Review
from annotations.rubrics import DEFAULTS
from annotations.services.rubrics import rubric_get_default
from annotations.templatetags.rubric_i18n import rubric_text
from tests import factories


def _texts(definition) -> list[str]:
    texts = []
    for criterion in definition["criteria"]:
        texts += [criterion["label"], criterion.get("help", ""), *criterion.get("anchors", {}).values()]
    return [t for t in texts if t]


@pytest.mark.parametrize("kind", sorted(DEFAULTS))
def test_every_text_of_every_default_rubric_has_its_chinese(kind):
    with translation.override("zh-hans"):
        untranslated = [text for text in _texts(DEFAULTS[kind]) if rubric_text(text) == text]
    assert not untranslated, untranslated


@pytest.mark.parametrize("kind", sorted(DEFAULTS))
def test_the_english_text_is_the_definition_itself(kind):
    with translation.override("en"):
        assert [rubric_text(text) for text in _texts(DEFAULTS[kind])] == _texts(DEFAULTS[kind])


def test_a_text_with_no_translation_is_shown_as_it_is_never_as_another_text():
    with translation.override("zh-hans"):
        assert rubric_text("A criterion a curator wrote later.") == "A criterion a curator wrote later."
        assert rubric_text("") == ""
        assert rubric_text(None) is None


@pytest.mark.django_db
def test_the_review_form_in_chinese_has_the_same_keys_and_scale_as_in_english(taxonomy):
    rubric = rubric_get_default(kind="dialogue")
    forms = {}
    for language in ("en", "zh-hans"):
        with translation.override(language):
            form = ReviewForm(rubric=rubric)
            forms[language] = {
                name: ([value for value, _label in field.choices], str(field.label))
                for name, field in form.fields.items()
                if name.startswith("score_")
            }
    assert forms["en"].keys() == forms["zh-hans"].keys()
    for name in forms["en"]:
        assert forms["en"][name][0] == forms["zh-hans"][name][0] == ["1", "2", "3", "4", "5"]
        assert forms["en"][name][1] != forms["zh-hans"][name][1]
    assert forms["zh-hans"]["score_empathy"][1] == "共情与情感支持"


@pytest.mark.django_db
def test_a_review_given_in_chinese_is_stored_by_key_like_one_given_in_english(client, senior, taxonomy):
    rubric = rubric_get_default(kind="dialogue")
    keys = [c["key"] for c in rubric.criteria]
    candidate = factories.make_candidate()
    profile_set_language(user=senior, language="zh-hans")
    client.force_login(senior)
    data = {f"score_{key}": "3" for key in keys}
    response = client.post(
        reverse("annotations:review", args=[candidate.pk]),
        {"decision": "needs_revision", "version": candidate.version, **data},
    )
    assert response.status_code == 302
    review = Review.objects.get(candidate=candidate)
    assert review.scores == dict.fromkeys(keys, 3)
    assert review.rubric == rubric
