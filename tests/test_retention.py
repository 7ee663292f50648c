"""How long call logs and stored webhook messages are kept (`purge_expired`, safe from cron), and
deleting everything stored about a user (`forget_user`)."""

import hashlib
import io
from datetime import datetime, timedelta, timezone

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone as django_timezone

from assistants.models import PhoneCaller, UserMapping
from calls import retention
from calls.models import CallLog, WebhookMessage
from calls.retention import forget_user, purge_expired

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def retention_settings(settings):
    settings.CALL_LOG_RETENTION_DAYS = 90
    settings.WEBHOOK_MESSAGE_RETENTION_DAYS = 30
    return settings


def call_log(name: str, age: timedelta, *, now=NOW, **fields) -> CallLog:
    return CallLog.objects.create(request_id=name, created_at=now - age, **fields)


def message(name: str, age: timedelta, *, now=NOW, call_log=None, call_id: str = "") -> WebhookMessage:
    return WebhookMessage.objects.create(
        received_at=now - age,
        message_type="status-update",
        vapi_call_id=call_id,
        call_log=call_log,
        payload={"message": {"type": "status-update", "status": "in-progress", "timestamp": 1764756000000}},
        body_sha256=hashlib.sha256(name.encode()).hexdigest(),
        note=name,
    )


def kept() -> dict:
    return {
        "call logs": sorted(CallLog.objects.values_list("request_id", flat=True)),
        "messages": sorted(WebhookMessage.objects.values_list("note", flat=True)),
    }


@pytest.fixture
def rows_of_every_age():
    """Call logs around 90 days old and messages around 30 days old, on both sides of the limit."""
    days = timedelta(days=1)
    second = timedelta(seconds=1)
    recent = call_log("log-1-day", 1 * days)
    return {
        "logs": [
            call_log("log-400-days", 400 * days),
            call_log("log-91-days", 91 * days),
            call_log("log-90-days-and-a-second", 90 * days + second),
            call_log("log-90-days", 90 * days),
            call_log("log-89-days", 89 * days),
            recent,
        ],
        "messages": [
            message("msg-31-days", 31 * days),
            message("msg-30-days-and-a-second", 30 * days + second),
            message("msg-30-days", 30 * days),
            message("msg-29-days", 29 * days, call_log=recent, call_id="call-1"),
            message("msg-now", timedelta(0)),
        ],
    }


KEPT = {
    "call logs": ["log-1-day", "log-89-days", "log-90-days"],
    "messages": ["msg-29-days", "msg-30-days", "msg-now"],
}


def test_it_deletes_call_logs_and_messages_older_than_their_retention_and_keeps_newer_ones(rows_of_every_age):
    counts = purge_expired(now=NOW)

    assert counts == {"webhook messages": 2, "call log entries": 3}
    assert kept() == KEPT


def test_the_retention_settings_decide_what_is_old(rows_of_every_age, settings):
    settings.CALL_LOG_RETENTION_DAYS = 2
    settings.WEBHOOK_MESSAGE_RETENTION_DAYS = 365

    counts = purge_expired(now=NOW)

    assert counts == {"webhook messages": 0, "call log entries": 5}
    assert kept() == {
        "call logs": ["log-1-day"],
        "messages": ["msg-29-days", "msg-30-days", "msg-30-days-and-a-second", "msg-31-days", "msg-now"],
    }


def test_a_kept_call_log_outlives_its_expired_messages():
    log = call_log("log-40-days", timedelta(days=40), vapi_call_id="call-1", transcript="AI: Hello.")
    message("msg-40-days", timedelta(days=40), call_log=log, call_id="call-1")

    purge_expired(now=NOW)

    assert kept() == {"call logs": ["log-40-days"], "messages": []}
    assert CallLog.objects.get().transcript == "AI: Hello."


def test_an_expired_call_log_goes_and_a_kept_message_forgets_it():
    log = call_log("log-100-days", timedelta(days=100), vapi_call_id="call-1")
    kept_message = message("msg-1-day", timedelta(days=1), call_log=log, call_id="call-1")

    purge_expired(now=NOW)

    kept_message.refresh_from_db()
    assert kept() == {"call logs": [], "messages": ["msg-1-day"]}
    assert (kept_message.call_log, kept_message.vapi_call_id) == (None, "call-1")


