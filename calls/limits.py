"""Admission: may this call start now, given what is already running and what was spent today?

`admit()` counts and writes the call's `pending` row in one transaction, holding a lock row for
each limit involved (deployment, assistant type, server key, user), so parallel starts in any
number of processes cannot both take the last slot. On SQLite the transaction itself takes the
database's write lock (`transaction_mode: IMMEDIATE` in settings).

A call is active from admission until Vapi reports it ended, or until the assistant's longest
call plus `ACTIVE_CALL_GRACE_SECONDS` has passed, so a lost webhook never blocks a user forever.
"""

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from assistants.models import EndUser, UserMapping
from calls.db import insert_row, savepoint_if_nested
from calls.errors import ProxyError
from calls.models import AdmissionLock, CallLog

ATTEMPTED = (CallLog.Outcome.PENDING, CallLog.Outcome.CREATED, CallLog.Outcome.FAILED)
RUNNING = (CallLog.Outcome.PENDING, CallLog.Outcome.CREATED)


@dataclass(frozen=True)
class Limits:
    user_per_minute: int | None = None
    user_per_day: int | None = None
    user_concurrent: int | None = None
    mapping_per_minute: int | None = None
    mapping_per_day: int | None = None
    mapping_concurrent: int | None = None
    key_per_minute: int | None = None
    key_per_day: int | None = None
    key_concurrent: int | None = None
    type_concurrent: int | None = None
    deployment_concurrent: int | None = None
    user_daily_spend: Decimal | None = None
    deployment_daily_spend: Decimal | None = None


def _first(*values):
    return next((value for value in values if value is not None), None)


def limits_for(*, end_user: EndUser | None, mapping: UserMapping | None, assistant_type, api_key=None) -> Limits:
    """The limits that apply: the admin's overrides where set, the settings' defaults otherwise.

    A mapping's limit replaces the user's for calls of its type (counting that type only); the
    user's own limit still counts all their calls when they start another type.
    """
    mapping_per_minute = getattr(mapping, "calls_per_minute", None)
    mapping_per_day = getattr(mapping, "calls_per_day", None)
    mapping_concurrent = getattr(mapping, "max_concurrent_calls", None)

    def users(mapping_value, field, setting):
        if mapping_value is not None:
            return None
        return _first(getattr(end_user, field, None), setting)

    return Limits(
        user_per_minute=users(mapping_per_minute, "calls_per_minute", settings.LIMIT_USER_CALLS_PER_MINUTE),
        user_per_day=users(mapping_per_day, "calls_per_day", settings.LIMIT_USER_CALLS_PER_DAY),
        user_concurrent=users(mapping_concurrent, "max_concurrent_calls", settings.LIMIT_USER_CONCURRENT_CALLS),
        mapping_per_minute=mapping_per_minute,
        mapping_per_day=mapping_per_day,
        mapping_concurrent=mapping_concurrent,
        key_per_minute=getattr(api_key, "calls_per_minute", None),
        key_per_day=getattr(api_key, "calls_per_day", None),
        key_concurrent=getattr(api_key, "max_concurrent_calls", None),
        type_concurrent=_first(assistant_type.max_concurrent_calls, settings.LIMIT_TYPE_CONCURRENT_CALLS),
        deployment_concurrent=settings.LIMIT_DEPLOYMENT_CONCURRENT_CALLS,
        user_daily_spend=_first(getattr(end_user, "daily_spend_limit", None), settings.LIMIT_USER_DAILY_SPEND),
        deployment_daily_spend=settings.LIMIT_DEPLOYMENT_DAILY_SPEND,
    )


def admit(log: CallLog, *, limits: Limits, max_duration_seconds: int, now: datetime | None = None) -> None:
    """Saves `log` as pending if every limit has room; raises a 429 ProxyError naming the limit otherwise."""
    now = now or timezone.now()
    keys = _lock_keys(log, limits)
    # Without limits there is nothing to lock or count: the INSERT alone needs no transaction.
    with transaction.atomic() if keys else savepoint_if_nested():
        if keys:
            _lock(keys)
            _check(log, limits, now)
        log.outcome = CallLog.Outcome.PENDING
        log.active_until = now + timedelta(seconds=max_duration_seconds + settings.ACTIVE_CALL_GRACE_SECONDS)
        insert_row(log)


