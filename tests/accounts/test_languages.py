"""The interface's language: a user's profile, else the language cookie, else Accept-Language; the switcher in the
header keeps the choice; pages, messages and API errors speak it."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts import services
from accounts.models import Profile
from annotations.rubrics import DIALOGUE_RUBRIC
from annotations.services import campaigns
from generation.models import Candidate
from tests import factories

pytestmark = pytest.mark.django_db

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}
EN = {"HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9"}
KEYS = [c["key"] for c in DIALOGUE_RUBRIC["criteria"]]


def _speaking(user, language: str):
    services.profile_set_language(user=user, language=language)
    return user


def _campaign(curator, members, candidates):
    return campaigns.campaign_create(
        creator=curator,
        name="Exam anxiety",
        kind="dialogue",
        overlap=2,
        members=members,
        guidelines="",
        blind=True,
        candidate_ids=[c.pk for c in candidates],
    )


def _risky_candidate():
    content = factories.dialogue_content()
    content["turns"][0]["text"] = "Sometimes I think everyone would be better off dead without me."
    return factories.make_candidate(content=content)


# --- Accept-Language, when there is no choice ------------------------------------------------------------------


def test_a_signed_out_browser_asking_for_chinese_gets_the_login_page_in_chinese(client):
    response = client.get(reverse("login"), **ZH)
    assert response.status_code == 200
    assert response["Content-Language"] == "zh-hans"
    body = response.content.decode()
    assert '<html lang="zh-hans">' in body
    assert "评审机器生成的心理咨询对话" in body
    assert "Review machine-generated counseling dialogues" not in body


def test_a_signed_out_browser_asking_for_english_gets_english(client):
    response = client.get(reverse("login"), **EN)
    assert response["Content-Language"] == "en"
    assert "Review machine-generated counseling dialogues" in response.content.decode()


def test_a_language_the_site_does_not_offer_falls_back_to_english(client):
    response = client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="fr-FR,fr;q=0.9")
    assert response["Content-Language"] == "en"


def test_accept_language_is_honoured_for_a_user_with_no_profile_setting(client, counselor, taxonomy):
    client.force_login(counselor)
    assert not Profile.objects.filter(user=counselor).exists()
    assert "评审队列" in client.get(reverse("annotations:queue"), **ZH).content.decode()
    assert "Review queue" in client.get(reverse("annotations:queue"), **EN).content.decode()


# --- The profile ------------------------------------------------------------------------------------------------


def test_the_profile_language_beats_the_browser_and_the_cookie(client, counselor, taxonomy):
    client.force_login(_speaking(counselor, "zh-hans"))
    client.cookies["django_language"] = "en"
    response = client.get(reverse("annotations:queue"), **EN)
    assert response["Content-Language"] == "zh-hans"
    assert "评审队列" in response.content.decode()


def test_an_english_profile_gets_english_whatever_the_browser_asks(client, counselor, taxonomy):
    client.force_login(_speaking(counselor, "en"))
    response = client.get(reverse("annotations:queue"), **ZH)
    assert response["Content-Language"] == "en"
    assert "Review queue" in response.content.decode()
    assert "评审队列" not in response.content.decode()


def test_an_empty_profile_choice_follows_the_browser_again(client, counselor, taxonomy):
    _speaking(counselor, "zh-hans")
    client.force_login(_speaking(counselor, ""))
    assert Profile.objects.get(user=counselor).language == ""
    assert client.get(reverse("annotations:queue"), **EN)["Content-Language"] == "en"


@pytest.mark.parametrize("language", ["fr", "zh_Hans", "ZH-HANS", "zh-hans\x00", "x" * 10_000, 7, None, ["en"]])
def test_the_service_refuses_a_language_the_site_does_not_offer_and_writes_nothing(counselor, language):
    with pytest.raises(ValidationError) as refused:
        services.profile_set_language(user=counselor, language=language)
    assert "language" in refused.value.message_dict
    assert "is not a language of this site" in refused.value.message_dict["language"][0]
    assert not Profile.objects.exists()


def test_the_service_refuses_an_anonymous_user(rf):
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(PermissionDenied):
        services.profile_set_language(user=AnonymousUser(), language="en")
    assert not Profile.objects.exists()


# --- The switcher -----------------------------------------------------------------------------------------------


def test_every_page_has_the_switcher_signed_in_or_not(client, counselor, taxonomy):
    action = f'action="{reverse("accounts:language")}"'
    assert action in client.get(reverse("login")).content.decode()
    client.force_login(counselor)
    assert action in client.get(reverse("annotations:queue")).content.decode()


def test_the_switcher_keeps_a_signed_in_users_choice_in_their_profile(client, counselor, taxonomy):
    client.force_login(counselor)
    queue = reverse("annotations:queue")
    response = client.post(reverse("accounts:language"), {"language": "zh-hans", "next": queue}, **EN)
    assert response.status_code == 302
    assert response["Location"] == queue
    assert response.cookies["django_language"].value == "zh-hans"
    assert Profile.objects.get(user=counselor).language == "zh-hans"
    # Another browser, no cookie, asking for English: the profile follows the user.
    elsewhere = type(client)()
    elsewhere.force_login(counselor)
    assert "评审队列" in elsewhere.get(queue, **EN).content.decode()
    # And back.
    client.post(reverse("accounts:language"), {"language": "en", "next": queue})
    assert Profile.objects.get(user=counselor).language == "en"
    assert "Review queue" in elsewhere.get(queue, **ZH).content.decode()


def test_the_switcher_signed_out_keeps_the_choice_in_the_cookie_only(client):
    response = client.post(reverse("accounts:language"), {"language": "zh-hans", "next": reverse("login")}, **EN)
    assert response.status_code == 302
    assert response.cookies["django_language"].value == "zh-hans"
    assert not Profile.objects.exists()
    assert "评审机器生成的心理咨询对话" in client.get(reverse("login"), **EN).content.decode()


@pytest.mark.parametrize("language", ["fr", "", "zh-hans<script>", "x" * 5000])
def test_the_switcher_refuses_a_language_not_offered_and_changes_nothing(client, counselor, taxonomy, language):
    _speaking(counselor, "en")
    client.force_login(counselor)
    response = client.post(reverse("accounts:language"), {"language": language, "next": "/"}, follow=True)
    assert response.status_code == 200
    assert "django_language" not in response.cookies or response.cookies["django_language"].value != language
    assert Profile.objects.get(user=counselor).language == "en"
    assert "That language is not offered here: nothing was changed." in response.content.decode()


def test_the_switcher_never_sends_the_user_to_another_site(client, counselor):
    client.force_login(counselor)
    response = client.post(reverse("accounts:language"), {"language": "en", "next": "https://evil.example/"})
    assert response.status_code == 302
    assert "evil.example" not in response["Location"]


def test_the_switcher_takes_only_a_post(client, counselor):
    client.force_login(counselor)
    response = client.get(reverse("accounts:language"), {"language": "zh-hans"})
    assert response.status_code == 405
    assert not Profile.objects.exists()


# --- What a Chinese-speaking counselor sees ---------------------------------------------------------------------


def test_a_chinese_counselor_reviews_a_campaign_in_chinese(client, counselor, senior, curator, taxonomy):
    candidates = [_risky_candidate()]
    campaign = _campaign(curator, [counselor, senior], candidates)
    client.force_login(_speaking(counselor, "zh-hans"))
    listing = client.get(reverse("annotations:campaign_list"), **EN).content.decode()
    assert "新建评审任务" not in listing  # a counselor does not create campaigns
    assert "评审下一条" in listing
    claimed = client.post(reverse("annotations:campaign_next", args=[campaign.pk]), **EN)
    assert claimed.status_code == 302
    page = client.get(claimed["Location"], **EN)
    assert page.status_code == 200
    body = page.content.decode()
    # The page's own words, the rubric (one definition, its Chinese text), the decisions and the risk flags.
    rubric = ["问题导向", "准确把握核心困扰，每一轮都紧扣于此。"]
    for text in ["你的评审", "提交评审", *rubric, "通过", "需要修改", "风险标记"]:
        assert text in body, text
    for text in ["自伤或自杀处理不当", "内容警示", "提及自伤或自杀"]:
        assert text in body, text
    for english in ["Your review", "Submit review", "Problem orientation", "Self-harm or suicide handled badly"]:
        assert english not in body, english
    # The sub-emotion by its Chinese name (the taxonomy has both).
    sub_emotion = candidates[0].sub_emotion
    assert f"{sub_emotion.key} · {sub_emotion.label_zh}" in body
    # The dialogue itself is not translated: it is the data under review.
    assert "better off dead" in body


def test_a_chinese_counselors_messages_and_form_errors_are_chinese(client, counselor, senior, curator, taxonomy):
    candidate = factories.make_candidate()
    campaign = _campaign(curator, [counselor, senior], [candidate])
    client.force_login(_speaking(counselor, "zh-hans"))
    client.post(reverse("annotations:campaign_next", args=[campaign.pk]))
    submit = reverse("annotations:campaign_submit", args=[campaign.pk, candidate.pk])
    # No scores: the form's errors, in Chinese, and nothing written.
    refused = client.post(submit, {"decision": "approve", "version": candidate.version}, **EN)
    assert refused.status_code == 400
    assert "请为此评分项选择一个分数。" in refused.content.decode()
    assert not candidate.reviews.exists()
    data = {f"score_{key}": "4" for key in KEYS}
    done = client.post(submit, {"decision": "reject", "version": candidate.version, **data}, follow=True, **EN)
    assert done.status_code == 200
    assert "的评审已保存。" in done.content.decode()
    assert candidate.reviews.count() == 1


def test_an_english_counselor_sees_the_same_page_in_english(client, counselor, senior, curator, taxonomy):
    campaign = _campaign(curator, [counselor, senior], [_risky_candidate()])
    client.force_login(_speaking(counselor, "en"))
    claimed = client.post(reverse("annotations:campaign_next", args=[campaign.pk]), **ZH)
    body = client.get(claimed["Location"], **ZH).content.decode()
    for text in ["Your review", "Submit review", "Problem orientation", "Self-harm or suicide handled badly"]:
        assert text in body, text
    assert "你的评审" not in body
    assert "问题导向" not in body
    sub_emotion = Candidate.objects.get(pk=claimed["Location"].rstrip("/").split("/")[-1]).sub_emotion
    assert f"{sub_emotion.key} · {sub_emotion.label_en}" in body


# --- The API ----------------------------------------------------------------------------------------------------


def _token_client(user) -> APIClient:
    api = APIClient()
    _instance, token = AuthToken.objects.create(user)
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return api


def _review(candidate, **extra) -> dict:
    scores = dict.fromkeys(KEYS, 4)
    return {"candidate": candidate.pk, "version": candidate.version, "scores": scores, "decision": "reject", **extra}


def test_a_token_users_api_errors_are_in_their_profile_language(senior, taxonomy):
    candidate = factories.make_candidate()
    api = _token_client(_speaking(senior, "zh-hans"))
    # A service's refusal (a risk flag with no comment).
    response = api.post(reverse("api:review-create"), _review(candidate, risk_flags=["self_harm"]), format="json")
    assert response.status_code == 400
    assert response["Content-Language"] == "zh-hans"
    assert response.json()["comment"] == ["请说明是什么风险：勾选风险标记时必须填写评语"]
    # A stale version (409), and DRF's own field errors.
    stale = api.post(reverse("api:review-create"), _review(candidate, version=candidate.version + 5), format="json")
    assert stale.status_code == 409
    assert "未保存任何内容" in stale.json()["detail"]
    missing = api.post(reverse("api:review-create"), {"candidate": candidate.pk}, format="json")
    assert missing.status_code == 400
    assert missing.json()["decision"] == ["该字段是必填项。"]
    assert not candidate.reviews.exists()
    assert Candidate.objects.get(pk=candidate.pk).status == candidate.status


def test_an_english_token_users_api_errors_are_english(senior, taxonomy):
    candidate = factories.make_candidate()
    api = _token_client(_speaking(senior, "en"))
    response = api.post(reverse("api:review-create"), _review(candidate, risk_flags=["self_harm"]), format="json", **ZH)
    assert response.status_code == 400
    assert response.json()["comment"] == ["say what the risk is: a comment is required with a risk flag"]


def test_an_api_client_with_no_profile_choice_gets_its_accept_language(senior, taxonomy):
    candidate = factories.make_candidate()
    api = _token_client(senior)
    response = api.post(reverse("api:review-create"), _review(candidate, risk_flags=["self_harm"]), format="json", **ZH)
    assert response.json()["comment"] == ["请说明是什么风险：勾选风险标记时必须填写评语"]


def test_a_counselor_is_told_in_chinese_that_an_item_outside_their_campaigns_does_not_exist(counselor, taxonomy):
    candidate = factories.make_candidate()
    api = _token_client(_speaking(counselor, "zh-hans"))
    response = api.post(reverse("api:review-create"), _review(candidate), format="json")
    assert response.status_code == 400
    unknown = api.post(reverse("api:review-create"), {**_review(candidate), "candidate": 10**9}, format="json")
    # The same words as for an id that does not exist at all: nothing tells the two apart.
    assert response.json()["candidate"] == [unknown.json()["candidate"][0].replace(str(10**9), str(candidate.pk))]
    assert "对象不存在" in response.json()["candidate"][0]
    assert not candidate.reviews.exists()


def test_a_hostile_body_is_refused_in_the_users_language_and_nothing_is_written(senior, taxonomy):
    candidate = factories.make_candidate()
    api = _token_client(_speaking(senior, "zh-hans"))
    body = _review(candidate, comment="fine\x00", risk_flags=["self_harm"])
    response = api.post(reverse("api:review-create"), body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == "comment 处不允许 NUL 字符（\\u0000）"
    denied = _token_client(_speaking(factories.make_user(None), "zh-hans"))
    refused = denied.post(reverse("api:review-create"), _review(candidate), format="json")
    assert refused.status_code == 403
    assert refused.json()["detail"] == "只有咨询师和资深临床专家可以编辑和评审。"
    assert not candidate.reviews.exists()
