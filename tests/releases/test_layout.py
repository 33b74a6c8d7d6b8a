"""Which apps releases/ may import: generation through its models, its selectors and its training system prompt,
annotations, psyroom_admin; never dashboards (which imports releases) nor accounts."""

from tests.dashboards.test_layout import ROOT, _imports


def test_releases_imports_generation_only_through_models_selectors_and_training_and_never_dashboards():
    checked = 0
    for path in (ROOT / "releases").rglob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            assert top not in ("dashboards", "accounts"), f"{path}: {name}"
            if top == "generation":
                checked += 1
                allowed = ("generation.models.", "generation.selectors", "generation.training.")
                assert name.startswith(allowed), f"{path}: {name}"
    assert checked
