"""What a build records as it goes: which candidates it wrote (``ReleaseItem`` rows, written a batch at a time so
that a large release is never held in memory) and whether it should stop (checked once a batch).

The build calls ``tick`` once per candidate it reads and ``record`` once per candidate and format it writes. A
release that is no longer ``building`` (a curator cancelled it, or ``releases_fail_stale`` gave it up) stops its
build at the next batch with ``BuildStopped``. The rows written count only once the release is ready
(``selectors.release_items_visible``); a build that does not finish deletes them (``discard``).
"""

from django.db import connections, router

from .models import Release, ReleaseItem

BATCH = 500
# The columns of a ReleaseItem row as the build records them (in this order).
COLUMNS = ("release_id", "candidate_id", "revision_id", "format", "split", "rows")


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
        # (release_id, candidate_id, revision_id, format, split, rows): tuples, lighter than model instances.
        self._pending: list[tuple[int, int, int, str, str, int]] = []
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
        self._pending.append((self.release_id, candidate_id, revision_id, fmt, split, rows))
        if len(self._pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Write the rows recorded since the last flush: by COPY on PostgreSQL (Django's bulk insert binds each
        column as an array quoted in Python, several times slower for a million rows), else ``bulk_create``."""
        if not self._pending:
            return
        connection = connections[router.db_for_write(ReleaseItem)]
        if connection.vendor == "postgresql":
            quote = connection.ops.quote_name
            sql = f"COPY {quote(ReleaseItem._meta.db_table)} ({', '.join(quote(c) for c in COLUMNS)}) FROM STDIN"
            with (
                connection.cursor() as cursor,
                connection.wrap_database_errors,
                cursor.cursor.copy(sql) as copy,
            ):
                for row in self._pending:
                    copy.write_row(row)
        else:
            items = [ReleaseItem(**dict(zip(COLUMNS, row, strict=True))) for row in self._pending]
            ReleaseItem.objects.bulk_create(items, batch_size=self.batch)
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
