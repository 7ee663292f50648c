"""calls.db.insert_row and update_row write the call log exactly as Model.save() would."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from calls.db import insert_row, update_row
from calls.models import CallLog


def _stored(pk):
    row = CallLog.objects.get(pk=pk)
    return {field.attname: getattr(row, field.attname) for field in CallLog._meta.concrete_fields if field.attname != "id"}


ACTIVE_UNTIL = timezone.now() + timedelta(minutes=15)


def _log(**fields):
    return CallLog(
        request_id="req-1",
        route="web",
        user_id="ana",
        assistant_type="coach",
        origin="https://app.example.com",
        client_ip="203.0.113.7",
        outcome=CallLog.Outcome.PENDING,
        active_until=ACTIVE_UNTIL,
        **fields,
    )


def test_an_inserted_row_reads_back_as_the_orm_would_have_saved_it(db):
    by_orm, by_insert = _log(), _log()
    by_orm.save()

    insert_row(by_insert)

    assert by_insert.pk is not None and by_insert.pk != by_orm.pk
    assert not by_insert._state.adding
    assert by_insert.created_at is not None  # auto_now_add set on the instance, as save() does
    saved_by_orm, saved_by_insert = _stored(by_orm.pk), _stored(by_insert.pk)
    assert saved_by_insert.pop("created_at") - saved_by_orm.pop("created_at") < timedelta(seconds=5)
    assert saved_by_insert == saved_by_orm


def test_an_update_writes_only_the_named_fields(db):
    log = _log()
    insert_row(log)
    log.outcome = CallLog.Outcome.CREATED
    log.status_code = 201
    log.vapi_call_id = "3f1c9a52-6a7e-4c1b-9d1e-0c2f5e8b7a11"
    log.cost = Decimal("0.1234")  # changed on the instance but not named: not written
    log.user_id = "someone-else"

    update_row(log, ["outcome", "status_code", "vapi_call_id"])

    stored = CallLog.objects.get(pk=log.pk)
    assert (stored.outcome, stored.status_code, stored.vapi_call_id, stored.cost, stored.user_id) == (
        "created",
        201,
        "3f1c9a52-6a7e-4c1b-9d1e-0c2f5e8b7a11",
        None,
        "ana",
    )


def test_a_duplicate_vapi_call_id_raises_the_orms_integrity_error(db):
    first, second = _log(), _log()
    insert_row(first)
    insert_row(second)
    first.vapi_call_id = second.vapi_call_id = "3f1c9a52-6a7e-4c1b-9d1e-0c2f5e8b7a11"
    update_row(first, ["vapi_call_id"])

    with pytest.raises(IntegrityError), transaction.atomic():
        update_row(second, ["vapi_call_id"])
