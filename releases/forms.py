"""The Releases page's builder form: what a curator picks, turned into a spec for ``spec_validate`` (which remains
the one judge of a spec: the form only offers choices and shapes them)."""

from django import forms
from django.utils.translation import gettext_lazy

from annotations.models import Campaign
from generation.models import Language, SubEmotion

from .pii import DETECTORS
from .spec import FORMAT_KINDS, KINDS, PII_ACTIONS


def _sub_emotions():
    return [(s.key, f"{s.key} {s.label_en}") for s in SubEmotion.objects.order_by("key")]


def _campaigns():
    return [(c.pk, f"{c.pk} {c.name}") for c in Campaign.objects.order_by("-pk")[:500]]


class ReleaseForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="lower-case letters, digits, - and _")
    version = forms.CharField(max_length=32, initial="1.0.0", help_text="a name and version are built once")
    formats = forms.MultipleChoiceField(
        choices=[(f, f) for f in FORMAT_KINDS], widget=forms.CheckboxSelectMultiple, initial=["sft"]
    )
    kinds = forms.MultipleChoiceField(
        choices=[(k, k) for k in KINDS],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="none: the kinds the formats write",
    )
    sub_emotions = forms.MultipleChoiceField(choices=_sub_emotions, required=False, help_text="none: all")
    languages = forms.MultipleChoiceField(
        choices=Language.choices, widget=forms.CheckboxSelectMultiple, required=False, help_text="none: all"
    )
    campaigns = forms.TypedMultipleChoiceField(
        choices=_campaigns, coerce=int, required=False, help_text="none: any candidate, in a campaign or not"
    )
    min_agreement = forms.FloatField(
        min_value=-1, max_value=1, required=False, label=gettext_lazy("Minimum campaign agreement"),
        help_text=gettext_lazy("Krippendorff's alpha on the decision, as the dashboards show it; empty: no floor"),
    )  # fmt: skip
    train = forms.FloatField(min_value=0, max_value=1, initial=0.8)
    validation = forms.FloatField(min_value=0, max_value=1, initial=0.1)
    test = forms.FloatField(min_value=0, max_value=1, initial=0.1)
    seed = forms.IntegerField(min_value=0, max_value=2**32 - 1, initial=0)
    exact_dedup = forms.BooleanField(required=False, initial=True, label="Drop exact duplicates")
    near_dedup = forms.FloatField(
        min_value=0.5, max_value=1, required=False, label="Near-duplicate threshold",
        help_text="MinHash Jaccard similarity, e.g. 0.9; empty: off",
    )  # fmt: skip
    pii_action = forms.ChoiceField(
        choices=[(a, a) for a in PII_ACTIONS], initial="block", label="PII found",
        help_text=f"block the build, or redact with placeholders ({', '.join(DETECTORS)})",
    )  # fmt: skip
    parquet = forms.BooleanField(required=False, initial=True, label="Parquet beside each JSONL file")

    def spec(self) -> dict:
        """The spec the form's cleaned data describe (to be validated by ``spec_validate``)."""
        data = self.cleaned_data
        spec: dict = {
            "formats": data["formats"],
            "splits": {
                "train": data["train"], "validation": data["validation"], "test": data["test"], "seed": data["seed"]
            },
            "dedup": {"exact": data["exact_dedup"], "near": data["near_dedup"]},
            "pii": {"action": data["pii_action"]},
            "parquet": data["parquet"],
        }  # fmt: skip
        if data.get("min_agreement") is not None:
            spec["min_agreement"] = data["min_agreement"]
        for key in ("kinds", "sub_emotions", "languages", "campaigns"):
            if data.get(key):
                spec[key] = list(data[key])
        return spec


class SelectionForm(ReleaseForm):
    """The same choices for the live count: no name or version needed yet."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].required = False
        self.fields["version"].required = False
