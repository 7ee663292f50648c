import json

from django.contrib import admin, messages
from django.utils.html import format_html

from calls.models import CallLog, WebhookMessage
from calls.redaction import redact
from calls.retention import forget_user


class ReadOnlyAdmin(admin.ModelAdmin):
    """Logs are evidence: staff read them; only retention and "forget this user" delete them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def pretty_json(value):
    if value in (None, "", {}, []):
        return "-"
    return format_html(
        '<pre style="white-space: pre-wrap; max-height: 40em; overflow: auto">{}</pre>',
        json.dumps(redact(value), indent=2, ensure_ascii=False),
    )


@admin.register(CallLog)
class CallLogAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "user_id",
        "assistant_type",
        "assistant",
        "outcome",
        "status_code",
        "call_status",
        "duration_seconds",
        "cost",
        "error_code",
    )
    list_filter = ("outcome", "assistant", "created_at", "route", "call_status", "error_code")
    search_fields = ("user_id", "vapi_call_id", "request_id")
    search_help_text = "Search by user id, Vapi call id, or the requestId from an error answer."
    list_select_related = ("assistant",)
    date_hierarchy = "created_at"
    actions = ["forget_users"]
    readonly_fields = ("cost_breakdown_view", "structured_data_view", "transcript_view")
    fieldsets = (
        (None, {"fields": ("created_at", "outcome", "user_id", "assistant_type", "assistant")}),
        ("Request", {"fields": ("request_id", "route", "origin", "client_ip")}),
        ("Answer", {"fields": ("status_code", "error_code", "error_detail", "latency_ms")}),
        ("Vapi", {"fields": ("upstream_status", "vapi_call_id", "call_status", "ended_reason")}),
        (
            "How the call went",
            {
                "fields": (
                    "started_at",
                    "ended_at",
                    "duration_seconds",
                    "cost",
                    "cost_breakdown_view",
                    "summary",
                    "success_evaluation",
                    "structured_data_view",
                    "recording_url",
                    "transcript_view",
                )
            },
        ),
    )

    @admin.display(description="cost breakdown")
    def cost_breakdown_view(self, obj):
        return pretty_json(obj.cost_breakdown)

    @admin.display(description="structured data")
    def structured_data_view(self, obj):
        return pretty_json(obj.structured_data)

    @admin.display(description="transcript")
    def transcript_view(self, obj):
        if not obj.transcript:
            return "-"
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', obj.transcript)

    def get_actions(self, request):
        # Deleting personal data is a deliberate power: only for staff who may delete call logs.
        actions = super().get_actions(request)
        if not request.user.has_perm("calls.delete_calllog"):
            actions.pop("forget_users", None)
        return actions

    @admin.action(description="Delete everything stored about the selected rows' users")
    def forget_users(self, request, queryset):
        user_ids = sorted({user_id for user_id in queryset.values_list("user_id", flat=True) if user_id})
        for user_id in user_ids:
            counts = forget_user(user_id)
            summary = ", ".join(f"{count} {what}" for what, count in counts.items())
            self.message_user(request, f"User {user_id}: deleted {summary}.", messages.SUCCESS)
        if not user_ids:
            self.message_user(request, "The selected rows name no user.", messages.WARNING)


@admin.register(WebhookMessage)
class WebhookMessageAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "message_type", "vapi_call_id", "call_log", "note")
    list_filter = ("message_type", "received_at")
    search_fields = ("vapi_call_id",)
    search_help_text = "Search by Vapi call id."
    date_hierarchy = "received_at"
    list_select_related = ("call_log",)
    fields = ("received_at", "message_type", "vapi_call_id", "call_log", "note", "payload_view", "reply_view")
    readonly_fields = ("payload_view", "reply_view")

    @admin.display(description="message (credentials and live-call URLs redacted)")
    def payload_view(self, obj):
        return pretty_json(obj.payload)

    @admin.display(description="what the proxy answered")
    def reply_view(self, obj):
        return pretty_json(obj.reply)


# --- Server API keys (POST /call) -------------------------------------------------------------
# Imported here rather than at the top: this section is kept separate from the rest of the file.
from django import forms  # noqa: E402
from django.db.models import Q  # noqa: E402
from django.utils import timezone  # noqa: E402

from assistants.admin import StaffJSONMixin  # noqa: E402
from calls.api_keys import SCHEME, is_revoked, save_new_key  # noqa: E402
from calls.models import ApiKey  # noqa: E402


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = "__all__"

    def clean_allowed_phone_number_ids(self):
        value = self.cleaned_data.get("allowed_phone_number_ids")
        if value in (None, ""):
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
            raise forms.ValidationError('Enter a list of Vapi phone number ids, e.g. ["5f1c..."], or leave it empty.')
        return [item.strip() for item in value]


@admin.register(ApiKey)
class ApiKeyAdmin(StaffJSONMixin, admin.ModelAdmin):
    """Keys for the customer's servers. The key is shown once, when it is added; only its hash is kept."""

    form = ApiKeyForm
    json_rows = {"allowed_phone_number_ids": 4}
    list_display = ("name", "prefix", "revoked", "last_used_at")
    search_fields = ("name", "prefix")
    search_help_text = "Search by name or by the part of the key after vp_ (its prefix)."
    filter_horizontal = ("allowed_types",)
    readonly_fields = ("key_hint", "created_at", "last_used_at")
    actions = ["revoke_keys"]
    _limits = ("calls_per_minute", "calls_per_day", "max_concurrent_calls")

    def get_fieldsets(self, request, obj=None):
        scope = ("allowed_types", "allowed_phone_number_ids")
        if obj is None:
            return ((None, {"fields": ("name", *scope)}), ("Limits of this key", {"fields": self._limits}))
        return (
            (None, {"fields": ("name", "key_hint", "created_at", "last_used_at", "revoked_at")}),
            ("What it may call", {"fields": scope}),
            ("Limits of this key", {"fields": self._limits}),
        )

    @admin.display(boolean=True, description="revoked")
    def revoked(self, obj):
        return is_revoked(obj)

    @admin.display(description="key")
    def key_hint(self, obj):
        return f"{SCHEME}_{obj.prefix}_… (the whole key was shown once, when it was added)"

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        full_key = save_new_key(obj, save=lambda: super(ApiKeyAdmin, self).save_model(request, obj, form, change))
        self.message_user(
            request,
            f"New API key for {obj.name}. Copy it now: only its hash is stored, so it cannot be shown again. "
            f"The customer's server sends it as Authorization: Bearer <key>. The key: {full_key}",
            messages.SUCCESS,
        )

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_keys(self, request, queryset):
        now = timezone.now()
        count = queryset.filter(Q(revoked_at__isnull=True) | Q(revoked_at__gt=now)).update(revoked_at=now)
        self.message_user(
            request,
            f"Revoked {count} key(s): requests with them now get 401 api_key_invalid.",
            messages.SUCCESS,
        )
