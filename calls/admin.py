import csv
import json
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import lazy
from django.utils.html import format_html

from calls.charts import bar_chart_svg, money
from calls.models import CallLog, WebhookMessage, local_time
from calls.redaction import redact
from calls.retention import forget_user
from calls.stats import daily_call_stats


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


# The call log as a spreadsheet: plain headers, nothing secret (no control or recording URLs,
# transcripts or client IPs).
CSV_COLUMNS = (
    ("time", "created_at"),
    ("user id", "user_id"),
    ("assistant type", "assistant_type"),
    ("assistant", "assistant__name"),
    ("outcome", "outcome"),
    ("status returned", "status_code"),
    ("error code", "error_code"),
    ("detail", "error_detail"),
    ("call status", "call_status"),
    ("ended reason", "ended_reason"),
    ("duration (s)", "duration_seconds"),
    ("cost (USD)", "cost"),
    ("Vapi call id", "vapi_call_id"),
    ("request id", "request_id"),
    ("route", "route"),
    ("origin", "origin"),
)


def in_time_zone(label: str) -> str:
    return f"{label} ({settings.TIME_ZONE})"


in_zone = lazy(in_time_zone, str)  # for labels: the zone is read when a page is drawn, not at import


def local_time_of(field_name: str, *, label: str):
    """A column or read-only field: CallLog's `field_name` as local_time writes it."""

    @admin.display(description=label, ordering=field_name)
    def shown(self, obj):
        value = getattr(obj, field_name)
        return format_html('<span class="nowrap">{}</span>', local_time(value)) if value else "-"

    return shown


class _Echo:
    """A file for csv.writer that hands each written line back instead of keeping it."""

    def write(self, value):
        return value


def csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return local_time(value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        # A cell starting like a formula would run as one in a spreadsheet; userIds come from clients.
        return "'" + value
    return str(value)


def call_log_csv_rows(queryset):
    """The header and then one row per call-log entry of `queryset`, in its order, as lists of text."""
    yield [in_time_zone(header) if field == "created_at" else header for header, field in CSV_COLUMNS]
    fields = [field for _, field in CSV_COLUMNS]
    for values in queryset.values_list(*fields).iterator(chunk_size=2000):
        yield [csv_cell(value) for value in values]


class AssistantFilter(admin.RelatedFieldListFilter):
    """The choice for rows without an assistant in words, where the admin would show its blank mark "-"."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.empty_value_display = "None (refused before one was chosen, or deleted)"


def blank_as(label: str) -> type[admin.AllValuesFieldListFilter]:
    """A filter by a text field's values whose empty value reads `label` instead of an empty link."""

    class BlankNamed(admin.AllValuesFieldListFilter):
        def choices(self, changelist):
            for choice in super().choices(changelist):
                yield {**choice, "display": label} if choice["display"] == "" else choice

    return BlankNamed


@admin.register(CallLog)
class CallLogAdmin(ReadOnlyAdmin):
    # What fits beside the filters on a laptop: the outcome carries the error code or Vapi's
    # call status, so neither needs a column of its own; the page of a row shows everything.
    list_display = ("time", "outcome_summary", "user_id", "type", "assistant_name", "duration", "cost_usd")
    list_filter = (
        "outcome",
        ("assistant", AssistantFilter),
        ("assistant_type", blank_as("None (refused before it was read)")),
        "created_at",
        "route",
        ("call_status", blank_as("Not reported by Vapi")),
        ("error_code", blank_as("None")),
    )
    search_fields = ("user_id", "vapi_call_id", "request_id")
    search_help_text = "Search by user id, Vapi call id, or the requestId from an error answer."
    list_select_related = ("assistant",)
    date_hierarchy = "created_at"
    actions = ["forget_users"]
    readonly_fields = (
        "time_in_zone", "call_started", "call_ended", "cost_breakdown_view", "structured_data_view", "transcript_view"
    )
    fieldsets = (
        (None, {"fields": ("time_in_zone", "outcome", "user_id", "assistant_type", "assistant")}),
        ("Request", {"fields": ("request_id", "route", "origin", "client_ip")}),
        ("Answer", {"fields": ("status_code", "error_code", "error_detail", "latency_ms")}),
        ("Vapi", {"fields": ("upstream_status", "vapi_call_id", "call_status", "ended_reason")}),
        (
            "How the call went",
            {
                "description": "Filled in when Vapi reports the call's end (Vapi's server URL must point at "
                "this proxy's /webhooks/vapi); empty until then.",
                "fields": (
                    "call_started",
                    "call_ended",
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

    # The list names the zone under the table: a long one in the column's header would widen the table.
    time = local_time_of("created_at", label="time")
    time_in_zone = local_time_of("created_at", label=in_zone("time"))
    call_started = local_time_of("started_at", label=in_zone("call started"))
    call_ended = local_time_of("ended_at", label=in_zone("call ended"))

    @admin.display(description="type", ordering="assistant_type")
    def type(self, obj):
        return obj.assistant_type

    @admin.display(description="assistant", ordering="assistant__name")
    def assistant_name(self, obj):
        return obj.assistant.name if obj.assistant else None  # may wrap, unlike a plain foreign key column

    @admin.display(description="outcome", ordering="outcome")
    def outcome_summary(self, obj):
        """"Rejected: user_not_mapped", "Created, ended": what happened, in one narrow cell (the
        filter beside it spells the outcomes out)."""
        outcome = obj.outcome.capitalize()
        if obj.error_code:
            return f"{outcome}: {obj.error_code}"
        return f"{outcome}, {obj.call_status}" if obj.call_status else outcome

    @admin.display(description="duration", ordering="duration_seconds")
    def duration(self, obj):
        if obj.duration_seconds is None:
            return None  # shown as the admin's blank mark
        minutes, seconds = divmod(int(obj.duration_seconds + 0.5), 60)
        text = f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
        return format_html('<span class="nowrap">{}</span>', text)

    @admin.display(description="cost", ordering="cost")
    def cost_usd(self, obj):
        return None if obj.cost is None else f"${obj.cost:,.4f}"

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("export.csv", self.admin_site.admin_view(self.csv_view), name="%s_%s_export_csv" % info),
            path("charts/", self.admin_site.admin_view(self.charts_view), name="%s_%s_charts" % info),
            *super().get_urls(),
        ]

    def csv_view(self, request):
        """The rows the changelist shows for the same filters, search and order, all pages, streamed."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            self.message_user(request, "That filter does not apply to the call log; nothing was downloaded.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:calls_calllog_changelist"))
        writer = csv.writer(_Echo())
        rows = call_log_csv_rows(changelist.get_queryset(request))
        filename = f"call-log-{timezone.localtime():%Y-%m-%d-%H%M}.csv"
        return StreamingHttpResponse(
            (writer.writerow(row) for row in rows),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    def charts_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        stats = daily_call_stats(days=30)
        days = [day.day for day in stats]
        charts = [
            {
                "title": title,
                "svg": bar_chart_svg(
                    chart_id=f"chart-{field}",
                    title=title,
                    days=days,
                    values=[getattr(day, field) for day in stats],
                    unit=unit,
                    color=color,
                    nothing=f"No {what} in the last 30 days",
                ),
            }
            for field, title, unit, color, what in (
                ("calls", "Calls per day", "", "#417690", "calls"),
                ("failures", "Failures per day (rejected or failed)", "", "#ba2121", "failures"),
                ("cost", "Cost per day (USD)", "$", "#79aec8", "cost reported"),
            )
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Call charts: the last 30 days",
            "opts": self.opts,
            "charts": charts,
            "stats": stats,
            "time_zone": settings.TIME_ZONE,
            "totals": {
                "calls": sum(d.calls for d in stats),
                "failures": sum(d.failures for d in stats),
                "cost": money(sum((d.cost for d in stats), Decimal(0))),
            },
        }
        return TemplateResponse(request, "admin/calls/calllog/charts.html", context)

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
    list_display = ("received", "message_type", "vapi_call_id", "call_log", "note")
    list_filter = ("message_type", "received_at")
    search_fields = ("vapi_call_id",)
    search_help_text = "Search by Vapi call id."
    date_hierarchy = "received_at"
    list_select_related = ("call_log",)
    fields = ("received_in_zone", "message_type", "vapi_call_id", "call_log", "note", "payload_view", "reply_view")
    readonly_fields = ("received_in_zone", "payload_view", "reply_view")
    # Written as the call log writes times.
    received = local_time_of("received_at", label="received")
    received_in_zone = local_time_of("received_at", label=in_zone("received"))

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
