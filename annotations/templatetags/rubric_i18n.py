"""Texts stored in one language shown in the reader's: rubric texts, risk-flag names, sub-emotion names."""

from django import template
from django.utils.translation import get_language, gettext

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


@register.filter
def sub_emotion_label(sub_emotion) -> str:
    """A sub-emotion's name in the active language: the taxonomy has both (``label_zh``, ``label_en``)."""
    if sub_emotion is None:
        return ""
    if get_language() == "zh-hans" and sub_emotion.label_zh:
        return sub_emotion.label_zh
    return sub_emotion.label_en
