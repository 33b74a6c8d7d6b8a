"""The run console's form. It checks the shape of what was posted; the rules live in ``generation.services``."""

import re

from django import forms

from . import selectors
from .models import Candidate, CandidateKind, ModelSpec, Scenario
from .services import PARAMETER_BOUNDS, RUN_KINDS

# The sampling and supervision parameters a curator may set, with their labels; the bounds are the service's.
PARAMETER_FIELDS = {
    "temperature": "Temperature",
    "top_p": "Top p",
    "max_new_tokens": "Tokens per answer at most",
    "threshold": "Supervisor threshold (regenerate below this mean score)",
    "max_attempts": "Attempts per dialogue at most",
    "supervisor": "Supervisor scores and feedback",
    "classify": "Emotion classifier",
    "strategies": "Support-strategy labels",
}


def _parameter_field(key: str, label: str) -> forms.Field:
    kind, low, high = PARAMETER_BOUNDS[key]
    if kind is bool:
        return forms.BooleanField(label=label, required=False)
    field_class = forms.IntegerField if kind is int else forms.FloatField
    return field_class(label=f"{label} ({low}–{high})", required=False, min_value=low, max_value=high)


class RunForm(forms.Form):
    kind = forms.ChoiceField(choices=[(k.value, k.label) for k in RUN_KINDS])
    sub_emotions = forms.ModelMultipleChoiceField(
        queryset=selectors.sub_emotion_list(), to_field_name="key", required=False, label="Sub-emotions"
    )
    scenarios = forms.ModelMultipleChoiceField(queryset=Scenario.objects.select_related("sub_emotion"), required=False)
    dialogues = forms.CharField(
        required=False,
        label="Dialogue ids",
        help_text="Plans: one per dialogue. Dialogue runs: the dialogues to reconstruct. Ids separated by spaces.",
    )
    count = forms.IntegerField(min_value=1, max_value=10_000, initial=4, help_text="Dialogues or scenarios to write.")
    turns = forms.IntegerField(min_value=2, max_value=40, initial=6)
    model_spec = forms.ModelChoiceField(
        queryset=ModelSpec.objects.all(), required=False, empty_label="Default model (PSYROOM_MODEL)"
    )
    seed = forms.IntegerField(min_value=0, initial=0)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for key, label in PARAMETER_FIELDS.items():
            self.fields[key] = _parameter_field(key, label)
        self.fields["supervisor"].initial = True
        self.fields["classify"].initial = True

    def clean_dialogues(self) -> list[Candidate]:
        raw = self.cleaned_data["dialogues"].replace(",", " ").split()
        bad = [token for token in raw if not re.fullmatch(r"\d{1,12}", token)]
        if bad:
            raise forms.ValidationError(f"{bad[0]!r} is not a candidate id")
        ids = [int(token) for token in raw]
        found = selectors.candidate_list(filters={"kind": CandidateKind.DIALOGUE}).in_bulk(ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise forms.ValidationError(f"no dialogue with id {missing[0]}")
        return [found[i] for i in ids]

    def parameters(self) -> dict:
        """The parameters that were set (booleans always: an unticked box means off)."""
        clean = {}
        for key in PARAMETER_FIELDS:
            value = self.cleaned_data.get(key)
            if PARAMETER_BOUNDS[key][0] is bool or value is not None:
                clean[key] = value
        return clean
