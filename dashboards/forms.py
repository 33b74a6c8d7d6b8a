"""The dashboards' filters, as the pages read them from the URL (the API's serializer checks the same names)."""

from collections.abc import Iterable

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from annotations.models import Campaign
from generation.models import EmotionCategory, GenerationRun, ModelSpec, SubEmotion

from .selectors import AgreementFilters
from .selectors.calibration import CalibrationFilters
from .selectors.funnel import GROUPS, FunnelFilters


def sub_emotion_exists(value: str) -> None:
    if value and not SubEmotion.objects.filter(key=value).exists():
        raise ValidationError(f"no sub-emotion with the key {value!r} (keys look like anxiety.1)")


def model_exists(value: str) -> None:
    if value and not ModelSpec.objects.filter(name=value).exists():
        raise ValidationError(f"no model spec named {value!r}")


def unknown_parameters(names: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """The query parameters that are not among ``allowed``, sorted."""
    return sorted(set(names) - set(allowed))


class DateRangeForm(forms.Form):
    since = forms.DateField(required=False, input_formats=["%Y-%m-%d"], help_text="YYYY-MM-DD")
    until = forms.DateField(required=False, input_formats=["%Y-%m-%d"], help_text="YYYY-MM-DD")

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "must be on or after since")
        return data


class AgreementFilterForm(DateRangeForm):
    sub_emotion = forms.CharField(required=False, max_length=32, validators=[sub_emotion_exists])
    model = forms.CharField(required=False, max_length=100, validators=[model_exists])

    def filters(self) -> AgreementFilters:
        data = self.cleaned_data
        return AgreementFilters(
            since=data.get("since"),
            until=data.get("until"),
            sub_emotion=data.get("sub_emotion") or None,
            model=data.get("model") or None,
        )


def prompt_version_exists(value: str) -> None:
    if value and not GenerationRun.objects.filter(prompt_version=value).exists():
        raise ValidationError(f"no generation run used the prompt version {value!r}")


def category_exists(value: str) -> None:
    if value and not EmotionCategory.objects.filter(key=value).exists():
        raise ValidationError(f"no emotion category with the key {value!r} (keys look like anxiety)")


class CalibrationFilterForm(DateRangeForm):
    """The calibration page's filters; ``campaigns`` are the campaigns the viewer may open."""

    model = forms.CharField(required=False, max_length=100, validators=[model_exists])
    prompt_version = forms.CharField(required=False, max_length=32, validators=[prompt_version_exists])
    campaign = forms.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    category = forms.CharField(required=False, max_length=32, validators=[category_exists])

    def __init__(self, *args, campaigns: QuerySet[Campaign], **kwargs):
        super().__init__(*args, **kwargs)
        self.campaigns = campaigns

    def clean_campaign(self) -> Campaign | None:
        pk = self.cleaned_data.get("campaign")
        if pk is None:
            return None
        campaign = self.campaigns.filter(pk=pk).first()
        if campaign is None:
            raise ValidationError(f"no campaign {pk} that you may open")
        return campaign

    def filters(self) -> CalibrationFilters:
        data = self.cleaned_data
        return CalibrationFilters(
            since=data.get("since"),
            until=data.get("until"),
            model=data.get("model") or None,
            prompt_version=data.get("prompt_version") or None,
            campaign=data.get("campaign"),
            category=data.get("category") or None,
        )


class FunnelFilterForm(DateRangeForm):
    campaign = forms.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    by = forms.ChoiceField(required=False, choices=[(name, name) for name in GROUPS])

    def __init__(self, *args, campaigns: QuerySet[Campaign], **kwargs):
        super().__init__(*args, **kwargs)
        self.campaigns = campaigns

    clean_campaign = CalibrationFilterForm.clean_campaign

    def filters(self) -> FunnelFilters:
        data = self.cleaned_data
        return FunnelFilters(
            since=data.get("since"),
            until=data.get("until"),
            campaign=data.get("campaign"),
            by=data.get("by") or "model",
        )
