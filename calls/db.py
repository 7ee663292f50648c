"""Not holding a database connection while a request waits on Vapi."""

from django.conf import settings
from django.db import connection


def release_db_connection() -> None:
    """Hands this thread's connection back to the pool; the next query takes one again.

    Only with a pool (PostgreSQL, DATABASE_POOL_MAX_SIZE): without one, closing would mean a new
    connection, which costs more than it saves. Never inside a transaction.
    """
    if settings.DATABASES["default"].get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()
