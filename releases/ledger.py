"""What a build records as it goes: which candidates it wrote (``ReleaseItem`` rows, written a batch at a time so
that a large release is never held in memory) and whether it should stop (checked once a batch).

The build calls ``tick`` once per candidate it reads and ``record`` once per candidate and format it writes. A
release that is no longer ``building`` (a curator cancelled it, or ``releases_fail_stale`` gave it up) stops its
build at the next batch with ``BuildStopped``. The rows written count only once the release is ready
(``selectors.release_items_visible``); a build that does not finish deletes them (``discard``).
"""

from .models import Release, ReleaseItem

BATCH = 500


class BuildStopped(Exception):
    """The release left ``building`` while its build ran (cancelled, or given up as stale): the build stops."""

    def __init__(self, release_id: int, status: str):
        self.status = status
        super().__init__(f"release {release_id} is {status}: its build stopped")


class BuildLedger:
    """The ``ReleaseItem`` rows of one build, and its cancel check (one query a ``batch`` of candidates read)."""

    def __init__(self, release_id: int, *, batch: int | None = None):
        self.release_id = release_id
        self.batch = batch or BATCH
        self.recorded = 0
        self._pending: list[ReleaseItem] = []
        self._ticks = 0

    def tick(self) -> None:
        """One candidate read; every ``batch`` of them, stop if the release is no longer building."""
        self._ticks += 1
        if self._ticks % self.batch == 0:
            self.check()

    def check(self) -> None:
        status = Release.objects.filter(pk=self.release_id).values_list("status", flat=True).first()
        if status != Release.Status.BUILDING:
            raise BuildStopped(self.release_id, status or "deleted")

    def record(self, *, candidate_id: int, revision_id: int, fmt: str, split: str, rows: int = 1) -> None:
        """``candidate_id`` (as ``revision_id``) gave ``rows`` rows to ``fmt``'s file of ``split``."""
        self._pending.append(
            ReleaseItem(
                release_id=self.release_id,
                candidate_id=candidate_id,
                revision_id=revision_id,
                format=fmt,
                split=split,
                rows=rows,
            )
        )
        if len(self._pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            ReleaseItem.objects.bulk_create(self._pending, batch_size=self.batch)
            self.recorded += len(self._pending)
            self._pending = []

    def discard(self) -> None:
        """Delete every row this build wrote (it failed or was cancelled: the release holds nothing)."""
        self._pending = []
        release_items_discard(release_id=self.release_id)


def release_items_discard(*, release_id: int) -> int:
    """Delete the ``ReleaseItem`` rows of a release that will never be ready; how many there were."""
    deleted, _ = ReleaseItem.objects.filter(release_id=release_id).delete()
    return deleted
