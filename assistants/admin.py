import json
import logging

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Count
from django.template.response import TemplateResponse
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from assistants.forms import StaffJSONField
from assistants.history import StaffHistoryAdmin
from assistants.models import (
    EXAMPLE_VAPI_ID,
    Assistant,
    AssistantType,
    ClientVariable,
    EndUser,
    PhoneCaller,
    PhoneRoute,
    UserMapping,
)
from assistants.vapi_import import import_assistants_from_vapi, import_error_message
from calls.errors import ProxyError
from calls.vapi import VapiError, get_vapi_client

logger = logging.getLogger("assistants")

admin.site.index_template = "admin/staff_index.html"  # the usual index with a "Tools" box on top
# The navigation sidebar took a quarter of a laptop screen from the call log's columns; the
# breadcrumbs and the index lead everywhere it did.
admin.site.enable_nav_sidebar = False

class StaffJSONMixin:
    """Every JSON field of the model as a monospace box that says where invalid JSON is broken."""

    json_rows: dict[str, int] = {}

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if isinstance(db_field, models.JSONField):
            return db_field.formfield(form_class=StaffJSONField, rows=self.json_rows.get(db_field.name, 8), **kwargs)
        return super().formfield_for_dbfield(db_field, request, **kwargs)


class AssistantAdminForm(forms.ModelForm):
    class Meta:
        model = Assistant
        fields = "__all__"
        help_texts = {"notes": "For staff only: what this assistant is for, who asked for it, what changed."}
        error_messages = {
            "vapi_assistant_id": {
                "invalid": f"Enter the assistant's id from the Vapi dashboard, e.g. {EXAMPLE_VAPI_ID}.",
            },
        }


class ClientVariableInline(admin.TabularInline):
    model = ClientVariable
    extra = 0
    verbose_name = "variable the client may send"
    verbose_name_plural = "variables the client may send"


@admin.register(Assistant)
class AssistantAdmin(StaffJSONMixin, StaffHistoryAdmin):
    form = AssistantAdminForm
    json_rows = {"config": 24, "default_variables": 6}
    list_display = ("name", "kind_short", "vapi_assistant_id", "is_active", "updated_at")
    list_filter = ("kind", "is_active")
    search_fields = ("name", "vapi_assistant_id")
    radio_fields = {"kind": admin.VERTICAL}
    inlines = [ClientVariableInline]
    fieldsets = (
        (None, {"fields": ("name", "kind", "is_active")}),
        ("What Vapi runs", {"fields": ("vapi_assistant_id", "config")}),
        ("Variables", {"fields": ("default_variables",)}),
        ("During the call", {"fields": ("max_duration_seconds", "backend_url")}),
        (None, {"fields": ("notes",)}),
    )

    @admin.display(description="kind", ordering="kind")
    def kind_short(self, obj):
        return obj.get_kind_display().split(" (", 1)[0]  # "Permanent": the form and filter explain it

    def get_urls(self):
        importer = path(
            "import-from-vapi/",
            self.admin_site.admin_view(self.import_from_vapi_view),
            name="assistants_assistant_import_from_vapi",
        )
        return [importer, *super().get_urls()]

    def import_from_vapi_view(self, request):
        """Creates or renames permanent assistants from Vapi's list; says what changed."""
        changelist = reverse("admin:assistants_assistant_changelist")
        if request.method != "POST":
            return HttpResponseRedirect(changelist)
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        try:
            result = import_assistants_from_vapi(get_vapi_client(), by=request.user)
        except VapiError as err:
            logger.warning("importing assistants from Vapi failed: %s", err)
            self.message_user(request, import_error_message(err), messages.ERROR)
            return HttpResponseRedirect(changelist)
        self.message_user(request, result.summary(), messages.SUCCESS)
        if result.truncated:
            self.message_user(
                request,
                f"Vapi listed {result.limit} assistants, the most one import asks for; any beyond those "
                "(the oldest) were not imported.",
                messages.WARNING,
            )
        return HttpResponseRedirect(changelist)


class CallPreviewForm(forms.Form):
    assistant_type = forms.ChoiceField(label="Assistant type", help_text="What the app sends as assistantType.")
    user_id = forms.CharField(
        label="User id", strip=False, help_text="The userId as the customer's app knows it (case matters)."
    )
    variables = StaffJSONField(
        label="Client variables",
        required=False,
        rows=6,
        help_text='What the app would send as variableValues, e.g. {"topic": "renewals"}. Leave empty for none.',
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assistant_type"].choices = [("", "---------")] + [
            (slug, slug if active else f"{slug} (inactive)")
            for slug, active in AssistantType.objects.order_by("slug").values_list("slug", "is_active")
        ]

    def clean_variables(self):
        value = self.cleaned_data["variables"]
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError('Enter a JSON object such as {"topic": "renewals"}, or leave this empty.')
        return value


