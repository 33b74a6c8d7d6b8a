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
