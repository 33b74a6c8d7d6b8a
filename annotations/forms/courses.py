"""Forms of the course review pages (``course_views``) and of the client profile editor."""

from django import forms
from django.utils.translation import gettext_lazy as _

from generation.models import Language, Revision
from generation.schemas import MEMORY_FIELDS

_CATEGORIES = [(v, label) for v, label in Revision.Category.choices if v != Revision.Category.ORIGINAL]
MEMORY_FIELD_LABELS = {
    "emotion_cognitive": _("Emotion and cognitive state"),
    "observations": _("Counselor observations"),
    "assignments": _("Counseling assignments"),
    "session_goal": _("Session goal"),
    "summary": _("Summary"),
}


class _EditForm(forms.Form):
    category = forms.ChoiceField(label=_("Kind of change"), choices=_CATEGORIES, initial=Revision.Category.CLINICAL)
    reason = forms.CharField(label=_("Reason"), required=False, max_length=1000)
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
    text = forms.CharField(label=_("Text"), widget=forms.Textarea(attrs={"rows": 3}), strip=True)


class CourseEditForm(_EditForm):
    goals = forms.CharField(label=_("Goals"), required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))
    notes = forms.CharField(label=_("Notes"), required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))


class ProfileForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=200)
    background = forms.CharField(label=_("Background"), required=False, widget=forms.Textarea(attrs={"rows": 4}))
    personality = forms.CharField(label=_("Personality"), required=False, widget=forms.Textarea(attrs={"rows": 3}))
    assessment = forms.CharField(label=_("Assessment"), required=False, widget=forms.Textarea(attrs={"rows": 3}))
    goals = forms.CharField(label=_("Goals"), required=False, widget=forms.Textarea(attrs={"rows": 3}))
    language = forms.ChoiceField(label=_("Language"), choices=Language.choices)
