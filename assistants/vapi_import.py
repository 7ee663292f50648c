"""Bringing the organization's Vapi assistants into the admin as permanent assistants."""

import logging
import uuid
from dataclasses import dataclass, field

from django.db import transaction

from assistants.models import Assistant
from calls.vapi import (
    VapiClient,
    VapiError,
    VapiInvalidResponse,
    VapiNotConfigured,
    VapiResponseError,
    VapiTimeout,
)

logger = logging.getLogger("assistants")

IMPORT_LIMIT = 1000  # Vapi's GET /assistant returns at most `limit` assistants, newest first
_NAME_MAX_LENGTH = Assistant._meta.get_field("name").max_length


@dataclass
class ImportResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)  # "old name → new name"
    unchanged: int = 0
    skipped: int = 0  # entries without a usable id
    limit: int = IMPORT_LIMIT
    truncated: bool = False  # Vapi listed as many as asked for: there may be more

    def summary(self) -> str:
        parts = []
        if self.created:
            parts.append(f"Created {len(self.created)}: {', '.join(self.created)}")
        if self.updated:
            parts.append(f"renamed {len(self.updated)}: {', '.join(self.updated)}")
        parts.append(f"unchanged {self.unchanged}")
        if self.skipped:
            parts.append(f"skipped {self.skipped} without a valid id")
        text = "; ".join(parts)
        return text[0].upper() + text[1:] + "."


def import_assistants_from_vapi(vapi: VapiClient, *, limit: int | None = None, by=None) -> ImportResult:
    """Creates or renames permanent assistants to match Vapi's list, keyed by Vapi id.

    Only the name comes from Vapi: everything staff set (active, variables, backend URL, notes)
    is kept, and transient assistants are never touched. Raises VapiError when Vapi can't be asked.
    `by` (a staff user) is who the assistants' history names for these changes.
    """
    limit = limit or IMPORT_LIMIT
    listed = vapi.list_assistants(limit=limit)
    result = ImportResult(limit=limit, truncated=len(listed) >= limit)
    with transaction.atomic():
        for item in listed:
            vapi_id = _uuid(item.get("id"))
            if vapi_id is None:
                result.skipped += 1
                continue
            wanted = _vapi_name(item, vapi_id)
            existing = (
                Assistant.objects.filter(kind=Assistant.Kind.PERMANENT, vapi_assistant_id=vapi_id).order_by("pk").first()
            )
            if existing is None:
                created = Assistant(
                    name=_free_name(wanted, vapi_id, exclude_pk=None),
                    kind=Assistant.Kind.PERMANENT,
                    vapi_assistant_id=vapi_id,
                    notes="Imported from Vapi.",
                )
                created._history_user = by
                created._change_reason = "Imported from Vapi"
                created.save()
                result.created.append(created.name)
                continue
            name = _free_name(wanted, vapi_id, exclude_pk=existing.pk)
            if name == existing.name:
                result.unchanged += 1
                continue
            result.updated.append(f"{existing.name} → {name}")
            existing.name = name
            existing._history_user = by
            existing._change_reason = "Name updated from Vapi"
            existing.save(update_fields=["name", "updated_at"])
    return result


def import_error_message(err: VapiError) -> str:
    """What went wrong asking Vapi, in words for staff (never the key)."""
    if isinstance(err, VapiNotConfigured):
        return "No Vapi key is configured (VAPI_API_KEY), so nothing was imported."
    if isinstance(err, VapiTimeout):
        return "Vapi did not answer in time; nothing was imported. Try again in a moment."
    if isinstance(err, VapiInvalidResponse):
        return "Vapi's answer was not a list of assistants; nothing was imported."
    if isinstance(err, VapiResponseError):
        if err.status in (401, 403):
            return f"Vapi refused the proxy's key ({err.status}); check VAPI_API_KEY. Nothing was imported."
        reason = f": {err.message[:200]}" if err.message else ""
        return f"Vapi answered with status {err.status}{reason}. Nothing was imported."
    return "Vapi could not be reached; nothing was imported. Try again in a moment."


def _uuid(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _vapi_name(item: dict, vapi_id: uuid.UUID) -> str:
    name = item.get("name")
    name = " ".join(name.split()) if isinstance(name, str) else ""
    return name[:_NAME_MAX_LENGTH] or f"Vapi assistant {str(vapi_id)[:8]}"


def _free_name(wanted: str, vapi_id: uuid.UUID, *, exclude_pk: int | None) -> str:
    """`wanted`, or with the Vapi id added when another assistant already has that name (names are unique)."""
    others = Assistant.objects.exclude(pk=exclude_pk) if exclude_pk else Assistant.objects.all()
    for suffix in ("", f" ({str(vapi_id)[:8]})", f" ({vapi_id})"):
        name = wanted[: _NAME_MAX_LENGTH - len(suffix)] + suffix
        if not others.filter(name=name).exists():
            return name
    return f"Vapi assistant {vapi_id}"
