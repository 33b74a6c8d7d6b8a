import os
from pathlib import Path

import pytest
from django.conf import settings

from generation.services.taxonomy import taxonomy_load
from psyroom_admin import roles

from . import factories

# Playwright's sync API runs an event loop in the test's thread; the ORM calls the tests make around it are
# synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

# The API's world (``people``, ``world``), shared by the hostile-input, fuzz and idempotency tests.
pytest_plugins = ["tests.api_world"]


def pytest_configure(config):
    """A fast password hasher for the tests (only); in CI (PSYROOM_REQUIRE_SERVICES=1) the suite runs against
    PostgreSQL and Redis or not at all."""
    # PBKDF2's hundreds of thousands of rounds per user made would dominate the suite; nothing here needs them.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # The suite speaks plain HTTP (the test client, the live server and its browser), also where DEBUG is off because
    # DATABASE_URL is set (CI): the HTTPS-only settings are checked in a production environment by test_security.py.
    settings.SECURE_SSL_REDIRECT = False
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    broker_isolate(os.environ.get("PYTEST_XDIST_WORKER"))
    # Tests that run a run in process hold it in their transaction: a heartbeat thread with its own connection would
    # wait on that transaction's lock (SQLite). Heartbeats then come with each model call; the workers that tests
    # start get their own settings from the environment.
    settings.PSYROOM_RUN_HEARTBEAT_S = 0
    if os.environ.get("PSYROOM_REQUIRE_SERVICES") != "1":
        return
    engine = settings.DATABASES["default"]["ENGINE"]
    if not engine.endswith("postgresql"):
        raise pytest.UsageError(f"PSYROOM_REQUIRE_SERVICES=1 but DATABASE_URL is not PostgreSQL ({engine})")
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        raise pytest.UsageError(
            f"PSYROOM_REQUIRE_SERVICES=1 but CELERY_BROKER_URL is not Redis: {settings.CELERY_BROKER_URL}"
        )
    import redis

    try:
        redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        raise pytest.UsageError(f"Redis at {settings.CELERY_BROKER_URL} is not reachable: {error}") from error


def broker_isolate(worker: str | None) -> None:
    """Under pytest-xdist each test process gets a broker of its own (a folder, or a Redis key prefix), passed on
    in the environment to the Celery workers its tests start: one process's worker never takes another's task."""
    if not worker:
        return
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        folder = Path(options["data_folder_in"]).parent
        folder = folder.with_name(f"{folder.name}-{worker}")
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        options.update(
            data_folder_in=str(folder / "queue"),
            data_folder_out=str(folder / "queue"),
            processed_folder=str(folder / "processed"),
            control_folder=str(folder / "control"),
        )
        os.environ["PSYROOM_BROKER_DIR"] = str(folder)
    else:
        prefix = f"{os.environ.get('PSYROOM_BROKER_KEYPREFIX', '')}{worker}:"
        options["global_keyprefix"] = prefix
        os.environ["PSYROOM_BROKER_KEYPREFIX"] = prefix


@pytest.fixture
def taxonomy(db):
    taxonomy_load()


@pytest.fixture
def role_groups(db):
    roles.roles_ensure()


@pytest.fixture
def counselor(db):
    return factories.make_user(roles.COUNSELOR)


@pytest.fixture
def other_counselor(db):
    return factories.make_user(roles.COUNSELOR)


@pytest.fixture
def senior(db):
    return factories.make_user(roles.SENIOR_CLINICIAN)


@pytest.fixture
def curator(db):
    return factories.make_user(roles.CURATOR, is_staff=True)


@pytest.fixture
def outsider(db):
    """A logged-in user with no role."""
    return factories.make_user(None)


@pytest.fixture
def candidate(taxonomy):
    return factories.make_candidate()
