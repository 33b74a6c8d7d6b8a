"""The activity page: the audit trail for curators and admins, filtered by kind, person and date."""

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from psyroom_admin import roles

from ..selectors.activity import ACTIVITY_KINDS, activity_list

PAGE_SIZE = 50
KIND_LABELS = {
    "imports": _("Imports"),
    "runs": _("Generation runs"),
    "reviews": _("Reviews and edits"),
    "sign_offs": _("Risk sign-offs"),
    "exports": _("Exports and releases"),
    "campaigns": _("Campaigns"),
    "accounts": _("Roles and sign-in"),
}
SYSTEM = "-"


class ActivityFilterForm(forms.Form):
    kind = forms.ChoiceField(
        label=_("Kind"), required=False, choices=[("", _("All")), *((k, KIND_LABELS[k]) for k in ACTIVITY_KINDS)]
    )
    actor = forms.CharField(
        label=_("Person"), required=False, max_length=150, help_text=_("A username, or - for the system")
    )
    since = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", _("The end date is before the start date."))
        return data

    def filters(self) -> dict:
        """The selector's filters: none of them where the form is not valid (its errors are shown instead)."""
        if not self.is_valid():
            return {}
        data = self.cleaned_data
        actor = data["actor"].strip()
        return {
            "kind": data["kind"] or None,
            "actor": "" if actor == SYSTEM else actor or None,
            "since": data["since"],
            "until": data["until"],
        }


@login_required
@require_GET
def activity_page(request: HttpRequest) -> HttpResponse:
    if not roles.user_can_read_audit(request.user):
        raise PermissionDenied(_("Only curators and admins may read the activity log."))
    form = ActivityFilterForm(request.GET)
    filters = form.filters()
    events = activity_list(user=request.user, **filters) if form.is_valid() else activity_list(user=request.user)[:0]
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    status = 200 if form.is_valid() else 400
    return render(
        request, "annotations/activity.html", {"form": form, "page": page, "query": query.urlencode()}, status=status
    )
