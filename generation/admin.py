"""The Django admin for curators: set up scenarios and client profiles; look at model specs, runs and candidates.
Model specs are added and changed by admins only.

Candidates and revisions are written only through ``generation.services`` (optimistic locking, revision 0, risk
screen), so here they are read-only; so are a run's progress fields, which only the worker writes.
"""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join

from psyroom_admin import roles

from .models import (
    Candidate,
    ClientProfile,
    EmotionCategory,
    GenerationRun,
    ModelSpec,
    Revision,
    RiskFlag,
    Scenario,
    SubEmotion,
)
from .services.modelspecs import modelspec_save
from .services.runs import run_cancel


class ReadOnlyAdminMixin:
    """Viewable, never added, changed or deleted through the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _turns_html(content: dict):
    turns = (content or {}).get("turns", [])
    if not turns:
        return "—"
    return format_html(
        '<ol style="margin:0;padding-left:1.5em;max-width:60em">{}</ol>',
        format_html_join(
            "",
            '<li style="margin-bottom:.4em;white-space:pre-wrap"><strong>{}</strong>: {}</li>',
            ((t.get("role", ""), t.get("text", "")) for t in turns),
        ),
    )


@admin.register(EmotionCategory)
class EmotionCategoryAdmin(admin.ModelAdmin):
    list_display = ["key", "label_en", "label_zh"]
    search_fields = ["key", "label_en", "label_zh"]


@admin.register(SubEmotion)
class SubEmotionAdmin(admin.ModelAdmin):
    list_display = ["key", "label_en", "label_zh", "category"]
    list_filter = ["category"]
    search_fields = ["key", "label_en", "label_zh"]
    list_select_related = ["category"]


@admin.register(Scenario)
class ScenarioAdmin(admin.ModelAdmin):
    list_display = ["title", "sub_emotion", "language", "source", "created_at"]
    list_filter = ["language", "source", "sub_emotion__category"]
    search_fields = ["title", "description", "sub_emotion__key"]
    autocomplete_fields = ["sub_emotion"]
    list_select_related = ["sub_emotion"]
    readonly_fields = ["created_at"]


@admin.register(ClientProfile)
class ClientProfileAdmin(admin.ModelAdmin):
    list_display = ["name", "language", "created_at"]
    list_filter = ["language"]
    search_fields = ["name", "background", "personality", "assessment"]
    readonly_fields = ["created_at"]


@admin.register(ModelSpec)
class ModelSpecAdmin(admin.ModelAdmin):
    """Curators look; only admins add, change or delete: a spec says where the worker sends requests and with which
    credential. Saving goes through ``modelspec_save``, which checks both against the operator's settings."""

    list_display = ["name", "backend", "path", "base_url", "dtype", "device", "batch_size", "created_at"]
    list_filter = ["backend"]
    search_fields = ["name", "path"]
    readonly_fields = ["created_at"]

    def has_add_permission(self, request):
        return roles.user_can_edit_model_specs(request.user) and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        return roles.user_can_edit_model_specs(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return roles.user_can_edit_model_specs(request.user) and super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        modelspec_save(spec=obj, user=request.user)


@admin.register(GenerationRun)
class GenerationRunAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "sub_emotion", "model_spec", "count", "done", "failed", "created_at"]
    list_filter = ["status", "kind", "model_spec"]
    search_fields = ["=id", "sub_emotion__key", "task_id"]
    list_select_related = ["sub_emotion", "model_spec"]
    date_hierarchy = "created_at"
    actions = ["cancel_runs"]
    # Everything the worker writes; the rest is what the run was asked for, fixed once it is queued.
    progress_fields = (
        "status",
        "done",
        "failed",
        "prompt_tokens",
        "completion_tokens",
        "errors",
        "error",
        "task_id",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    )
    request_fields = ("kind", "model_spec", "sub_emotion", "scenario", "count", "prompt_version", "seed", "parameters")
    fieldsets = [
        (None, {"fields": request_fields}),
        ("Progress", {"fields": progress_fields}),
    ]

    def get_readonly_fields(self, request, obj=None):
        return [*self.request_fields, *self.progress_fields]

    def has_add_permission(self, request):
        # A run is started through services.runs.run_create (API, `manage.py generate`), which queues its task.
        return False

    @admin.action(description="Cancel the selected runs", permissions=["change"])
    def cancel_runs(self, request, queryset):
        cancelled = 0
        for run in queryset:
            try:
                run_cancel(run=run)
                cancelled += 1
            except ValidationError as error:
                self.message_user(request, "; ".join(error.messages), messages.WARNING)
        self.message_user(request, f"{cancelled} run(s) cancelled.")


class RevisionInline(admin.TabularInline):
    model = Revision
    fields = ("number", "category", "author", "reason", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class RiskFlagInline(admin.TabularInline):
    """Read-only: flags are raised and signed off through the services (the pages and the API), never here."""

    model = RiskFlag
    extra = 0
    fields = ("code", "detail", "source", "raised_by", "revision", "signed_off_by", "signed_off_at", "note")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Candidate)
class CandidateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "kind", "status", "sub_emotion", "language", "version", "open_risk", "created_at"]
    list_filter = ["kind", "status", "language", ("sub_emotion", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["=id", "sub_emotion__key", "sub_emotion__label_en", "sub_emotion__label_zh", "source_hash"]
    list_select_related = ["sub_emotion"]
    date_hierarchy = "created_at"
    inlines = [RevisionInline, RiskFlagInline]
    fieldsets = [
        (None, {"fields": ["kind", "status", "language", "sub_emotion", "scenario", "profile", "version"]}),
        ("Content", {"fields": ["turns"]}),
        ("Review", {"fields": ["approved_revision"]}),
        ("Provenance", {"fields": ["run", "run_index", "parent", "sequence", "lineage", "source", "source_hash"]}),
        ("Raw", {"classes": ["collapse"], "fields": ["content", "ai_review", "created_at", "updated_at"]}),
    ]
    readonly_fields = [
        "kind",
        "status",
        "language",
        "sub_emotion",
        "scenario",
        "profile",
        "version",
        "turns",
        "approved_revision",
        "run",
        "run_index",
        "parent",
        "sequence",
        "lineage",
        "source",
        "source_hash",
        "content",
        "ai_review",
        "created_at",
        "updated_at",
    ]

    @admin.display(boolean=True, description="open risk")
    def open_risk(self, obj: Candidate) -> bool:
        return obj.has_open_risk

    @admin.display(description="turns")
    def turns(self, obj: Candidate):
        return _turns_html(obj.content)


@admin.register(Revision)
class RevisionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["candidate", "number", "category", "author", "created_at"]
    list_filter = ["category"]
    search_fields = ["=candidate__id", "reason", "author__username"]
    list_select_related = ["candidate", "author"]
    fields = ("candidate", "number", "base_number", "category", "author", "reason", "turns", "created_at")
    readonly_fields = fields

    @admin.display(description="turns")
    def turns(self, obj: Revision):
        return _turns_html(obj.content)
