from django.contrib import admin

from assistants.models import Assistant, AssistantType, ClientVariable, UserMapping


class ClientVariableInline(admin.TabularInline):
    model = ClientVariable
    extra = 0
    verbose_name = "variable the client may send"
    verbose_name_plural = "variables the client may send"


@admin.register(Assistant)
class AssistantAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "vapi_assistant_id", "is_active", "updated_at")
    list_filter = ("kind", "is_active")
    search_fields = ("name", "vapi_assistant_id")
    inlines = [ClientVariableInline]
    fieldsets = (
        (None, {"fields": ("name", "kind", "is_active")}),
        ("What Vapi runs", {"fields": ("vapi_assistant_id", "config")}),
        ("Variables", {"fields": ("default_variables",)}),
        (None, {"fields": ("notes",)}),
    )


@admin.register(AssistantType)
class AssistantTypeAdmin(admin.ModelAdmin):
    list_display = ("slug", "description", "default_assistant", "mapped_users_only", "is_active")
    list_filter = ("is_active", "mapped_users_only")
    search_fields = ("slug", "description")
    list_select_related = ("default_assistant",)
    autocomplete_fields = ("default_assistant",)


@admin.register(UserMapping)
class UserMappingAdmin(admin.ModelAdmin):
    list_display = ("user_id", "assistant_type", "assistant", "updated_at")
    list_filter = ("assistant_type", "assistant")
    search_fields = ("user_id",)
    list_select_related = ("assistant_type", "assistant")
    autocomplete_fields = ("assistant_type", "assistant")
