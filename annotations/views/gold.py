"""The reference items page of a campaign (curators and administrators): mark an approved candidate with its
reference scores and decision, see the marked ones and how often they were reviewed, unmark one.

The rules are ``annotations.services.gold``'s; this page checks access, reads the form and calls one service.
"""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from generation import selectors as gen_selectors
from psyroom_admin import roles

from ..models import Campaign, Review
from ..rubrics import SCALE
from ..selectors import gold as gold_selectors
from ..selectors import visibility
from ..services import gold


def _get_campaign_for_curator(request: HttpRequest, campaign_id: int) -> Campaign:
    if not roles.user_has_role(request.user, *gold.GOLD_MANAGERS):
        raise PermissionDenied(gettext("Only curators and administrators mark reference items."))
    return get_object_or_404(visibility.campaign_list_for(user=request.user), pk=campaign_id)


class GoldForm(forms.Form):
    """The candidate, the decision and one score per criterion of the campaign's rubric (range: the service's)."""

    candidate = forms.IntegerField(min_value=1, max_value=2**63 - 1, label=gettext_lazy("Candidate id"))
    decision = forms.ChoiceField(choices=Review.Decision.choices, label=gettext_lazy("Reference decision"))

    def __init__(self, *args, campaign: Campaign, **kwargs):
        super().__init__(*args, **kwargs)
        self.criteria = [c["key"] for c in campaign.rubric.criteria]
        for criterion in campaign.rubric.criteria:
            self.fields[f"score_{criterion['key']}"] = forms.IntegerField(
                label=criterion.get("label", criterion["key"]), min_value=SCALE[0], max_value=SCALE[1]
            )

    def scores(self) -> dict:
        return {key: self.cleaned_data[f"score_{key}"] for key in self.criteria}


def _add_errors(form: GoldForm, error: ValidationError) -> None:
    for field, field_errors in error.message_dict.items():
        form.add_error(field if field in form.fields else None, field_errors)


@login_required
@require_http_methods(["GET", "POST"])
def campaign_gold(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = _get_campaign_for_curator(request, campaign_id)
    initial = {"candidate": request.GET["candidate"]} if request.GET.get("candidate", "").isdigit() else None
    form = GoldForm(request.POST or None, initial=initial, campaign=campaign)
    if request.method == "POST" and form.is_valid():
        candidate = gen_selectors.candidate_list().filter(pk=form.cleaned_data["candidate"]).first()
        if candidate is None:
            form.add_error(
                "candidate", gettext("No candidate with id %(id)s.") % {"id": form.cleaned_data["candidate"]}
            )
        else:
            try:
                gold.gold_mark(
                    campaign=campaign,
                    candidate=candidate,
                    user=request.user,
                    scores=form.scores(),
                    decision=form.cleaned_data["decision"],
                )
            except ValidationError as error:
                _add_errors(form, error)
            else:
                messages.success(request, gettext("%(candidate)s is a reference item now.") % {"candidate": candidate})
                return redirect("annotations:campaign_gold", campaign.pk)
    context = {
        "campaign": campaign,
        "form": form,
        "items": gold_selectors.gold_list(campaign=campaign, user=request.user),
        "rate": visibility.campaign_policy_for(user=request.user, campaign=campaign).get("gold_rate", 0.0),
    }
    return render(request, "annotations/campaign_gold.html", context, status=400 if form.errors else 200)


@login_required
@require_POST
def campaign_gold_unmark(request: HttpRequest, campaign_id: int, candidate_id: int) -> HttpResponse:
    campaign = _get_campaign_for_curator(request, campaign_id)
    candidate = get_object_or_404(gen_selectors.candidate_list(), pk=candidate_id)
    try:
        gold.gold_unmark(campaign=campaign, candidate=candidate, user=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(
            request, gettext("%(candidate)s is no longer served as a reference item.") % {"candidate": candidate}
        )
    return redirect("annotations:campaign_gold", campaign.pk)
