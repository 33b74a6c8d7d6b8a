"""Small template helpers of the review pages."""

from django import template
from django.utils.html import format_html

register = template.Library()

# Every hidden version field on a candidate's page carries this class, so that one out-of-band swap after a turn
# edit brings them all to the new version (the review form included).
VERSION_CLASS = "candidate-version"


@register.simple_tag
def candidate_version_input(candidate, oob: bool = False):
    """A hidden ``version`` input with the candidate's current version; ``oob=True`` replaces every one on the page."""
    if oob:
        return format_html(
            '<input type="hidden" name="version" class="{}" value="{}" hx-swap-oob="outerHTML:input.{}">',
            VERSION_CLASS,
            candidate.version,
            VERSION_CLASS,
        )
    return format_html('<input type="hidden" name="version" class="{}" value="{}">', VERSION_CLASS, candidate.version)


@register.filter
def role_label(role: str) -> str:
    """A turn's speaker, in both languages of the data set."""
    return {"client": "Client · 来访者", "counselor": "Counselor · 咨询师"}.get(role, role)
