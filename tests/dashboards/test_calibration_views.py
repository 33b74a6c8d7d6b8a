"""The calibration page and API: roles, filters, drill-down, CSV, empty state."""

import html

import pytest

from .test_views import _client, _csv

pytestmark = pytest.mark.django_db

PAGE = "/dashboards/calibration/"
API = "/api/dashboards/calibration/"


@pytest.mark.parametrize("role", ["senior", "curator"])
def test_page_for_roles_that_see_all(request, calibration_world, role):
    response = _client(request.getfixturevalue(role)).get(PAGE)
    assert response.status_code == 200
    body = response.content.decode()
    assert "0.800" in body and "-0.100" in body
    assert 'href="?category=anxiety"' in body


def test_counselor_outsider_and_anonymous(calibration_world, counselor, outsider):
    assert _client(counselor).get(PAGE).status_code == 403
    assert _client(outsider).get(PAGE).status_code == 403
    assert _client(None).get(PAGE).status_code == 302
    assert _client(counselor).get(API).status_code == 403
    assert _client(None).get(API).status_code in (401, 403)
    assert _client(counselor).post(PAGE).status_code in (403, 405)


def test_drill_down_and_csv(calibration_world, senior):
    client = _client(senior)
    response = client.get(PAGE, {"category": "anxiety", "format": "csv", "table": "confusion"})
    assert response.status_code == 200
    rows = _csv(response)
    assert rows[0][:3] == ["Model", "Prompt version", "Target"]
    assert rows[0][-2:] == ["Another category", "No label"]
    assert len(rows) == 1 + 4 * 2  # four anxiety sub-emotions, all together and the one model
    criteria = _csv(client.get(PAGE, {"format": "csv", "table": "criteria"}))
    empathy = next(r for r in criteria if r[0] == "(all)" and r[2].startswith("Empathy"))
    assert empathy[3:5] == ["5", "0.8000"]


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ({"model": "nope"}, "model"),
        ({"prompt_version": "v9"}, "prompt_version"),
        ({"campaign": "999999"}, "campaign"),
        ({"campaign": "x"}, "campaign"),
        ({"category": "joy"}, "category"),
        ({"since": "2026-02-30"}, "since"),
        ({"since": "2026-05-02", "until": "2026-05-01"}, "until"),
        ({"colour": "red"}, "colour"),
        ({"campaign": "99999999999999999999"}, "campaign"),
    ],
)
def test_bad_filters_are_400(calibration_world, senior, query, name):
    client = _client(senior)
    page = client.get(PAGE, query)
    assert page.status_code == 400
    assert f'"{name}"' in html.unescape(page.content.decode())
    api = client.get(API, query)
    assert api.status_code == 400
    assert name in api.json()


def test_api_numbers(calibration_world, curator):
    data = _client(curator).get(API, {"campaign": calibration_world["campaign"].pk}).json()
    overall = data["groups"][0]
    assert data["filters"]["campaign"] == calibration_world["campaign"].pk
    empathy = next(c for c in overall["criteria"] if c["key"] == "empathy")
    assert empathy["spearman"]["value"] == pytest.approx(0.8)
    assert empathy["bias"]["value"] == pytest.approx(-0.1)
    assert overall["accuracy"]["value"] == pytest.approx(0.25)
    assert overall["confusion"]["columns"][-1]["key"] == "none"


def test_empty_state(taxonomy, curator):
    response = _client(curator).get(PAGE)
    assert response.status_code == 200
    assert 'id="calibration-empty"' in response.content.decode()
    data = _client(curator).get(API).json()
    reason = "no candidate with a target sub-emotion was classified"
    assert data["groups"][0]["accuracy"] == {"value": None, "reason": reason}
