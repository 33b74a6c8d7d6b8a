"""Celery entry points of the generation app: thin, taking ids, calling services."""

from celery import shared_task

from . import services


@shared_task(acks_late=True)
def generate_run(run_id: int) -> dict | None:
    """Generate the missing items of a run (routed to the ``generation`` queue)."""
    run = services.run_execute(run_id=run_id)
    if run is None:
        return None
    return {"run": run.pk, "status": run.status, "done": run.done, "failed": run.failed}
