"""TOTP devices in the Django admin: listed, unlocked and deleted through ``accounts.services`` (audited), never
added or edited there, and their secrets never shown. django-otp registers its own admin, which shows a device's
key and QR code and lets a superuser make a device for someone else; this one replaces it."""

from django.contrib import admin, messages
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import services

admin.site.unregister(TOTPDevice)


@admin.register(TOTPDevice)
class TOTPDeviceAdmin(admin.ModelAdmin):
    list_display = ["user", "confirmed", "created_at", "last_used_at", "throttling_failure_count"]
    list_filter = ["confirmed"]
    search_fields = ["user__username", "user__email"]
    fields = ("user", "name", "confirmed", "created_at", "last_used_at", "throttling_failure_count")
    readonly_fields = fields
    actions = ["unlock"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")

    def delete_model(self, request, obj):
        services.totp_devices_delete(user=obj.user, actor=request.user)

    def delete_queryset(self, request, queryset):
        for user in {device.user for device in queryset}:
            services.totp_devices_delete(user=user, actor=request.user)

    @admin.action(description="Unlock after wrong codes", permissions=["delete"])
    def unlock(self, request, queryset):
        for device in queryset:
            services.totp_device_unlock(device=device, actor=request.user)
        self.message_user(request, f"Unlocked {len(queryset)} device(s).", messages.SUCCESS)
