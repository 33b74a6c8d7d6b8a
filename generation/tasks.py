"""Celery entry points of the generation app: thin, taking ids, calling services."""

import logging

from celery import shared_task
from celery.signals import worker_ready

from .services.runs import run_execute, runs_resume_stalled

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def generate_run(run_id: int) -> dict | None:
    """Generate the next chunk of a run's missing items, then queue the run again for the rest (routed to the
    ``generation`` queue). One task is one chunk: what a dead worker's broker delivers again is that chunk."""
    run = run_execute(run_id=run_id, max_chunks=1)
    if run is None:
        return None
    return {"run": run.pk, "status": run.status, "done": run.done, "failed": run.failed}


@shared_task
def resume_stalled_runs() -> list[int]:
    """Resume the runs whose worker died (for a periodic schedule, where Celery beat runs)."""
    return runs_resume_stalled()


@worker_ready.connect
def _resume_stalled_on_start(**kwargs) -> None:
    """A worker that starts takes up the runs a dead worker left: the embedded setup (`make run`) has no beat."""
    try:
        resumed = runs_resume_stalled()
    except Exception:
        # A worker must start even when the sweep cannot run (the database is migrating, say).
        logger.exception("stalled runs could not be resumed at start-up")
        return
    if resumed:
        logger.info("resumed stalled runs %s", resumed)
