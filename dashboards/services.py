"""The one thing a dashboard starts: generation runs that fill the coverage gaps, through generation's run service
(``generation.services.runs.run_create``: its role check, per-user run limit and queueing apply unchanged)."""

from collections import defaultdict
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from generation.models import GenerationRun, SubEmotion
from generation.services import runs as run_services
from generation.services.runs import QueueUnavailable

__all__ = ["Fill", "QueueUnavailable", "coverage_fill"]

from .selectors.coverage import coverage_get


@dataclass
class Fill:
    runs: list[GenerationRun] = field(default_factory=list)
    # Why the runs stopped short of every gap (the user's run limit), or "".
    stopped: str = ""


def coverage_fill(*, user, keys: list[str] | None = None) -> Fill:
    """Start dialogue runs for exactly what the sub-emotions' gaps lack (every gap, or those of ``keys``).

    A run cycles through its sub-emotions, so the gaps are grouped by size: one run per size, ``size x n`` dialogues
    over the ``n`` sub-emotions missing that many (most gaps are a whole quota, so this is mostly one run). Raises
    ``ValidationError`` when nothing is missing or no run could start, ``PermissionDenied`` for a user who may not
    start runs and ``QueueUnavailable`` as ``run_create`` does; a limit or an outage met after some runs started is
    in ``stopped``.
    """
    gaps = [g for g in coverage_get().gaps if keys is None or g.key in keys]
    if not gaps:
        raise ValidationError("nothing is missing: every chosen sub-emotion has its quota")
    by_size: dict[int, list[str]] = defaultdict(list)
    for gap in gaps:
        by_size[gap.missing].append(gap.key)
    subs = SubEmotion.objects.in_bulk([g.key for g in gaps], field_name="key")
    fill = Fill()
    for size, group in sorted(by_size.items(), reverse=True):
        try:
            run = run_services.run_create(
                kind="dialogue", count=size * len(group), sub_emotions=[subs[k] for k in group], created_by=user
            )
        except (ValidationError, QueueUnavailable) as error:
            if not fill.runs:
                raise
            fill.stopped = " ".join(error.messages) if isinstance(error, ValidationError) else str(error)
            break
        fill.runs.append(run)
    return fill
