"""dashboards/ reads the other apps; none of them imports it (only the project's URLs name it)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from generation import selectors" imports generation.selectors.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_app_imports_dashboards():
    offenders = []
    for app in ("generation", "annotations", "accounts", "releases", "psyroom_admin"):
        for path in (ROOT / app).rglob("*.py"):
            if any(name == "dashboards" or name.startswith("dashboards.") for name in _imports(path)):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_dashboards_reads_generation_only_through_models_and_selectors():
    # The one write: dashboards/services.py starts runs that fill the coverage gaps through the run service.
    for path in (ROOT / "dashboards").rglob("*.py"):
        allowed = ("generation.models.", "generation.selectors")
        if path == ROOT / "dashboards" / "services.py":
            allowed += ("generation.services.runs",)
        for name in _imports(path):
            if name == "generation" or name.startswith("generation."):
                assert name.startswith(allowed), f"{path}: {name}"


def test_stats_needs_no_django():
    assert not any(name.startswith("django") for name in _imports(ROOT / "dashboards" / "stats.py"))


def test_dashboards_reads_releases_only_through_models_and_selectors():
    # Released and exported counts come from releases.selectors; releases never imports dashboards (above): its
    # agreement figures are handed over by DashboardsConfig.ready.
    found = []
    for path in (ROOT / "dashboards").rglob("*.py"):
        for name in _imports(path):
            if name == "releases" or name.startswith("releases."):
                found.append(name)
                assert name.startswith(("releases.models", "releases.selectors", "releases.agreement.")), (path, name)
    assert found  # the check above checked something
