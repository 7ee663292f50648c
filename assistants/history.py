"""The admin's history pages (django-simple-history) in words for staff: JSON changes shown per
setting, the version's date as the link to open it, and "Restore this version" that says what it did."""

import dataclasses
import json

from django.contrib import messages
from django.db import models
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.text import capfirst
from simple_history.admin import SimpleHistoryAdmin
from simple_history.template_utils import HistoricalRecordContextHelper

from calls.models import local_time

_NOT_SET = object()
_SHOWN_CHARS = 120


def json_differences(old, new, path=""):
    """(path, old, new) for each setting that differs, e.g. ("model.provider", "openai", "groq");
    a setting only on one side has _NOT_SET on the other."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        if old != new:
            yield path, old, new
        return
    for key in [*old, *(key for key in new if key not in old)]:
        yield from json_differences(old.get(key, _NOT_SET), new.get(key, _NOT_SET), f"{path}.{key}" if path else key)


def shown_json(value) -> str:
    if value is _NOT_SET:
        return "(not set)"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


class StaffHistoryContextHelper(HistoricalRecordContextHelper):
    def context_for_delta_changes(self, delta):
        rows = []
        for change in delta.changes:
            field = self.model._meta.get_field(change.field)
            if not isinstance(field, models.JSONField):
                rows.extend(super().context_for_delta_changes(_only(delta, change)))
                continue
            label = capfirst(field.verbose_name)
            for path, old, new in json_differences(change.old, change.new):
                rows.append(
                    {"field": f"{label}, {path}" if path else label, "old": shown_json(old), "new": shown_json(new)}
                )
        return rows


def _only(delta, change):
    """`delta` with just one of its changes, for the library's own formatting of that change."""
    return dataclasses.replace(delta, changes=[change], changed_fields=[change.field])


class StaffHistoryAdmin(SimpleHistoryAdmin):
    object_history_template = "admin/staff_history.html"
    object_history_list_template = "admin/staff_history_list.html"
    object_history_form_template = "admin/staff_history_form.html"

    def get_historical_record_context_helper(self, request, historical_record):
        return StaffHistoryContextHelper(self.model, historical_record)

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        version = get_object_or_404(self.model.history.model, pk=version_id, **{self.model._meta.pk.attname: object_id})
        request.staff_history_version = version
        return super().history_form_view(request, object_id, version_id, {**(extra_context or {}), "version": version})

    def save_model(self, request, obj, form, change):
        version = getattr(request, "staff_history_version", None)
        if version is not None:
            obj._change_reason = f"Restored the version of {local_time(version.history_date)}"
        super().save_model(request, obj, form, change)

    def history_form_view_title(self, request, obj):
        if self.revert_disabled(request, obj):
            return f"An older version of {obj}"
        return f"Restore an older version of {obj}"

    def response_change(self, request, obj):
        version = getattr(request, "staff_history_version", None)
        if version is None or request.method != "POST":
            return super().response_change(request, obj)
        self.message_user(
            request,
            f"Restored “{obj}” to its version of {local_time(version.history_date)}: the restore is the newest "
            "entry in its history, so it can be undone the same way.",
            messages.SUCCESS,
        )
        opts = self.model._meta
        return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=(obj.pk,)))
