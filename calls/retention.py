"""How long the proxy keeps what it logs, and forgetting one user on request."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from assistants.models import EndUser, PhoneCaller, UserMapping
from calls.models import CallLog, WebhookMessage

BATCH_SIZE = 1000


def purge_expired(*, now=None, dry_run: bool = False) -> dict:
    """Deletes call logs and stored webhook messages older than their retention settings, in batches."""
    now = now or timezone.now()
    messages = WebhookMessage.objects.filter(
        received_at__lt=now - timedelta(days=settings.WEBHOOK_MESSAGE_RETENTION_DAYS)
    )
    calls = CallLog.objects.filter(created_at__lt=now - timedelta(days=settings.CALL_LOG_RETENTION_DAYS))
    if dry_run:
        return {"webhook messages": messages.count(), "call log entries": calls.count()}
    return {"webhook messages": _delete_in_batches(messages), "call log entries": _delete_in_batches(calls)}


def _delete_in_batches(queryset) -> int:
    total = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:BATCH_SIZE])
        if not ids:
            return total
        total += queryset.model.objects.filter(pk__in=ids).delete()[1].get(queryset.model._meta.label, 0)


def forget_user(user_id: str) -> dict:
    """Deletes everything stored about one userId: calls (with transcripts, including those logged under
    their phone numbers), their messages, mappings, phone-caller entries and their limit overrides
    (unless they are blocked)."""
    if not user_id or not user_id.strip():
        # "" is every row that names no user (refused requests, unknown callers), not a user.
        raise ValueError("Give a userId: an empty one would delete every call-log row that names no user.")
    with transaction.atomic():
        # Inbound calls from a number before staff knew it as this user's are logged under the number.
        numbers = list(PhoneCaller.objects.filter(user_id=user_id).values_list("phone_number", flat=True))
        calls = CallLog.objects.filter(user_id__in=[user_id, *numbers])
        counts = {
            "webhook messages": WebhookMessage.objects.filter(
                Q(call_log__in=calls) | Q(vapi_call_id__in=calls.exclude(vapi_call_id=None).values("vapi_call_id"))
            ).delete()[0],
            "call log entries": calls.delete()[0],
            "user mappings": UserMapping.objects.filter(user_id=user_id).delete()[0],
            # The mappings' history holds the userId and its variable values too.
            "mapping history entries": UserMapping.history.filter(user_id=user_id).delete()[0],
            "phone callers": PhoneCaller.objects.filter(user_id=user_id).delete()[0],
            # A blocked user's row stays (it holds only the id and the block): forgetting must not unblock.
            "user settings": EndUser.objects.filter(user_id=user_id, is_blocked=False).delete()[0],
        }
    return counts
