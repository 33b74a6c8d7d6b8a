"""What ``run_create`` was given to build a run's targets from, for the targets builder of each kind, and the
language the run writes in."""

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from ..models import Candidate, ClientProfile, Language, Scenario, SubEmotion


@dataclass(frozen=True)
class RunInputs:
    """The items a run is asked to work from; each kind's targets builder reads the ones it needs."""

    sub_emotions: list[SubEmotion]
    scenarios: list[Scenario]
    dialogues: list[Candidate]
    questions: list[Candidate]
    profiles: list[ClientProfile]


def run_language(*, language: object, sources: dict[str, list]) -> str:
    """The language a run writes in: the one asked for, else its sources', else English.

    ``sources`` names what the run works from (``{"scenarios": [...], "dialogues": [...]}``), each item with a
    ``language``: a plan, a reconstruction, a regeneration or a course session is written in its source's language,
    so sources in two languages, or in another language than the one asked for, are refused, naming them.
    """
    if language is not None and language not in Language.values:
        problem = _("must be one of %(choices)s, not %(value)r") % {
            "choices": ", ".join(Language.values),
            "value": language,
        }
        raise ValidationError(f"language: {problem}")
    found: dict[str, list[str]] = {}
    for what, items in sources.items():
        for item in items:
            found.setdefault(item.language, []).append(f"{what} {item.pk}")
    if len(found) > 1:
        listing = "; ".join(f"{lang}: {', '.join(names[:3])}" for lang, names in sorted(found.items()))
        problem = _("the run's sources are in more than one language (%(listing)s): start one run each") % {
            "listing": listing
        }
        raise ValidationError(f"language: {problem}")
    if found and language is not None and language not in found:
        other, names = next(iter(found.items()))
        problem = _(
            "the run is to write in %(language)r but %(sources)s is in %(other)r (a run writes in its "
            "sources' language)"
        ) % {"language": language, "sources": ", ".join(names[:3]), "other": other}
        raise ValidationError(f"language: {problem}")
    if found:
        return next(iter(found))
    return str(language) if language is not None else Language.ENGLISH.value