@admin.register(AssistantType)
class AssistantTypeAdmin(StaffHistoryAdmin):
    list_display = ("slug", "description", "default_assistant_name", "who_may_call", "is_active")
    list_filter = ("is_active", "mapped_users_only")
    search_fields = ("slug", "description")
    list_select_related = ("default_assistant",)
    autocomplete_fields = ("default_assistant",)

    def get_queryset(self, request):
        # A GROUP BY query drops Meta.ordering: without order_by the mapping form's type picker
        # (the autocomplete, which pages) gets its list unordered and Django refuses to page it.
        return super().get_queryset(request).annotate(mapping_count=Count("mappings")).order_by("slug")

    @admin.display(description="default assistant", ordering="default_assistant__name")
    def default_assistant_name(self, obj):
        return obj.default_assistant.name if obj.default_assistant else None  # may wrap, unlike a foreign key column

    @admin.display(description="who may call", ordering="mapping_count")
    def who_may_call(self, obj):
        """"Everyone; 2 mapped users get their own assistant" or "Only mapped users: 2", linking to those mappings."""
        count = obj.mapping_count
        if not count:
            return "Only mapped users (none yet)" if obj.mapped_users_only else "Everyone"
        mappings = reverse("admin:assistants_usermapping_changelist") + f"?assistant_type__id__exact={obj.pk}"
        mapped = f"{count} mapped user{'s' if count != 1 else ''}"
        if obj.mapped_users_only:
            return format_html('Only mapped users: <a href="{}">{}</a>', mappings, mapped)
        verb = "gets" if count == 1 else "get"
        return format_html('Everyone; <a href="{}">{}</a> {} their own assistant', mappings, mapped, verb)

    def get_urls(self):
        preview = path("preview/", self.admin_site.admin_view(self.call_preview_view), name="assistants_call_preview")
        return [preview, *super().get_urls()]

    def call_preview_view(self, request):
        """Shows what Vapi would receive for a web call, built by the live path's code; calls nobody."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        from calls.services import preview_web_call

        bound = "user_id" in request.GET
        form = CallPreviewForm(request.GET if bound else None, initial={"assistant_type": request.GET.get("assistant_type")})
        context = {
            **self.admin_site.each_context(request),
            "title": "Preview a web call",
            "opts": self.model._meta,
            "form": form,
            "vapi_configured": get_vapi_client().configured,
        }
        if bound and form.is_valid():
            try:
                resolution, body = preview_web_call(
                    user_id=form.cleaned_data["user_id"],
                    assistant_type=form.cleaned_data["assistant_type"],
                    client_variables=form.cleaned_data["variables"],
                )
            except ProxyError as err:
                context["refusal"] = err
            else:
                context["resolution"] = resolution
                context["body_json"] = json.dumps(body, indent=2, ensure_ascii=False)
        return TemplateResponse(request, "admin/assistants/call_preview.html", context)


@admin.register(UserMapping)
class UserMappingAdmin(StaffJSONMixin, StaffHistoryAdmin):
    json_rows = {"variable_values": 6}
    list_display = ("user_id", "assistant_type", "assistant", "updated_at")
    list_filter = ("assistant_type", "assistant")
    search_fields = ("user_id",)
    search_help_text = "Search by user id (the userId the customer's app sends)."
    list_select_related = ("assistant_type", "assistant")
    autocomplete_fields = ("assistant_type", "assistant")


@admin.register(PhoneRoute)
class PhoneRouteAdmin(admin.ModelAdmin):
    list_display = ("__str__", "phone_number_id", "assistant_type", "is_active")
    list_filter = ("is_active", "assistant_type")
    search_fields = ("phone_number", "phone_number_id")
    list_select_related = ("assistant_type",)
    autocomplete_fields = ("assistant_type",)


@admin.register(PhoneCaller)
class PhoneCallerAdmin(admin.ModelAdmin):
    list_display = ("phone_number", "user_id")
    search_fields = ("phone_number", "user_id")


@admin.register(EndUser)
class EndUserAdmin(admin.ModelAdmin):
    """Users of the customer's app as the proxy sees them: blocks and per-user limits."""

    list_display = (
        "user_id",
        "is_blocked",
        "calls_per_minute",
        "calls_per_day",
        "max_concurrent_calls",
        "daily_spend_limit",
        "updated_at",
    )
    list_filter = ("is_blocked",)
    search_fields = ("user_id",)
    search_help_text = "Search by user id. Add a user here to block them or give them their own limits."
    actions = ["block", "block_and_end_live_calls", "unblock"]

    @admin.action(description="Block the selected users (new calls get 403)")
    def block(self, request, queryset):
        count = queryset.update(is_blocked=True)
        self.message_user(request, f"Blocked {count} user(s). Calls already running go on.", messages.SUCCESS)

    @admin.action(description="Block the selected users and end their live calls")
    def block_and_end_live_calls(self, request, queryset):
        from calls.services import end_live_calls

        queryset.update(is_blocked=True)
        for user in queryset:
            counts = end_live_calls(user_id=user.user_id)
            level = messages.WARNING if counts["failed"] else messages.SUCCESS
            self.message_user(
                request,
                f"User {user.user_id}: blocked; ended {counts['ended']} live call(s)"
                + (f", {counts['failed']} could not be ended (see the server log)." if counts["failed"] else "."),
                level,
            )

    @admin.action(description="Unblock the selected users")
    def unblock(self, request, queryset):
        count = queryset.update(is_blocked=False)
        self.message_user(request, f"Unblocked {count} user(s).", messages.SUCCESS)