def test_it_deletes_in_batches(monkeypatch):
    monkeypatch.setattr(retention, "BATCH_SIZE", 2)
    for n in range(5):
        call_log(f"old-log-{n}", timedelta(days=100 + n))
        message(f"old-msg-{n}", timedelta(days=40 + n))
    call_log("new-log", timedelta(days=1))
    message("new-msg", timedelta(days=1))

    with CaptureQueriesContext(connection) as queries:
        counts = purge_expired(now=NOW)

    deletes = [query["sql"].split(" WHERE ")[0] for query in queries if query["sql"].startswith("DELETE")]
    assert deletes == ['DELETE FROM "calls_webhookmessage"'] * 3 + ['DELETE FROM "calls_calllog"'] * 3
    assert counts == {"webhook messages": 5, "call log entries": 5}
    assert kept() == {"call logs": ["new-log"], "messages": ["new-msg"]}


def test_running_it_twice_deletes_nothing_more(rows_of_every_age):
    purge_expired(now=NOW)

    assert purge_expired(now=NOW) == {"webhook messages": 0, "call log entries": 0}
    assert kept() == KEPT


def test_a_dry_run_counts_and_deletes_nothing(rows_of_every_age):
    counts = purge_expired(now=NOW, dry_run=True)

    assert counts == {"webhook messages": 2, "call log entries": 3}
    assert CallLog.objects.count() == 6
    assert WebhookMessage.objects.count() == 5


