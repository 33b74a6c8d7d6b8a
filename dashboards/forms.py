"""The dashboards' filters, as the pages read them from the URL (the API's serializer checks the same names)."""

from collections.abc import Iterable

from django import forms

from .selectors import AgreementFilters

# The filters of the agreement page and endpoint; any other query parameter is refused, naming it.
AGREEMENT_FILTERS = ("since", "until")


def unknown_parameters(names: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """The query parameters that are not among ``allowed``, sorted."""
    return sorted(set(names) - set(allowed))


class AgreementFilterForm(forms.Form):
    since = forms.DateField(required=False, input_formats=["%Y-%m-%d"], help_text="YYYY-MM-DD")
    until = forms.DateField(required=False, input_formats=["%Y-%m-%d"], help_text="YYYY-MM-DD")

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "must be on or after since")
        return data

    def filters(self) -> AgreementFilters:
        return AgreementFilters(since=self.cleaned_data.get("since"), until=self.cleaned_data.get("until"))
