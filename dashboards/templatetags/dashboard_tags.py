"""How a dashboard cell reads: a number to three places, or "undefined" with its reason (never 0 or 1)."""

from django import template
from django.utils.html import format_html

from dashboards.stats import Estimate

register = template.Library()


@register.filter
def cell(value):
    if isinstance(value, Estimate):
        if value.value is None:
            return format_html(
                '<span class="undefined" title="{}">undefined</span> <span class="muted small">({})</span>',
                value.reason,
                value.reason,
            )
        return f"{value.value:.3f}"
    # A drill-down (dashboards.views.Link).
    if hasattr(value, "url") and hasattr(value, "text"):
        return format_html('<a href="{}">{}</a>', value.url, value.text)
    return value


@register.filter
def is_number(value) -> bool:
    return isinstance(value, Estimate | int | float)


@register.filter
def sort_value(value) -> str:
    """What a sortable table sorts a number by (static/js/dashboards.js); empty for an undefined value."""
    if isinstance(value, Estimate):
        return "" if value.value is None else repr(value.value)
    return str(value)
