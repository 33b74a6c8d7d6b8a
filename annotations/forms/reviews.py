"""Forms of the review pages. They check the shape of what was posted; the rules live in ``annotations.services``."""

import time

from django import forms
from django.core import signing
from django.utils.translation import gettext_lazy as _

from generation import selectors as gen_selectors
from generation.models import Candidate, Revision
from generation.selectors import REVIEWABLE

from ..models import Review, RiskCode, Rubric
from ..templatetags.rubric_i18n import rubric_text

# A review that took longer than this was left open over lunch: its time is recorded as this bound, not as hours.
MAX_REVIEW_SECONDS = 3 * 3600
_STARTED_AT_SALT = "annotations.review.started_at"


def started_at_token() -> str:
    """A signed timestamp for the review form, so the time a review took is measured by the server, not claimed."""
    return signing.Signer(salt=_STARTED_AT_SALT).sign(str(int(time.time())))


def seconds_since(token: str) -> int:
    """Seconds since ``started_at_token()`` made ``token``, clamped to 0..MAX_REVIEW_SECONDS; 0 for a bad token."""
    try:
        started = int(signing.Signer(salt=_STARTED_AT_SALT).unsign(token))
    except (signing.BadSignature, ValueError, TypeError):
        return 0
    return max(0, min(int(time.time()) - started, MAX_REVIEW_SECONDS))


class QueueFilterForm(forms.Form):
    sub_emotion = forms.ModelChoiceField(
        queryset=gen_selectors.sub_emotion_list(),
        to_field_name="key",
        required=False,
        empty_label=_("All sub-emotions"),
    )
    status = forms.ChoiceField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [("", _("All waiting"))] + [
            (value, label) for value, label in Candidate.Status.choices if value in REVIEWABLE
        ]

    def filters(self) -> dict:
        """The filters as ``generation.selectors.candidate_list`` names them; invalid input filters nothing."""
        if not self.is_valid():
            return {}
        sub_emotion = self.cleaned_data["sub_emotion"]
        return {"sub_emotion": sub_emotion.key if sub_emotion else "", "status": self.cleaned_data["status"]}


class TurnEditForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 5, "autofocus": True}), strip=True)
    category = forms.ChoiceField(
        choices=[(v, label) for v, label in Revision.Category.choices if v != Revision.Category.ORIGINAL],
        initial=Revision.Category.WORDING,
    )
    reason = forms.CharField(
        required=False,
        max_length=1000,
        widget=forms.TextInput(attrs={"placeholder": _("Why this change? (optional)")}),
    )
    version = forms.IntegerField(min_value=1, widget=forms.HiddenInput(attrs={"class": "candidate-version"}))


class IdListField(forms.Field):
    """Ids posted as repeated hidden inputs (``flags=3&flags=7``)."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value) -> list[int]:
        ids = []
        for item in value or []:
            text = str(item)
            if not (text.isascii() and text.isdigit() and len(text) <= 18):
                raise forms.ValidationError(_("%(value)s is not an id"), params={"value": repr(text[:20])})
            ids.append(int(text))
        return ids


class SignOffForm(forms.Form):
    """A sign-off names what its signer read: the version of the candidate and the open flags shown."""

    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": _("Why the risk is handled acceptably in this item")}),
        max_length=10_000,
    )
    version = forms.IntegerField(min_value=1, max_value=2**31 - 1, widget=forms.HiddenInput)
    flags = IdListField(required=False)


class ReviewForm(forms.Form):
    """One ``score_<key>`` field per rubric criterion, each choice labelled with its anchor text."""

    decision = forms.ChoiceField(choices=Review.Decision.choices, widget=forms.RadioSelect)
    comment = forms.CharField(
        required=False,
        max_length=10_000,
        widget=forms.Textarea(
            attrs={"rows": 4, "placeholder": _("What works, what does not, what you changed and why")}
        ),
    )
    risk_flags = forms.MultipleChoiceField(
        choices=RiskCode.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    version = forms.IntegerField(min_value=1, widget=forms.HiddenInput(attrs={"class": "candidate-version"}))
    started_at = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, rubric: Rubric, **kwargs):
        super().__init__(*args, **kwargs)
        self.rubric = rubric
        for criterion in rubric.criteria:
            anchors = criterion.get("anchors", {})
            self.fields[f"score_{criterion['key']}"] = forms.TypedChoiceField(
                # The rubric's texts in the reader's language (one definition, annotations/rubrics.py).
                label=rubric_text(criterion["label"]),
                help_text=rubric_text(criterion.get("help", "")),
                choices=[(value, rubric_text(anchors[value])) for value in sorted(anchors, key=int)],
                coerce=int,
                widget=forms.RadioSelect,
                error_messages={"required": _("Choose a score for this criterion.")},
            )

    def criteria(self) -> list[tuple[dict, forms.BoundField]]:
        """Each criterion of the rubric with its bound score field, in the rubric's order."""
        return [(criterion, self[f"score_{criterion['key']}"]) for criterion in self.rubric.criteria]

    def scores(self) -> dict:
        return {c["key"]: self.cleaned_data.get(f"score_{c['key']}") for c in self.rubric.criteria}

    def seconds_spent(self) -> int:
        """Seconds since the signed start the page was served with (0 for a start that is not signed)."""
        return seconds_since(self.cleaned_data.get("started_at") or "")

    def review_fields(self) -> dict:
        """What ``reviews.review_submit`` takes from the posted review, besides the candidate and the reviewer."""
        return {
            "scores": self.scores(),
            "decision": self.cleaned_data["decision"],
            "comment": self.cleaned_data["comment"],
            "risk_flags": self.cleaned_data["risk_flags"],
            "base_version": self.cleaned_data["version"],
            "time_spent_s": self.seconds_spent(),
        }
