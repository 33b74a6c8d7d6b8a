"""Rubrics: the default rubric of each kind, created from the reference definitions in ``annotations.rubrics``."""

from django.core.exceptions import ValidationError

from ..models import Rubric
from ..rubrics import DEFAULTS


def rubric_get_default(*, kind: str) -> Rubric:
    """The newest rubric of the default family for a kind, created from ``rubrics.DEFAULTS`` on first use."""
    definition = DEFAULTS.get(kind)
    if definition is None:
        raise ValidationError(f"kind: no default rubric for {kind!r}")
    rubric, _ = Rubric.objects.get_or_create(
        kind=kind,
        name=definition["name"],
        version=definition["version"],
        defaults={"criteria": definition["criteria"]},
    )
    return rubric