def _lock_keys(log: CallLog, limits: Limits) -> list[str]:
    keys = []
    if limits.deployment_concurrent is not None or limits.deployment_daily_spend is not None:
        keys.append("deployment")
    if limits.type_concurrent is not None:
        keys.append(f"type:{log.assistant_type}")
    if log.api_key_id and (limits.key_per_minute, limits.key_per_day, limits.key_concurrent) != (None, None, None):
        keys.append(f"key:{log.api_key_id}")
    user_limits = (
        limits.user_per_minute,
        limits.user_per_day,
        limits.user_concurrent,
        limits.user_daily_spend,
        limits.mapping_per_minute,
        limits.mapping_per_day,
        limits.mapping_concurrent,
    )
    if any(value is not None for value in user_limits):
        keys.append(f"user:{log.user_id}")
    return sorted(keys)  # one order everywhere: no deadlocks between two admissions


def _lock(keys: list[str]) -> None:
    # One upsert creates missing lock rows and locks them all, one key after the other in sorted
    # order (PostgreSQL's ON CONFLICT DO UPDATE locks the row like FOR UPDATE). Selecting the
    # existing rows FOR UPDATE first and inserting the missing ones after would hold some locks
    # while waiting on another transaction's insert: a deadlock on a fresh database.
    AdmissionLock.objects.bulk_create(
        [AdmissionLock(key=key) for key in keys], update_conflicts=True, unique_fields=["key"], update_fields=["key"]
    )


def _check(log: CallLog, limits: Limits, now: datetime) -> None:
    day_start = _midnight(_local_date(now))
    minute_ago = now - timedelta(minutes=1)
    running = Q(outcome__in=RUNNING, active_until__gt=now) & ~Q(call_status="ended")
    attempted = Q(outcome__in=ATTEMPTED)
    user = Q(user_id=log.user_id)
    mapping = user & Q(assistant_type=log.assistant_type)
    key = Q(api_key_id=log.api_key_id)
    counts = CallLog.objects.filter(Q(created_at__gte=min(day_start, minute_ago)) | Q(active_until__gt=now)).aggregate(
        user_minute=Count("pk", filter=user & attempted & Q(created_at__gte=minute_ago)),
        user_day=Count("pk", filter=user & attempted & Q(created_at__gte=day_start)),
        user_running=Count("pk", filter=user & running),
        mapping_minute=Count("pk", filter=mapping & attempted & Q(created_at__gte=minute_ago)),
        mapping_day=Count("pk", filter=mapping & attempted & Q(created_at__gte=day_start)),
        mapping_running=Count("pk", filter=mapping & running),
        key_minute=Count("pk", filter=key & attempted & Q(created_at__gte=minute_ago)),
        key_day=Count("pk", filter=key & attempted & Q(created_at__gte=day_start)),
        key_running=Count("pk", filter=key & running),
        type_running=Count("pk", filter=Q(assistant_type=log.assistant_type) & running),
        deployment_running=Count("pk", filter=running),
        user_spend=Sum("cost", filter=user & Q(created_at__gte=day_start)),
        deployment_spend=Sum("cost", filter=Q(created_at__gte=day_start)),
    )
    until_midnight = _seconds_until_midnight(now)
    concurrency_wait = settings.LIMIT_CONCURRENCY_RETRY_AFTER_SECONDS

    def minute_wait(scope):
        # Only asked when refusing: until enough calls left the minute to bring the count under
        # the limit (the oldest one, unless staff lowered the limit below what was started).
        def wait(used, limit):
            if limit <= 0:
                return 60
            started = (
                CallLog.objects.filter(scope, attempted, created_at__gte=minute_ago)
                .order_by("created_at")
                .values_list("created_at", flat=True)
            )
            leaving = next(iter(started[used - limit : used - limit + 1]), None)
            return 60 - (now - leaving).total_seconds() if leaving else 60

        return wait

    checks = [
        ("deployment_concurrent_calls", limits.deployment_concurrent, counts["deployment_running"], concurrency_wait,
         "The service is at its limit of simultaneous calls"),
        ("deployment_daily_spend", limits.deployment_daily_spend, counts["deployment_spend"], until_midnight,
         "The service has reached its spending limit for today"),
        ("type_concurrent_calls", limits.type_concurrent, counts["type_running"], concurrency_wait,
         f"Assistant type {log.assistant_type!r} is at its limit of simultaneous calls"),
        ("key_concurrent_calls", limits.key_concurrent, counts["key_running"], concurrency_wait,
         "This API key is at its limit of simultaneous calls"),
        ("key_calls_per_minute", limits.key_per_minute, counts["key_minute"], minute_wait(key),
         "This API key has started its limit of calls for this minute"),
        ("key_calls_per_day", limits.key_per_day, counts["key_day"], until_midnight,
         "This API key has started its limit of calls for today"),
        ("user_daily_spend", limits.user_daily_spend, counts["user_spend"], until_midnight,
         "You have reached your spending limit for today"),
        ("mapping_concurrent_calls", limits.mapping_concurrent, counts["mapping_running"], concurrency_wait,
         f"You are at your limit of simultaneous {log.assistant_type!r} calls"),
        ("mapping_calls_per_minute", limits.mapping_per_minute, counts["mapping_minute"],
         minute_wait(mapping), f"You have started your limit of {log.assistant_type!r} calls for this minute"),
        ("mapping_calls_per_day", limits.mapping_per_day, counts["mapping_day"], until_midnight,
         f"You have started your limit of {log.assistant_type!r} calls for today"),
        ("user_concurrent_calls", limits.user_concurrent, counts["user_running"], concurrency_wait,
         "You are at your limit of simultaneous calls"),
        ("user_calls_per_minute", limits.user_per_minute, counts["user_minute"], minute_wait(user),
         "You have started your limit of calls for this minute"),
        ("user_calls_per_day", limits.user_per_day, counts["user_day"], until_midnight,
         "You have started your limit of calls for today"),
    ]
    for name, limit, used, wait, sentence in checks:
        if limit is not None and (used or 0) >= limit:
            retry_after = max(1, math.ceil(wait(used, limit) if callable(wait) else wait))
            raise ProxyError(
                429,
                f"limit_{name}",
                f"{sentence} ({_amount(used)} of {_amount(limit)}); try again in {retry_after} s.",
                headers={"Retry-After": str(retry_after)},
            )


