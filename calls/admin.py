from django.contrib import admin

from calls.models import CallLog


@admin.register(CallLog)
class CallLogAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "user_id",
        "assistant_type",
        "assistant",
        "outcome",
        "status_code",
        "upstream_status",
        "latency_ms",
        "error_code",
    )
    list_filter = ("outcome", "assistant", "created_at", "error_code")
    search_fields = ("user_id", "vapi_call_id", "request_id")
    search_help_text = "Search by user id, Vapi call id, or the requestId from an error answer."
    list_select_related = ("assistant",)
    date_hierarchy = "created_at"
    fieldsets = (
        (None, {"fields": ("created_at", "outcome", "user_id", "assistant_type", "assistant")}),
        ("Request", {"fields": ("request_id", "route", "origin", "client_ip")}),
        ("Answer", {"fields": ("status_code", "error_code", "error_detail", "latency_ms")}),
        ("Vapi", {"fields": ("upstream_status", "vapi_call_id")}),
    )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
