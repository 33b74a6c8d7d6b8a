import json
from pathlib import Path

import pytest

from releases import services


@pytest.fixture(autouse=True)
def releases_dir(settings, tmp_path) -> Path:
    settings.PSYROOM_RELEASES_DIR = tmp_path / "releases"
    return settings.PSYROOM_RELEASES_DIR


@pytest.fixture
def build(db):
    """Create and build a release from a spec now (as ``manage.py release build`` does)."""
    counter = iter(range(1, 1000))

    def make(spec: dict, *, user=None, name="test"):
        release = services.release_create(name=name, version=str(next(counter)), spec=spec, user=user, queue=False)
        return services.release_build(release=release)

    return make


def rows(release, name: str) -> list[dict]:
    path = services.release_dir(release) / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def all_rows(release, fmt: str) -> list[dict]:
    return [row for split in ("train", "validation", "test") for row in _rows_if(release, f"{fmt}/{split}.jsonl")]


def _rows_if(release, name):
    path = services.release_dir(release) / name
    return rows(release, name) if path.exists() else []
