"""Template helpers of the campaign pages: the diff of an edited text, and the guidelines rendered from Markdown."""

import difflib
import functools
import re

from django import template
from django.utils.html import escape
from django.utils.safestring import mark_safe
from markdown_it import MarkdownIt

register = template.Library()

# Raw HTML in the guidelines is shown as text and unsafe links (javascript:) are refused: curators write them,
# counselors read them, and neither should be able to run script in the other's session.
_MARKDOWN = MarkdownIt("commonmark", {"html": False})
# The units of a diff: a run of spaces, one CJK character (Chinese has no spaces, and a word-level diff of a
# Chinese sentence shows the whole sentence deleted and written again for a one-character change), or a run of
# anything else (a Latin-script word with its punctuation).
_CJK = "\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_UNITS = re.compile(rf"\s+|[{_CJK}]|[^\s{_CJK}]+")


def diff_units(text: str) -> list[str]:
    """``text`` cut into what a diff compares: characters in Chinese (and Japanese), words in Latin scripts."""
    return _UNITS.findall(text)


@register.filter
def text_diff(before: str | None, after: str | None) -> str:
    """``before`` → ``after`` as escaped HTML with ``<del>`` and ``<ins>``: character by character in Chinese, word
    by word in Latin scripts (``diff_units``).

    Server-side so that what the counselor sees is exactly what the revision holds (no client diff library).
    """
    old = diff_units(before or "")
    new = diff_units(after or "")
    parts: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op == "equal":
            parts.append(escape("".join(old[i1:i2])))
            continue
        if i2 > i1:
            parts.append(f"<del>{escape(''.join(old[i1:i2]))}</del>")
        if j2 > j1:
            parts.append(f"<ins>{escape(''.join(new[j1:j2]))}</ins>")
    return mark_safe("".join(parts))  # noqa: S308 - every piece above is escaped


@register.filter
def markdown(text: str | None) -> str:
    return mark_safe(_markdown_html(text or ""))  # noqa: S308 - raw HTML is disabled in the renderer


@functools.lru_cache(maxsize=64)
def _markdown_html(text: str) -> str:
    # A campaign's guidelines are rendered on every review page (the item panel); they rarely change.
    return _MARKDOWN.render(text)


@register.inclusion_tag("annotations/_campaign_history.html", takes_context=True)
def candidate_history_card(context, candidate):
    """The history card of a candidate for the page's user (the candidate page has no campaign view of its own)."""
    # Imported here: the template library is loaded by pages that exist before and without campaigns.
    from annotations.selectors import visibility

    user = context["user"]
    return {"history": visibility.candidate_history(candidate=candidate, user=user).select_related("actor")[:50]}
