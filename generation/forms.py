"""The run console's form. It checks the shape of what was posted; the rules live in ``generation.services``."""

import re

from django import forms
from django.utils.translation import gettext_lazy as _

from . import selectors
from .models import Candidate, CandidateKind, ClientProfile, Language, ModelSpec, Scenario
from .runs.course import SESSIONS_RANGE
from .runs.kinds import RUN_KINDS
from .services.runs import PARAMETER_BOUNDS

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


def _ids(raw: str) -> list[int]:
    """Candidate ids separated by spaces or commas; ``101-120`` is a range (at most 10,000 ids in all)."""
    ids: list[int] = []
    for token in raw.replace(",", " ").split():
        match = re.fullmatch(r"(\d{1,12})(?:-(\d{1,12}))?", token)
        if not match:
            raise forms.ValidationError(f"{token!r} is not a candidate id or a range of them (101-120)")
        low, high = int(match[1]), int(match[2] or match[1])
        if high < low or len(ids) + high - low + 1 > 10_000:
            raise forms.ValidationError(f"{token!r}: a range runs low to high, 10,000 ids at most in all")
        ids.extend(range(low, high + 1))
    return ids


def _candidates(ids: list[int], kind: str) -> list[Candidate]:
    found = selectors.candidate_list(filters={"kind": kind}).in_bulk(ids)
    missing = [i for i in ids if i not in found]
    if missing:
        raise forms.ValidationError(f"no {CandidateKind(kind).label.lower()} with id {missing[0]}")
    return [found[i] for i in ids]


def _parameter_field(key: str, label: str) -> forms.Field:
    kind, low, high = PARAMETER_BOUNDS[key]
    if kind is bool:
        return forms.BooleanField(label=label, required=False)
    if kind is int:
        return forms.IntegerField(
            label=f"{label} ({low}–{high})", required=False, min_value=int(low), max_value=int(high)
        )
    return forms.FloatField(label=f"{label} ({low}–{high})", required=False, min_value=low, max_value=high)


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
    questions = forms.CharField(
        required=False,
        label="Question ids",
        help_text="Question runs: imported choice questions, by id or range (101-120). Each answering model "
        "answers each one.",
    )
    profiles = forms.ModelMultipleChoiceField(
        queryset=ClientProfile.objects.order_by("name"),
        required=False,
        label="Client profiles",
        help_text="Course runs: the courses cycle through these clients.",
    )
    count = forms.IntegerField(
        min_value=1, max_value=10_000, initial=4, help_text="Dialogues, scenarios or courses to write."
    )
    turns = forms.IntegerField(min_value=2, max_value=40, initial=6, help_text="Turns per dialogue or session.")
    sessions = forms.IntegerField(
        min_value=SESSIONS_RANGE[0],
        max_value=SESSIONS_RANGE[1],
        initial=3,
        required=False,
        help_text="Course runs: sessions per course.",
    )
    model_spec = forms.ModelChoiceField(
        queryset=ModelSpec.objects.all(), required=False, empty_label="Default model (PSYROOM_MODEL)"
    )
    models = forms.ModelMultipleChoiceField(
        queryset=ModelSpec.objects.order_by("name"),
        to_field_name="name",
        required=False,
        label="Answering models",
        help_text="Question runs: the K models that answer each question (default: the model above).",
    )
    min_correct = forms.IntegerField(
        min_value=1,
        required=False,
        label="Correct answers for easy (M)",
        help_text="Question runs: a question is hard when fewer than M of the K models answer it correctly "
        "(default: all K).",
    )
    seed = forms.IntegerField(min_value=0, initial=0)
    language = forms.ChoiceField(
        choices=[("", _("The sources' language (else English)")), *Language.choices],
        required=False,
        label=_("Language"),
        help_text=_("The prompts, scenarios and labels of this language; every candidate is written in it."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for key, label in PARAMETER_FIELDS.items():
            self.fields[key] = _parameter_field(key, label)
        self.fields["supervisor"].initial = True
        self.fields["classify"].initial = True

    def clean_language(self) -> str | None:
        return self.cleaned_data["language"] or None

    def clean_dialogues(self) -> list[Candidate]:
        return _candidates(_ids(self.cleaned_data["dialogues"]), CandidateKind.DIALOGUE)

    def clean_sessions(self) -> int:
        return self.cleaned_data["sessions"] or self.fields["sessions"].initial

    def clean_questions(self) -> list[Candidate]:
        return _candidates(_ids(self.cleaned_data["questions"]), CandidateKind.QUESTION)

    def parameters(self) -> dict:
        """The parameters that were set (booleans always: an unticked box means off), and a question run's models
        and M."""
        clean = {}
        for key in PARAMETER_FIELDS:
            value = self.cleaned_data.get(key)
            if PARAMETER_BOUNDS[key][0] is bool or value is not None:
                clean[key] = value
        if self.cleaned_data.get("kind") == CandidateKind.QUESTION:
            if self.cleaned_data.get("models"):
                clean["models"] = [spec.name for spec in self.cleaned_data["models"]]
            if self.cleaned_data.get("min_correct") is not None:
                clean["min_correct"] = self.cleaned_data["min_correct"]
        return clean
