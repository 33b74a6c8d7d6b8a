"""The dashboards' filters, as the pages read them from the URL (the API's serializer checks the same names)."""

from collections.abc import Iterable

from django import forms
from django.core.exceptions import ValidationError

from generation.models import ModelSpec, SubEmotion

from .selectors import AgreementFilters


def sub_emotion_exists(value: str) -> None:
    if value and not SubEmotion.objects.filter(key=value).exists():
        raise ValidationError(f"no sub-emotion with the key {value!r} (keys look like anxiety.1)")


def model_exists(value: str) -> None:
    if value and not ModelSpec.objects.filter(name=value).exists():
        raise ValidationError(f"no model spec named {value!r}")


def unknown_parameters(names: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """The query parameters that are not among ``allowed``, sorted."""
    return sorted(set(names) - set(allowed))


class AgreementFilterForm(forms.Form):
    since = forms.DateField(required=False, input_formats=["%Y-%m-%d"], help_text="YYYY-MM-DD")
    until = forms.DateField(required=False, input_formats=["%Y-%m-%d"], help_text="YYYY-MM-DD")
    sub_emotion = forms.CharField(required=False, max_length=32, validators=[sub_emotion_exists])
    model = forms.CharField(required=False, max_length=100, validators=[model_exists])

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "must be on or after since")
        return data

    def filters(self) -> AgreementFilters:
        data = self.cleaned_data
        return AgreementFilters(
            since=data.get("since"),
            until=data.get("until"),
            sub_emotion=data.get("sub_emotion") or None,
            model=data.get("model") or None,
        )
