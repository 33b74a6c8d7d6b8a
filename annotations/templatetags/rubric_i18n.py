"""Texts stored in one language shown in the reader's: rubric texts and risk-flag names."""

from django import template
from django.utils.translation import gettext

register = template.Library()


@register.filter
def rubric_text(value) -> str:
    """A rubric's stored (English) text in the active language: its catalog text, else as it is.

    One rubric, two texts: the row keeps the definition; a language only changes how it reads
    (annotations/rubrics.py)."""
    if not isinstance(value, str) or not value:
        return value
    return gettext(value)


@register.filter
def flag_labels(flags) -> str:
    """The names of ``flags`` (rows with a ``label``) as one list in the active language."""
    # Translators: the separator between risk-flag names in a sentence ("Harmful advice; Boundary violation").
    separator = gettext("; ")
    return separator.join(str(flag["label"] if isinstance(flag, dict) else flag.label) for flag in flags)
