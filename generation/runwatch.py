"""What a worker tells about the run it executes, while it executes it: a heartbeat, progress per model call, and
whether it should stop.

``services.runs.run_execute`` opens a ``RunWatch`` around its work and hands the pipelines ``watch.wrap(backend)``:
every batched model call (one turn of every dialogue of a chunk, one round of the supervisor...) then goes through
``WatchedBackend.generate``, which

- before the call, and between decode steps or while waiting for a model server (``SamplingParams.interrupt``),
  runs ``RunWatch.check``: at most once a second, one conditional UPDATE writes the heartbeat and the chunk's
  progress *only while the run is running*; when it matches no row (the run was cancelled, finished or handed to
  another worker) ``RunClosed`` is raised and the pipeline stops where it is;
- after the call, adds the call's tokens to the chunk's progress.

One place for all pipelines: each makes all its model calls through the backend it is given. A background thread
also writes the heartbeat every ``PSYROOM_RUN_HEARTBEAT_S`` seconds, so that a model load or a long single step
does not make a live run look dead. Pipelines may name their stage (``pipelines.dialogue.report_stage``).
"""

import logging
import threading
import time
from dataclasses import replace

from django.db import DatabaseError, connection
from django.utils import timezone

from .models import GenerationRun

logger = logging.getLogger(__name__)

# The most often the status is read back and progress written, in seconds: cheap next to a model call.
CHECK_INTERVAL_S = 1.0


class RunClosed(Exception):
    """The run is no longer running here (cancelled, finished, or taken over after it stalled): stop, save nothing."""


class RunWatch:
    def __init__(self, run_id: int, *, heartbeat_s: float):
        self.run_id = run_id
        self.heartbeat_s = heartbeat_s
        self.stage = ""
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._checked = float("-inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "RunWatch":
        if self.heartbeat_s > 0:
            self._thread = threading.Thread(target=self._beat, name=f"run-{self.run_id}-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _beat(self) -> None:
        """The heartbeat thread: only the timestamp, only while the run is running (never progress: the main thread
        owns it)."""
        try:
            while not self._stop.wait(self.heartbeat_s):
                try:
                    GenerationRun.objects.filter(pk=self.run_id, status=GenerationRun.Status.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                except DatabaseError:
                    # A database that is briefly away must not kill the run; the next beat tries again.
                    logger.warning("run %s: the heartbeat could not be written", self.run_id, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    def wrap(self, backend):
        """``backend`` with every model call watched (already watched backends are returned as they are); a mapping
        of spec names to backends (a question run's models, in tests) has each of them watched."""
        if isinstance(backend, dict):
            return {name: self.wrap(b) for name, b in backend.items()}
        return backend if isinstance(backend, WatchedBackend) else WatchedBackend(backend, self)

    def note(self, stage: str) -> None:
        """Where the pipeline is in the chunk ("turn 3 of 6"); written with the next check."""
        self.stage = stage

    def check(self, *, force: bool = False) -> None:
        """Write the heartbeat and progress (at most once per ``CHECK_INTERVAL_S``) while the run is running; raise
        ``RunClosed`` when it no longer is."""
        now = time.monotonic()
        if not force and now - self._checked < CHECK_INTERVAL_S:
            return
        self._checked = now
        stamp = timezone.now()
        progress = {
            "stage": self.stage,
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "updated_at": stamp.isoformat(),
        }
        running = GenerationRun.objects.filter(pk=self.run_id, status=GenerationRun.Status.RUNNING).update(
            heartbeat_at=stamp, chunk_progress=progress
        )
        if not running:
            raise RunClosed(f"run {self.run_id} is no longer running")

    def counted(self, completions) -> None:
        self.calls += 1
        self.prompt_tokens += sum(c.prompt_tokens for c in completions)
        self.completion_tokens += sum(c.completion_tokens for c in completions)

    def chunk_saved(self) -> None:
        """The chunk in flight was saved with its tokens (``services.runs.run_record_chunk``): start the next at 0."""
        self.stage = ""
        self.calls = self.prompt_tokens = self.completion_tokens = 0


class WatchedBackend:
    """A backend whose every call is watched by a ``RunWatch``; anything else is the wrapped backend's."""

    def __init__(self, backend, watch: RunWatch):
        self.backend = backend
        self.watch = watch

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def generate(self, prompts, params):
        self.watch.check()
        completions = self.backend.generate(prompts, replace(params, interrupt=self.watch.check))
        self.watch.counted(completions)
        self.watch.check()
        return completions
