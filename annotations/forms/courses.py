"""Forms of the course review pages (``course_views``) and of the client profile editor."""

from django import forms

from generation.models import Language, Revision
from generation.schemas import MEMORY_FIELDS

_CATEGORIES = [(v, label) for v, label in Revision.Category.choices if v != Revision.Category.ORIGINAL]
MEMORY_FIELD_LABELS = {
    "emotion_cognitive": "Emotion and cognitive state",
    "observations": "Counselor observations",
    "assignments": "Counseling assignments",
    "session_goal": "Session goal",
    "summary": "Summary",
}


class _EditForm(forms.Form):
    category = forms.ChoiceField(choices=_CATEGORIES, initial=Revision.Category.CLINICAL)
    reason = forms.CharField(required=False, max_length=1000)
    version = forms.IntegerField(min_value=1, widget=forms.HiddenInput)


class MemoryEditForm(_EditForm):
    """The five fields of a session's memory, all required: an edited memory is a complete one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in MEMORY_FIELDS:
            self.fields[name] = forms.CharField(
                label=MEMORY_FIELD_LABELS[name], max_length=5000, widget=forms.Textarea(attrs={"rows": 2})
            )

    def memory(self) -> dict:
        return {name: self.cleaned_data[name] for name in MEMORY_FIELDS}


class SessionTurnEditForm(_EditForm):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), strip=True)


class CourseEditForm(_EditForm):
    goals = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))
    notes = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))


class ProfileForm(forms.Form):
    name = forms.CharField(max_length=200)
    background = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}))
    personality = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    assessment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    goals = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    language = forms.ChoiceField(choices=Language.choices)
