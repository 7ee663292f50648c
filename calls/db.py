"""Database use on the call path: few round trips, and no connection held while waiting on Vapi."""

from collections.abc import Callable
from contextlib import nullcontext

from django.conf import settings
from django.db import connection, models, transaction


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


class JoinedQuery:
    """A hand-written SELECT over several models' tables, each row read back as model instances.

    For the call path only. The ORM compiles every queryset afresh: for the select_related joins
    that resolve an assistant that cost ~2.5 ms of CPU per call start against ~0.3 ms for this
    (bench/run.py's profile). The columns come from the models' metadata and every value goes
    through the converters the ORM itself applies, so SQLite and PostgreSQL give the instances a
    queryset would.

    `tables` are (model, alias) in select order; `rest(quote_name)` is the SQL after the column
    list (FROM, JOINs, WHERE) with %s placeholders.
    """

    def __init__(self, tables: list[tuple[type[models.Model], str]], rest: Callable[[Callable[[str], str]], str]):
        self._tables = tables
        self._rest = rest
        self._compiled: dict[str, tuple[str, list]] = {}

    def first(self, params: list) -> list[models.Model | None] | None:
        """The first row as one instance per table (None where a LEFT JOIN matched nothing), or None."""
        sql, readers = self._compile()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        instances, start = [], 0
        for model, names, pk_index, converters in readers:
            values = list(row[start : start + len(names)])
            start += len(names)
            if values[pk_index] is None:
                instances.append(None)
                continue
            for index, (expression, functions) in enumerate(converters):
                for function in functions:
                    values[index] = function(values[index], expression, connection)
            instances.append(model.from_db(connection.alias, names, values))
        return instances

    def _compile(self) -> tuple[str, list]:
        compiled = self._compiled.get(connection.vendor)
        if compiled is None:
            quote = connection.ops.quote_name
            columns, readers = [], []
            for model, alias in self._tables:
                fields = model._meta.concrete_fields
                columns += [f"{alias}.{quote(field.column)}" for field in fields]
                converters = []
                for field in fields:
                    expression = field.get_col(alias)
                    converters.append(
                        (expression, connection.ops.get_db_converters(expression) + field.get_db_converters(connection))
                    )
                names = [field.attname for field in fields]
                readers.append((model, names, names.index(model._meta.pk.attname), converters))
            compiled = self._compiled[connection.vendor] = (
                f"SELECT {', '.join(columns)} {self._rest(quote)}",
                readers,
            )
        return compiled


# The call log's INSERT before Vapi and UPDATE after it, as Model.save() writes them, with the
# statement built once per model instead of on every call start (~0.6 ms of CPU per start).
# Values go through each field's pre_save() and get_db_prep_save(), as in save(). No signals
# are sent: nothing listens to the call log's.
_statements: dict[tuple, str] = {}


def insert_row(instance: models.Model) -> None:
    """Saves a new instance: what `instance.save()` does for a model with an auto primary key."""
    meta = instance._meta
    fields = [field for field in meta.concrete_fields if field is not meta.pk]
    returning = connection.features.can_return_columns_from_insert
    key = ("insert", type(instance), connection.vendor)
    sql = _statements.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        sql = _statements[key] = (
            f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(field.column) for field in fields)})"
            f" VALUES ({', '.join(['%s'] * len(fields))})"
            + (f" RETURNING {quote(meta.pk.column)}" if returning else "")
        )
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        pk = cursor.fetchone()[0] if returning else cursor.lastrowid
    setattr(instance, meta.pk.attname, pk)
    instance._state.adding = False
    instance._state.db = connection.alias


def update_row(instance: models.Model, field_names: list[str]) -> None:
    """Writes these fields of a saved instance: what `instance.save(update_fields=...)` does."""
    meta = instance._meta
    fields = [meta.get_field(name) for name in field_names]
    key = ("update", type(instance), tuple(field_names), connection.vendor)
    sql = _statements.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        sql = _statements[key] = (
            f"UPDATE {quote(meta.db_table)} SET {', '.join(f'{quote(field.column)} = %s' for field in fields)}"
            f" WHERE {quote(meta.pk.column)} = %s"
        )
    values = [field.get_db_prep_save(field.pre_save(instance, False), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, meta.pk.get_db_prep_value(instance.pk, connection)])
