"""Charts: plotly.min.js found in the installed wheel, its stylesheet as a file, figures as JSON data blocks and no
inline script (the CSP allows none)."""

import json
import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

from psyroom_admin.staticfiles import PACKAGE_DATA, plotly_css

from .test_views import _client

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_plotly_is_served_from_the_wheel():
    assert finders.find("vendor/plotly/plotly.min.js") == str(PACKAGE_DATA / "plotly.min.js")
    assert finders.find("vendor/plotly/widgetbundle.js") is None


def test_the_vendored_stylesheet_is_the_installed_plotly_s():
    # Regenerate with: python psyroom_admin/staticfiles.py > static/vendor/plotly/plotly.css
    assert (ROOT / "static" / "vendor" / "plotly" / "plotly.css").read_text() == plotly_css()


def _scripts(body: str) -> list[str]:
    return re.findall(r"<script\b[^>]*>", body)


@pytest.mark.parametrize(
    ("url", "chart"), [("/dashboards/coverage/", "coverage"), ("/dashboards/calibration/", "calibration-empathy")]
)
def test_pages_carry_figures_as_data_and_no_inline_script(calibration_world, curator, url, chart):
    body = _client(curator).get(url).content.decode()
    assert f'id="chart-{chart}"' in body
    block = re.search(rf'<script id="chart-data-{chart}" type="application/json">(.*?)</script>', body, re.S)
    assert block is not None
    assert json.loads(block.group(1))["data"][0]["marker"]["symbol"] == "square"
    assert 'id="plotly.js-style-global" class="no-inline-styles"' in body
    for tag in _scripts(body):
        assert "src=" in tag or 'type="application/json"' in tag, tag


def test_agreement_page_draws_the_drift(pair_campaign, senior):
    body = _client(senior).get(f"/dashboards/campaigns/{pair_campaign.pk}/agreement/").content.decode()
    block = re.search(r'<script id="chart-data-drift" type="application/json">(.*?)</script>', body, re.S)
    assert block is not None
    lines = json.loads(block.group(1))["data"]
    assert len(lines) == 2 and all(len(line["x"]) == 2 for line in lines)