def purge_command(*args) -> str:
    out = io.StringIO()
    call_command("purge_expired", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def expired_now():
    """Rows aged against the real clock, as the command sees it."""
    now = django_timezone.now()
    call_log("old-log-1", timedelta(days=91), now=now)
    call_log("old-log-2", timedelta(days=200), now=now)
    call_log("new-log", timedelta(days=89), now=now)
    message("old-msg", timedelta(days=31), now=now)
    message("new-msg", timedelta(days=29), now=now)


def test_the_purge_command_says_what_it_deleted(expired_now):
    assert purge_command() == (
        "Deleted 2 call log entries (kept 90 days) and 1 webhook messages (kept 30 days).\n"
    )
    assert kept() == {"call logs": ["new-log"], "messages": ["new-msg"]}


def test_the_purge_command_run_again_deletes_nothing(expired_now):
    purge_command()

    assert purge_command() == "Deleted 0 call log entries (kept 90 days) and 0 webhook messages (kept 30 days).\n"
    assert kept() == {"call logs": ["new-log"], "messages": ["new-msg"]}


def test_the_purge_command_dry_run_says_what_it_would_delete(expired_now):
    assert purge_command("--dry-run") == (
        "Would delete 2 call log entries (kept 90 days) and 1 webhook messages (kept 30 days).\n"
    )
    assert CallLog.objects.count() == 3
    assert WebhookMessage.objects.count() == 2


# --- Forgetting users --------------------------------------------------------------------------------


@pytest.fixture
def three_users(alice):
    """Alice, bob and carol each with call logs, messages, a mapping and a phone number; plus rows of no user."""
    for user in ("alice", "bob", "carol"):
        if user != "alice":
            UserMapping.objects.create(user_id=user, assistant_type=alice.assistant_type, assistant=alice.assistant)
        log = call_log(f"{user}-call", timedelta(days=1), user_id=user, vapi_call_id=f"call-{user}")
        call_log(f"{user}-refused", timedelta(days=2), user_id=user, outcome=CallLog.Outcome.REJECTED)
        message(f"{user}-status", timedelta(days=1), call_log=log, call_id=f"call-{user}")
        message(f"{user}-unlinked", timedelta(days=1), call_id=f"call-{user}")
    PhoneCaller.objects.create(phone_number="+14155550101", user_id="alice")
    PhoneCaller.objects.create(phone_number="+14155550102", user_id="bob")
    PhoneCaller.objects.create(phone_number="+14155550103", user_id="carol")
    call_log("nobody-refused", timedelta(days=1), user_id="")
    message("no-call", timedelta(days=1))


def everything() -> dict:
    return {
        **kept(),
        "mappings": sorted(UserMapping.objects.values_list("user_id", flat=True)),
        "callers": sorted(PhoneCaller.objects.values_list("user_id", flat=True)),
    }


def test_forget_user_deletes_one_users_calls_messages_mappings_and_numbers(three_users):
    counts = forget_user("bob")

    assert counts == {
        "webhook messages": 2,
        "call log entries": 2,
        "user mappings": 1,
        "mapping history entries": 2,  # the mapping's creation, and its deletion just now
        "phone callers": 1,
        "user settings": 0,
    }
    assert not UserMapping.history.filter(user_id="bob").exists()
    assert sorted(set(UserMapping.history.values_list("user_id", flat=True))) == ["alice", "carol"]
    assert everything() == {
        "call logs": ["alice-call", "alice-refused", "carol-call", "carol-refused", "nobody-refused"],
        "messages": ["alice-status", "alice-unlinked", "carol-status", "carol-unlinked", "no-call"],
        "mappings": ["alice", "carol"],
        "callers": ["alice", "carol"],
    }


def test_forget_user_deletes_calls_logged_under_their_number_before_it_was_known(three_users):
    early = call_log("bob-by-number", timedelta(days=3), user_id="+14155550102", vapi_call_id="call-bob-early")
    message("bob-early-report", timedelta(days=3), call_log=early, call_id="call-bob-early")
    call_log("unknown-caller", timedelta(days=3), user_id="+14155550199", vapi_call_id="call-unknown")

    counts = forget_user("bob")

    assert (counts["call log entries"], counts["webhook messages"]) == (3, 3)
    assert everything()["call logs"] == [
        "alice-call", "alice-refused", "carol-call", "carol-refused", "nobody-refused", "unknown-caller"
    ]
    assert "bob-early-report" not in everything()["messages"]


def forget_command(*user_ids) -> str:
    out = io.StringIO()
    call_command("forget_user", *user_ids, stdout=out)
    return out.getvalue()


def test_the_forget_user_command_forgets_two_users_and_says_what_it_deleted(three_users):
    output = forget_command("alice", "carol")

    assert output == (
        "alice: deleted 2 webhook messages, 2 call log entries, 1 user mappings, 2 mapping history entries, 1 phone callers, 0 user settings.\n"
        "carol: deleted 2 webhook messages, 2 call log entries, 1 user mappings, 2 mapping history entries, 1 phone callers, 0 user settings.\n"
    )
    assert everything() == {
        "call logs": ["bob-call", "bob-refused", "nobody-refused"],
        "messages": ["bob-status", "bob-unlinked", "no-call"],
        "mappings": ["bob"],
        "callers": ["bob"],
    }


def test_forgetting_an_unknown_or_already_forgotten_user_deletes_nothing(three_users):
    forget_command("alice")
    before = everything()

    assert forget_command("alice", "dave") == (
        "alice: deleted 0 webhook messages, 0 call log entries, 0 user mappings, 0 mapping history entries, 0 phone callers, 0 user settings.\n"
        "dave: deleted 0 webhook messages, 0 call log entries, 0 user mappings, 0 mapping history entries, 0 phone callers, 0 user settings.\n"
    )
    assert everything() == before


@pytest.mark.parametrize("blank", ["", "  "])
def test_an_empty_user_id_is_refused_rather_than_deleting_every_row_without_a_user(three_users, blank):
    before = everything()

    with pytest.raises(CommandError, match="^A userId is empty: that would delete every call-log row"):
        forget_command("bob", blank)
    with pytest.raises(ValueError, match="^Give a userId"):
        forget_user(blank)

    assert everything() == before


def test_forget_user_deletes_limit_overrides_but_keeps_a_block(db):
    from assistants.models import EndUser

    EndUser.objects.create(user_id="dora", calls_per_day=3)
    EndUser.objects.create(user_id="eve", is_blocked=True, blocked_reason="abuse")

    assert forget_user("dora")["user settings"] == 1
    assert forget_user("eve")["user settings"] == 0
    assert list(EndUser.objects.values_list("user_id", "is_blocked")) == [("eve", True)]
