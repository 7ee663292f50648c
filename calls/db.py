"""Database use on the call path: few round trips, and no connection held while waiting on Vapi."""

from contextlib import nullcontext

from django.conf import settings
from django.db import connection, transaction


def release_db_connection() -> None:
    """Hands this thread's connection back to the pool; the next query takes one again.

    Only with a pool (PostgreSQL, DATABASE_POOL_MAX_SIZE): without one, closing would mean a new
    connection, which costs more than it saves. Never inside a transaction.
    """
    if settings.DATABASES["default"].get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()


def unique_row(queryset):
    """The row a filter on a unique key matches, or None: `.first()` without its ORDER BY.

    `.first()` sorts by the model's ordering (sometimes through a join); compiling that costs a
    fifth of such a query's CPU time and sorting one row gains nothing.
    """
    return next(iter(queryset.order_by()[:1]), None)


def savepoint_if_nested():
    """For one statement whose IntegrityError the caller handles.

    In autocommit mode (a production request) the statement is its own transaction: wrapping it
    in atomic() would only add BEGIN and COMMIT round trips. Inside a caller's transaction (tests,
    management commands) it needs a savepoint, or the failed statement would break that transaction.
    """
    return transaction.atomic() if connection.in_atomic_block else nullcontext()
