"""The Django admin of rubrics, reviews and the audit trail.

Reviews are written by ``annotations.services.reviews.review_submit`` and audit events are append-only, so both are
read-only here. A rubric that has been used is never edited: a change is a new version.
"""

from django.contrib import admin

from generation.admin import ReadOnlyAdminMixin

from .models import AuditEvent, Review, ReviewPolicy, Rubric
from .services import policy


@admin.register(Rubric)
class RubricAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "kind", "criteria_count", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name"]

    @admin.display(description="criteria")
    def criteria_count(self, obj: Rubric) -> int:
        return len(obj.criteria or [])

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.reviews.exists():
            # Reviews point at this rubric: changing it would change what their scores meant.
            return ["kind", "name", "version", "criteria", "created_at"]
        return ["created_at"]

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.reviews.exists():
            return False
        return super().has_delete_permission(request, obj)


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "candidate", "revision_number", "reviewer", "decision", "time_spent_s", "created_at"]
    list_filter = ["decision", "rubric"]
    search_fields = ["=candidate__id", "reviewer__username", "comment"]
    list_select_related = ["candidate", "revision", "reviewer"]
    date_hierarchy = "created_at"
    fields = (
        "candidate",
        "revision",
        "reviewer",
        "rubric",
        "decision",
        "scores",
        "risk_flags",
        "comment",
        "time_spent_s",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="revision", ordering="revision__number")
    def revision_number(self, obj: Review) -> int:
        return obj.revision.number


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "action", "actor", "candidate"]
    list_filter = ["action"]
    search_fields = ["action", "actor__username", "=candidate__id"]
    list_select_related = ["actor", "candidate"]
    date_hierarchy = "created_at"
    fields = ("created_at", "action", "actor", "candidate", "data")
    readonly_fields = fields


@admin.register(ReviewPolicy)
class ReviewPolicyAdmin(admin.ModelAdmin):
    """The one policy row, saved through ``policy.review_policy_set`` (its checks and its audit event)."""

    fields = ["min_senior_approvals", "min_counselor_approvals", "min_mean", "updated_by", "updated_at"]
    readonly_fields = ["updated_by", "updated_at"]

    def has_add_permission(self, request):
        return not ReviewPolicy.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        policy.review_policy_set(
            user=request.user,
            min_senior_approvals=obj.min_senior_approvals,
            min_counselor_approvals=obj.min_counselor_approvals,
            min_mean=obj.min_mean,
        )
