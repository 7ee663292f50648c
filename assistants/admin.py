import json

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import Count

from assistants.models import EXAMPLE_VAPI_ID, Assistant, AssistantType, ClientVariable, UserMapping

INVALID_JSON = "This is not valid JSON: check the quotes, commas and braces, e.g. {example}."


class PrettyJSONField(forms.JSONField):
    """Shows stored JSON indented, one key a line, so a long assistant config can be edited by hand."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        if value is None:  # an empty box, not the word null
            return ""
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)


JSON_FIELD_OVERRIDES = {
    models.JSONField: {
        "form_class": PrettyJSONField,
        "widget": forms.Textarea(attrs={"rows": 8, "cols": 80, "style": "font-family: monospace"}),
    }
}


class AssistantAdminForm(forms.ModelForm):
    class Meta:
        model = Assistant
        fields = "__all__"
        error_messages = {
            "vapi_assistant_id": {
                "invalid": f"Enter the assistant's id from the Vapi dashboard, e.g. {EXAMPLE_VAPI_ID}.",
            },
            "config": {"invalid": INVALID_JSON.format(example='{"firstMessage": "Hi"}')},
            "default_variables": {"invalid": INVALID_JSON.format(example='{"companyName": "Acme"}')},
        }


class UserMappingAdminForm(forms.ModelForm):
    class Meta:
        model = UserMapping
        fields = "__all__"
        error_messages = {
            "variable_values": {"invalid": INVALID_JSON.format(example='{"customerName": "Ana"}')},
        }


class ClientVariableInline(admin.TabularInline):
    model = ClientVariable
    extra = 0
    verbose_name = "variable the client may send"
    verbose_name_plural = "variables the client may send"


@admin.register(Assistant)
class AssistantAdmin(admin.ModelAdmin):
    form = AssistantAdminForm
    formfield_overrides = JSON_FIELD_OVERRIDES
    list_display = ("name", "kind", "vapi_assistant_id", "is_active", "updated_at")
    list_filter = ("kind", "is_active")
    search_fields = ("name", "vapi_assistant_id")
    radio_fields = {"kind": admin.VERTICAL}
    inlines = [ClientVariableInline]
    fieldsets = (
        (None, {"fields": ("name", "kind", "is_active")}),
        ("What Vapi runs", {"fields": ("vapi_assistant_id", "config")}),
        ("Variables", {"fields": ("default_variables",)}),
        (None, {"fields": ("notes",)}),
    )


@admin.register(AssistantType)
class AssistantTypeAdmin(admin.ModelAdmin):
    list_display = ("slug", "description", "default_assistant", "mapped_users_only", "mapping_count", "is_active")
    list_filter = ("is_active", "mapped_users_only")
    search_fields = ("slug", "description")
    list_select_related = ("default_assistant",)
    autocomplete_fields = ("default_assistant",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(mapping_count=Count("mappings"))

    @admin.display(description="mapped users", ordering="mapping_count")
    def mapping_count(self, obj):
        return obj.mapping_count


@admin.register(UserMapping)
class UserMappingAdmin(admin.ModelAdmin):
    form = UserMappingAdminForm
    formfield_overrides = JSON_FIELD_OVERRIDES
    list_display = ("user_id", "assistant_type", "assistant", "updated_at")
    list_filter = ("assistant_type", "assistant")
    search_fields = ("user_id",)
    search_help_text = "Search by user id (the userId the customer's app sends)."
    list_select_related = ("assistant_type", "assistant")
    autocomplete_fields = ("assistant_type", "assistant")