def _amount(value) -> str:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    return str(value or 0)


def _local_date(now: datetime) -> date:
    """Today in the deployment's TIME_ZONE (whatever zone a request may have activated)."""
    return timezone.localtime(now, timezone.get_default_timezone()).date()


def _midnight(day: date) -> datetime:
    """The start of `day` in the deployment's TIME_ZONE."""
    return datetime.combine(day, time(), tzinfo=timezone.get_default_timezone())


def _seconds_until_midnight(now: datetime) -> float:
    midnight = _midnight(_local_date(now) + timedelta(days=1))
    # In UTC: subtracting two times of one zone ignores a daylight-saving change between them.
    return (midnight.astimezone(UTC) - now.astimezone(UTC)).total_seconds()


REFUSAL_WINDOW_SECONDS = 60


def _refusal_key(client_ip: str) -> str:
    return f"vapi-proxy:refusals:{client_ip}"


def refusals_exceeded(client_ip: str | None) -> bool:
    """Whether this address has been refused so often this minute that it is refused unlogged."""
    limit = settings.REFUSAL_THROTTLE_PER_MINUTE
    if not limit or not client_ip:
        return False
    return (cache.get(_refusal_key(client_ip)) or 0) >= limit


def note_refusal(client_ip: str | None) -> None:
    if not settings.REFUSAL_THROTTLE_PER_MINUTE or not client_ip:
        return
    key = _refusal_key(client_ip)
    if cache.add(key, 1, timeout=REFUSAL_WINDOW_SECONDS):  # the first refusal opens a one-minute window
        return
    try:
        if cache.incr(key) == 1:
            # The window closed between the backend's existence check and its increment (Redis'
            # INCR then makes a new counter without an expiry): give it one, or the address
            # would stay refused for good.
            cache.touch(key, REFUSAL_WINDOW_SECONDS)
    except ValueError:  # the window closed between add and incr
        cache.add(key, 1, timeout=REFUSAL_WINDOW_SECONDS)
