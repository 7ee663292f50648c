"""Per-day numbers of the call log for staff: calls, failures and cost, in the deployment's time zone."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from calls.models import CallLog

FAILED = (CallLog.Outcome.REJECTED, CallLog.Outcome.FAILED)


@dataclass(frozen=True)
class DayStats:
    day: date
    calls: int  # every request logged that day, whatever its outcome
    failures: int  # refused by the proxy or failed at Vapi
    cost: Decimal  # what Vapi reported for the calls started that day (USD)


def daily_call_stats(*, days: int = 30, now: datetime | None = None) -> list[DayStats]:
    """One entry per day for the last `days` days up to today (oldest first), days without calls as zero.

    A day is midnight to midnight in settings.TIME_ZONE; a call counts on the day it was started.
    """
    zone = ZoneInfo(settings.TIME_ZONE)
    today = timezone.localtime(now or timezone.now(), zone).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, time.min, tzinfo=zone)
    rows = (
        CallLog.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at", tzinfo=zone))
        .values("day")
        .annotate(calls=Count("pk"), failures=Count("pk", filter=Q(outcome__in=FAILED)), cost=Sum("cost"))
        .order_by()
    )
    by_day = {row["day"]: row for row in rows}
    stats = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        row = by_day.get(day, {})
        stats.append(
            DayStats(
                day=day,
                calls=row.get("calls", 0),
                failures=row.get("failures", 0),
                cost=Decimal(row.get("cost") or 0),
            )
        )
    return stats
