"""A real Celery worker process for end-to-end tests, on the test database and the configured broker."""

import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection


def database_url() -> str:
    """The URL of the database the tests are using (the test database, not the configured one)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


@contextmanager
def celery_worker(
    log_path: Path,
    queues: str = "generation,default",
    ready_timeout: float = 120,
    broker_url: str | None = None,
    env: dict | None = None,
):
    """Start ``celery worker`` as a separate process, wait until it is ready, stop it afterwards.

    The worker uses the tests' broker unless ``broker_url`` names another; ``env`` adds environment variables.
    """
    broker_url = broker_url or settings.CELERY_BROKER_URL
    env = {**os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": broker_url, **(env or {})}
    if broker_url.startswith("filesystem://"):
        env["PSYROOM_BROKER_DIR"] = str(Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]).parent)
    command = [
        sys.executable, "-m", "celery", "-A", "psyroom_admin", "worker",
        "-Q", queues, "--pool", "solo", "--concurrency", "1",
        "--without-heartbeat", "--without-gossip", "--without-mingle",
        "-n", f"test-{uuid.uuid4().hex[:8]}@%h", "--loglevel", "INFO",
    ]  # fmt: skip
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + ready_timeout
        while "ready." not in log_path.read_text():
            if process.poll() is not None:
                raise RuntimeError(f"the Celery worker exited with {process.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker was not ready after {ready_timeout} s:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
