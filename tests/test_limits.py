"""Limits and quotas, seen through POST /call/web: who is refused with 429 (or 403), with which code
and Retry-After, what the call log keeps, and that Vapi hears nothing of a refused start. Then
`limits_for` and `admit` as plain functions: which limit wins, and what one admission costs."""

import json
from datetime import datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from assistants.models import Assistant, AssistantType, EndUser, UserMapping
from calls import limits, services
from calls.errors import ProxyError
from calls.limits import Limits, admit, limits_for
from calls.models import AdmissionLock, CallLog
from tests.conftest import error_body, load_fixture, post_call

NEW_YORK = ZoneInfo("America/New_York")
WEBHOOK_SECRET = "limits-test-webhook-secret"


def start(user_id="bob", assistant_type="sales-coach") -> dict:
    return {"assistant": {"userId": user_id, "assistantType": assistant_type}}


@pytest.fixture
def clock(monkeypatch):
    """The instant admission takes as now; tests place earlier calls relative to `clock.now`."""
    clock = SimpleNamespace(now=timezone.now())
    monkeypatch.setattr(services, "admit", lambda log, **kwargs: limits.admit(log, now=clock.now, **kwargs))
    return clock


@pytest.fixture
def support(db):
    assistant = Assistant.objects.create(name="Support bot", config={"firstMessage": "How can I help?"})
    return AssistantType.objects.create(slug="support", default_assistant=assistant)


def earlier_call(
    clock,
    user_id="bob",
    *,
    assistant_type="sales-coach",
    seconds_ago=30.0,
    created_at=None,
    outcome=CallLog.Outcome.CREATED,
    active_for=600.0,
    call_status="",
    cost=None,
) -> CallLog:
    """A call log row as admission left it: `active_for` seconds of activity left at `clock.now`."""
    return CallLog.objects.create(
        request_id="earlier",
        user_id=user_id,
        assistant_type=assistant_type,
        created_at=created_at or clock.now - timedelta(seconds=seconds_ago),
        outcome=outcome,
        active_until=clock.now + timedelta(seconds=active_for),
        call_status=call_status,
        cost=cost,
    )


def vapi_creates(fake_vapi, call_id: str) -> None:
    call = load_fixture("vapi_call_web_201.json")
    call["id"] = call_id
    fake_vapi.reply(201, call)


def the_row(response) -> dict:
    log = CallLog.objects.get(request_id=response["X-Request-ID"])
    return {
        "outcome": log.outcome,
        "status_code": log.status_code,
        "upstream_status": log.upstream_status,
        "error_code": log.error_code,
        "error_detail": log.error_detail,
        "user_id": log.user_id,
        "assistant_type": log.assistant_type,
        "assistant": log.assistant and log.assistant.name,
    }


def assert_refused(
    response,
    fake_vapi,
    *,
    code,
    message,
    retry_after,
    status=429,
    user_id="bob",
    assistant_type="sales-coach",
    assistant="Sales coach",
):
    """The client got the error shape with this code; the log has one rejected row; Vapi heard nothing."""
    assert response.status_code == status
    assert response.json() == error_body(response, status, code, message)
    assert response.get("Retry-After") == retry_after
    assert the_row(response) == {
        "outcome": "rejected",
        "status_code": status,
        "upstream_status": None,
        "error_code": code,
        "error_detail": message,
        "user_id": user_id,
        "assistant_type": assistant_type,
        "assistant": assistant,
    }
    assert fake_vapi.requests == []


def assert_started(response, fake_vapi, *, user_id="bob"):
    assert response.status_code == HTTPStatus.CREATED, response.content
    log = CallLog.objects.get(request_id=response["X-Request-ID"])
    assert (log.outcome, log.user_id) == ("created", user_id)
    assert len(fake_vapi.requests) == 1


# --- per user: calls per minute, per day, at once ------------------------------------------------


def test_a_user_over_calls_per_minute_waits_until_the_oldest_call_leaves_the_minute(
    client, sales_coach, settings, clock, fake_vapi
):
    settings.LIMIT_USER_CALLS_PER_MINUTE = 2
    earlier_call(clock, seconds_ago=20)
    earlier_call(clock, seconds_ago=5)
    earlier_call(clock, seconds_ago=61)  # left the minute
    earlier_call(clock, "carol", seconds_ago=1)  # someone else's

    response = post_call(client, start())

    assert_refused(
        response,
        fake_vapi,
        code="limit_user_calls_per_minute",
        message="You have started your limit of calls for this minute (2 of 2); try again in 40 s.",
        retry_after="40",
    )


def test_a_user_under_calls_per_minute_starts_a_call(client, sales_coach, settings, clock, fake_vapi):
    settings.LIMIT_USER_CALLS_PER_MINUTE = 2
    earlier_call(clock, seconds_ago=20)
    earlier_call(clock, seconds_ago=60.5)

    assert_started(post_call(client, start()), fake_vapi)


def test_calls_per_day_follow_the_day_in_time_zone_and_wait_until_local_midnight(
    client, sales_coach, settings, clock, fake_vapi
):
    settings.TIME_ZONE = "America/New_York"
    settings.LIMIT_USER_CALLS_PER_DAY = 2
    clock.now = datetime(2026, 6, 10, 23, 30, tzinfo=NEW_YORK)  # already June 11 in UTC
    earlier_call(clock, created_at=datetime(2026, 6, 10, 0, 30, tzinfo=NEW_YORK))  # June 10 in UTC too
    earlier_call(clock, created_at=datetime(2026, 6, 10, 19, 0, tzinfo=NEW_YORK))  # June 10 in UTC too
    earlier_call(clock, created_at=datetime(2026, 6, 9, 23, 59, tzinfo=NEW_YORK))  # yesterday

    response = post_call(client, start())

    assert_refused(
        response,
        fake_vapi,
        code="limit_user_calls_per_day",
        message="You have started your limit of calls for today (2 of 2); try again in 1800 s.",
        retry_after="1800",
    )


def test_a_call_from_yesterday_in_time_zone_does_not_count_although_it_is_today_in_utc(
    client, sales_coach, settings, clock, fake_vapi
):
    settings.TIME_ZONE = "America/New_York"
    settings.LIMIT_USER_CALLS_PER_DAY = 1
    clock.now = datetime(2026, 6, 10, 10, 0, tzinfo=NEW_YORK)  # 14:00 UTC
    earlier_call(clock, created_at=datetime(2026, 6, 9, 21, 0, tzinfo=NEW_YORK))  # 01:00 UTC on June 10

    assert_started(post_call(client, start()), fake_vapi)


def test_a_user_at_their_concurrent_calls_limit_gets_429(client, sales_coach, settings, clock, fake_vapi):
    settings.LIMIT_USER_CONCURRENT_CALLS = 2
    settings.LIMIT_CONCURRENCY_RETRY_AFTER_SECONDS = 45
    earlier_call(clock, outcome=CallLog.Outcome.PENDING)
    earlier_call(clock, outcome=CallLog.Outcome.CREATED, seconds_ago=3 * 3600)
    earlier_call(clock, "carol")

    response = post_call(client, start())

    assert_refused(
        response,
        fake_vapi,
        code="limit_user_concurrent_calls",
        message="You are at your limit of simultaneous calls (2 of 2); try again in 45 s.",
        retry_after="45",
    )


def test_calls_started_through_the_proxy_count_until_vapi_reports_them_ended(
    client, sales_coach, settings, fake_vapi
):
    settings.LIMIT_USER_CONCURRENT_CALLS = 1
    settings.VAPI_WEBHOOK_AUTH = "secret"
    settings.VAPI_WEBHOOK_SECRETS = [WEBHOOK_SECRET]
    vapi_creates(fake_vapi, "call-1")
    assert post_call(client, start()).status_code == HTTPStatus.CREATED
    fake_vapi.requests.clear()

    refused = post_call(client, start())
    assert_refused(
        refused,
        fake_vapi,
        code="limit_user_concurrent_calls",
        message="You are at your limit of simultaneous calls (1 of 1); try again in 30 s.",
        retry_after="30",
    )

    ended = {"message": {"type": "status-update", "status": "ended", "call": {"id": "call-1"}}}
    webhook = client.generic(
        "POST",
        "/webhooks/vapi",
        data=json.dumps(ended),
        content_type="application/json",
        headers={"X-Vapi-Secret": WEBHOOK_SECRET},
    )
    assert webhook.status_code == HTTPStatus.OK
    vapi_creates(fake_vapi, "call-2")

    assert_started(post_call(client, start()), fake_vapi)


# --- what counts as active ------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", [CallLog.Outcome.PENDING, CallLog.Outcome.CREATED])
def test_pending_and_created_calls_count_as_active(client, sales_coach, settings, clock, fake_vapi, outcome):
    settings.LIMIT_USER_CONCURRENT_CALLS = 1
    earlier_call(clock, outcome=outcome, active_for=0.5)

    response = post_call(client, start())

    assert response.json()["code"] == "limit_user_concurrent_calls"
    assert fake_vapi.requests == []


@pytest.mark.parametrize(
    "row",
    [
        pytest.param({"call_status": "ended"}, id="vapi-reported-it-ended"),
        pytest.param({"active_for": 0}, id="its-active-until-passed"),
        pytest.param({"outcome": CallLog.Outcome.FAILED}, id="failed"),
        pytest.param({"outcome": CallLog.Outcome.REJECTED}, id="rejected"),
    ],
)
def test_a_call_that_is_not_active_does_not_count(client, sales_coach, settings, clock, fake_vapi, row):
    settings.LIMIT_USER_CONCURRENT_CALLS = 1
    settings.LIMIT_TYPE_CONCURRENT_CALLS = 1
    settings.LIMIT_DEPLOYMENT_CONCURRENT_CALLS = 1
    earlier_call(clock, **row)

    assert_started(post_call(client, start()), fake_vapi)


@pytest.mark.parametrize("status", ["queued", "ringing", "in-progress", "forwarding"])
def test_a_call_vapi_reports_as_not_yet_ended_still_counts(client, sales_coach, settings, clock, fake_vapi, status):
    settings.LIMIT_USER_CONCURRENT_CALLS = 1
    earlier_call(clock, call_status=status)

    assert post_call(client, start()).json()["code"] == "limit_user_concurrent_calls"


def test_a_call_without_news_from_vapi_counts_for_the_assistants_longest_call_plus_the_grace(
    client, sales_coach, settings, clock, fake_vapi
):
    settings.LIMIT_USER_CONCURRENT_CALLS = 1
    settings.ACTIVE_CALL_GRACE_SECONDS = 60
    sales_coach.default_assistant.max_duration_seconds = 300
    sales_coach.default_assistant.save()
    admitted_at = clock.now
    vapi_creates(fake_vapi, "call-1")
    first = post_call(client, start())
    assert first.status_code == HTTPStatus.CREATED
    assert CallLog.objects.get(request_id=first["X-Request-ID"]).active_until == admitted_at + timedelta(seconds=360)

    clock.now = admitted_at + timedelta(seconds=359)
    assert post_call(client, start()).json()["code"] == "limit_user_concurrent_calls"

    clock.now = admitted_at + timedelta(seconds=360)  # the webhook was lost: the user is not blocked for good
    vapi_creates(fake_vapi, "call-2")
    fake_vapi.requests.clear()
    assert_started(post_call(client, start()), fake_vapi)


def test_rejected_rows_do_not_count_as_attempts(client, sales_coach, settings, clock, fake_vapi):
    settings.LIMIT_USER_CALLS_PER_MINUTE = 1
    settings.LIMIT_USER_CALLS_PER_DAY = 1
    earlier_call(clock, outcome=CallLog.Outcome.REJECTED, seconds_ago=10)

    assert_started(post_call(client, start()), fake_vapi)


def test_failed_calls_count_as_attempts(client, sales_coach, settings, clock, fake_vapi):
    settings.LIMIT_USER_CALLS_PER_MINUTE = 1
    earlier_call(clock, outcome=CallLog.Outcome.FAILED, seconds_ago=10)

    response = post_call(client, start())

    assert_refused(
        response,
        fake_vapi,
        code="limit_user_calls_per_minute",
        message="You have started your limit of calls for this minute (1 of 1); try again in 50 s.",
        retry_after="50",
    )


# --- per assistant type and for the deployment ------------------------------------------------------


def test_an_assistant_type_at_its_own_concurrent_limit_refuses_every_user(
    client, sales_coach, support, settings, clock, fake_vapi
):
    settings.LIMIT_TYPE_CONCURRENT_CALLS = 5
    sales_coach.max_concurrent_calls = 2
    sales_coach.save()
    earlier_call(clock, "carol")
    earlier_call(clock, "dave")
    earlier_call(clock, "erin", assistant_type="support")

    response = post_call(client, start())

    assert_refused(
        response,
        fake_vapi,
        code="limit_type_concurrent_calls",
        message="Assistant type 'sales-coach' is at its limit of simultaneous calls (2 of 2); try again in 30 s.",
        retry_after="30",
    )
    assert_started(post_call(client, start(assistant_type="support")), fake_vapi)


def test_the_type_setting_applies_to_a_type_without_its_own_limit(
    client, sales_coach, support, settings, clock, fake_vapi
):
    settings.LIMIT_TYPE_CONCURRENT_CALLS = 1
    earlier_call(clock, "carol", assistant_type="support")

    response = post_call(client, start(assistant_type="support"))

    assert_refused(
        response,
        fake_vapi,
        code="limit_type_concurrent_calls",
        message="Assistant type 'support' is at its limit of simultaneous calls (1 of 1); try again in 30 s.",
        retry_after="30",
        assistant_type="support",
        assistant="Support bot",
    )
    assert_started(post_call(client, start()), fake_vapi)


def test_the_deployment_at_its_concurrent_limit_refuses_every_user_and_type(
    client, sales_coach, support, settings, clock, fake_vapi
):
    settings.LIMIT_DEPLOYMENT_CONCURRENT_CALLS = 2
    earlier_call(clock, "carol")
    earlier_call(clock, "dave", assistant_type="support")
    earlier_call(clock, "erin", call_status="ended")

    response = post_call(client, start())

    assert_refused(
        response,
        fake_vapi,
        code="limit_deployment_concurrent_calls",
        message="The service is at its limit of simultaneous calls (2 of 2); try again in 30 s.",
        retry_after="30",
    )


# --- admin overrides ----------------------------------------------------------------------------------


def test_a_users_own_higher_limit_wins_over_the_setting(client, sales_coach, settings, clock, fake_vapi):
    settings.LIMIT_USER_CONCURRENT_CALLS = 1
    settings.LIMIT_USER_CALLS_PER_MINUTE = 1
    EndUser.objects.create(user_id="bob", max_concurrent_calls=2, calls_per_minute=2)
    earlier_call(clock)

    assert_started(post_call(client, start()), fake_vapi)


def test_a_users_own_lower_limit_wins_over_the_setting(client, sales_coach, settings, clock, fake_vapi):
    settings.TIME_ZONE = "UTC"
    settings.LIMIT_USER_CALLS_PER_DAY = 100
    EndUser.objects.create(user_id="bob", calls_per_day=1)
    clock.now = datetime(2026, 6, 10, 23, 0, tzinfo=ZoneInfo("UTC"))
    earlier_call(clock, seconds_ago=3600)

    response = post_call(client, start())

    assert_refused(
        response,
        fake_vapi,
        code="limit_user_calls_per_day",
        message="You have started your limit of calls for today (1 of 1); try again in 3600 s.",
        retry_after="3600",
    )


def test_a_users_own_limit_does_not_apply_to_other_users(client, sales_coach, settings, clock, fake_vapi):
    settings.LIMIT_USER_CONCURRENT_CALLS = 5
    EndUser.objects.create(user_id="carol", max_concurrent_calls=1)
    earlier_call(clock, "bob")

    assert_started(post_call(client, start()), fake_vapi)


def test_a_mapping_limit_counts_only_that_users_calls_of_that_type(
    client, alice, support, settings, clock, fake_vapi
):
    alice.max_concurrent_calls = 1
    alice.save()
    earlier_call(clock, "alice", assistant_type="support")
    earlier_call(clock, "bob")
    vapi_creates(fake_vapi, "call-1")
    assert_started(post_call(client, start("alice")), fake_vapi, user_id="alice")
    fake_vapi.requests.clear()

    response = post_call(client, start("alice"))

    assert_refused(
        response,
        fake_vapi,
        code="limit_mapping_concurrent_calls",
        message="You are at your limit of simultaneous 'sales-coach' calls (1 of 1); try again in 30 s.",
        retry_after="30",
        user_id="alice",
        assistant="Premium coach",
    )


def test_a_mapping_at_its_limit_gets_429_naming_the_type(client, alice, settings, clock, fake_vapi):
    alice.calls_per_minute = 1
    alice.save()
    earlier_call(clock, "alice", seconds_ago=15)

    response = post_call(client, start("alice"))

    assert_refused(
        response,
        fake_vapi,
        code="limit_mapping_calls_per_minute",
        message="You have started your limit of 'sales-coach' calls for this minute (1 of 1); try again in 45 s.",
        retry_after="45",
        user_id="alice",
        assistant="Premium coach",
    )


def test_a_mapping_limit_does_not_apply_to_other_users_of_the_type(client, alice, settings, clock, fake_vapi):
    alice.max_concurrent_calls = 1
    alice.save()
    earlier_call(clock, "bob")

    assert_started(post_call(client, start("bob")), fake_vapi)


def test_a_higher_mapping_limit_overrides_the_users_limit_for_that_type_only(
    client, alice, support, settings, clock, fake_vapi
):
    settings.LIMIT_USER_CONCURRENT_CALLS = 1
    alice.max_concurrent_calls = 2
    alice.save()
    earlier_call(clock, "alice")

    assert_started(post_call(client, start("alice")), fake_vapi, user_id="alice")
    fake_vapi.requests.clear()

    response = post_call(client, start("alice", assistant_type="support"))

    assert_refused(
        response,
        fake_vapi,
        code="limit_user_concurrent_calls",
        message="You are at your limit of simultaneous calls (2 of 1); try again in 30 s.",
        retry_after="30",
        user_id="alice",
        assistant_type="support",
        assistant="Support bot",
    )


# --- money -------------------------------------------------------------------------------------------


@pytest.fixture
def evening_in_new_york(settings, clock):
    settings.TIME_ZONE = "America/New_York"
    clock.now = datetime(2026, 6, 10, 20, 0, tzinfo=NEW_YORK)  # June 11, 00:00 UTC: a new day in UTC
    return clock


def test_a_user_who_spent_their_daily_limit_waits_until_local_midnight(
    client, sales_coach, settings, evening_in_new_york, fake_vapi
):
    clock = evening_in_new_york
    settings.LIMIT_USER_DAILY_SPEND = Decimal("5")
    just_after_midnight = datetime(2026, 6, 10, 0, 5, tzinfo=NEW_YORK)  # June 10 in UTC: "yesterday" there
    earlier_call(clock, created_at=just_after_midnight, cost=Decimal("3.25"), call_status="ended")
    earlier_call(clock, seconds_ago=600, cost=Decimal("1.75"), call_status="ended")
    earlier_call(clock, "carol", cost=Decimal("50"), call_status="ended")

    response = post_call(client, start())

    assert_refused(
        response,
        fake_vapi,
        code="limit_user_daily_spend",
        message="You have reached your spending limit for today (5.00 of 5.00); try again in 14400 s.",
        retry_after="14400",
    )


def test_yesterdays_spend_does_not_count(client, sales_coach, settings, clock, fake_vapi):
    settings.TIME_ZONE = "America/New_York"
    settings.LIMIT_USER_DAILY_SPEND = Decimal("5")
    settings.LIMIT_DEPLOYMENT_DAILY_SPEND = Decimal("5")
    clock.now = datetime(2026, 6, 10, 10, 0, tzinfo=NEW_YORK)  # 14:00 UTC
    earlier_call(clock, seconds_ago=60, cost=Decimal("4.99"), call_status="ended")
    yesterday_evening = datetime(2026, 6, 9, 21, 0, tzinfo=NEW_YORK)  # 01:00 UTC on June 10: today in UTC
    earlier_call(clock, created_at=yesterday_evening, cost=Decimal("100"), call_status="ended")

    assert_started(post_call(client, start()), fake_vapi)


def test_a_users_own_spend_limit_wins_over_the_setting(client, sales_coach, settings, evening_in_new_york, fake_vapi):
    clock = evening_in_new_york
    settings.LIMIT_USER_DAILY_SPEND = Decimal("10")
    EndUser.objects.create(user_id="bob", daily_spend_limit=Decimal("2.00"))
    earlier_call(clock, cost=Decimal("2.5"), call_status="ended")

    response = post_call(client, start())

    assert_refused(
        response,
        fake_vapi,
        code="limit_user_daily_spend",
        message="You have reached your spending limit for today (2.50 of 2.00); try again in 14400 s.",
        retry_after="14400",
    )


def test_a_users_own_higher_spend_limit_lets_them_start(client, sales_coach, settings, evening_in_new_york, fake_vapi):
    clock = evening_in_new_york
    settings.LIMIT_USER_DAILY_SPEND = Decimal("2")
    EndUser.objects.create(user_id="bob", daily_spend_limit=Decimal("10.00"))
    earlier_call(clock, cost=Decimal("9.99"), call_status="ended")

    assert_started(post_call(client, start()), fake_vapi)


def test_the_deployments_daily_spend_limit_counts_every_users_calls(
    client, sales_coach, support, settings, evening_in_new_york, fake_vapi
):
    clock = evening_in_new_york
    settings.LIMIT_DEPLOYMENT_DAILY_SPEND = Decimal("10")
    earlier_call(clock, "carol", cost=Decimal("6.000001"), call_status="ended")
    earlier_call(clock, "dave", assistant_type="support", cost=Decimal("4"), call_status="ended")
    earlier_call(clock, "erin", created_at=datetime(2026, 6, 9, 22, 0, tzinfo=NEW_YORK), cost=Decimal("99"))

    response = post_call(client, start())

    assert_refused(
        response,
        fake_vapi,
        code="limit_deployment_daily_spend",
        message="The service has reached its spending limit for today (10.00 of 10.00); try again in 14400 s.",
        retry_after="14400",
    )


# --- blocked users and the refusal throttle ------------------------------------------------------------


def test_a_blocked_user_gets_403_before_any_limit_is_counted(client, sales_coach, settings, clock, fake_vapi):
    settings.LIMIT_USER_CONCURRENT_CALLS = 1
    settings.LIMIT_DEPLOYMENT_CONCURRENT_CALLS = 1
    EndUser.objects.create(user_id="bob", is_blocked=True, blocked_reason="chargeback")
    earlier_call(clock)

    response = post_call(client, start())

    assert_refused(
        response,
        fake_vapi,
        status=403,
        code="user_blocked",
        message="This user may not start calls; contact support.",
        retry_after=None,
        assistant=None,
    )
    assert not AdmissionLock.objects.exists()


REFUSED_REQUESTS = [
    (start(assistant_type="no-such-type"), {}),  # 404 unknown_assistant_type
    (start(user_id=""), {}),  # 400: no userId
    (start(), {"HTTP_ORIGIN": "https://evil.example"}),  # 403 origin_not_allowed
]


def refused_from(client, ip: str, count: int) -> None:
    for body, headers in REFUSED_REQUESTS[:count]:
        assert post_call(client, body, REMOTE_ADDR=ip, **headers).status_code in (400, 403, 404)


def test_after_three_refusals_from_an_address_its_next_request_is_refused_without_a_row(
    client, sales_coach, settings, fake_vapi
):
    settings.REFUSAL_THROTTLE_PER_MINUTE = 3
    refused_from(client, "198.51.100.7", 3)
    rows = CallLog.objects.count()

    response = post_call(client, start(), REMOTE_ADDR="198.51.100.7")

    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response.json() == {
        "statusCode": 429,
        "error": "Too Many Requests",
        "message": "Too many refused requests from this address; try again in a minute.",
        "code": "too_many_refusals",
        "requestId": response["X-Request-ID"],
    }
    assert response["Retry-After"] == "60"
    assert CallLog.objects.count() == rows == 3
    assert fake_vapi.requests == []

    assert_started(post_call(client, start(), REMOTE_ADDR="198.51.100.8"), fake_vapi)


def test_limit_refusals_count_towards_the_throttle(client, sales_coach, settings, clock, fake_vapi):
    settings.REFUSAL_THROTTLE_PER_MINUTE = 3
    settings.LIMIT_USER_CONCURRENT_CALLS = 1
    earlier_call(clock)
    for _ in range(3):
        assert post_call(client, start(), REMOTE_ADDR="198.51.100.7").json()["code"] == "limit_user_concurrent_calls"

    response = post_call(client, start("carol"), REMOTE_ADDR="198.51.100.7")

    assert response.json()["code"] == "too_many_refusals"
    assert fake_vapi.requests == []


def test_successful_starts_do_not_count_as_refusals(client, sales_coach, settings, fake_vapi):
    settings.REFUSAL_THROTTLE_PER_MINUTE = 3
    for number in range(3):
        vapi_creates(fake_vapi, f"call-{number}")
        assert post_call(client, start(), REMOTE_ADDR="198.51.100.7").status_code == HTTPStatus.CREATED
    refused_from(client, "198.51.100.7", 2)
    vapi_creates(fake_vapi, "call-3")
    fake_vapi.requests.clear()

    assert_started(post_call(client, start(), REMOTE_ADDR="198.51.100.7"), fake_vapi)


# --- limits_for: which limit applies ------------------------------------------------------------------


@pytest.fixture
def default_limits(settings):
    settings.LIMIT_USER_CALLS_PER_MINUTE = 5
    settings.LIMIT_USER_CALLS_PER_DAY = 100
    settings.LIMIT_USER_CONCURRENT_CALLS = 2
    settings.LIMIT_TYPE_CONCURRENT_CALLS = 8
    settings.LIMIT_DEPLOYMENT_CONCURRENT_CALLS = 10
    settings.LIMIT_USER_DAILY_SPEND = Decimal("5")
    settings.LIMIT_DEPLOYMENT_DAILY_SPEND = Decimal("50")


SETTINGS_LIMITS = Limits(
    user_per_minute=5,
    user_per_day=100,
    user_concurrent=2,
    type_concurrent=8,
    deployment_concurrent=10,
    user_daily_spend=Decimal("5"),
    deployment_daily_spend=Decimal("50"),
)


def test_without_overrides_the_settings_apply(default_limits):
    coach = AssistantType(slug="sales-coach")

    assert limits_for(end_user=None, mapping=None, assistant_type=coach) == SETTINGS_LIMITS
    assert limits_for(end_user=EndUser(user_id="bob"), mapping=None, assistant_type=coach) == SETTINGS_LIMITS


def test_without_settings_or_overrides_nothing_is_limited():
    assert limits_for(end_user=None, mapping=None, assistant_type=AssistantType(slug="sales-coach")) == Limits()


@pytest.mark.parametrize("value", [1, 50])
def test_a_users_overrides_win_over_the_settings_higher_or_lower(default_limits, value):
    bob = EndUser(
        user_id="bob",
        calls_per_minute=value,
        calls_per_day=value,
        max_concurrent_calls=value,
        daily_spend_limit=Decimal(value),
    )

    assert limits_for(end_user=bob, mapping=None, assistant_type=AssistantType(slug="sales-coach")) == Limits(
        user_per_minute=value,
        user_per_day=value,
        user_concurrent=value,
        type_concurrent=8,
        deployment_concurrent=10,
        user_daily_spend=Decimal(value),
        deployment_daily_spend=Decimal("50"),
    )


def test_a_zero_override_is_a_limit_not_a_missing_one(default_limits):
    bob = EndUser(user_id="bob", max_concurrent_calls=0)

    assert limits_for(end_user=bob, mapping=None, assistant_type=AssistantType(slug="x")).user_concurrent == 0


def test_a_mapping_override_replaces_the_users_limit_for_its_type(default_limits):
    bob = EndUser(user_id="bob", calls_per_minute=3, max_concurrent_calls=4)
    mapping = UserMapping(user_id="bob", calls_per_minute=1, calls_per_day=7)

    assert limits_for(end_user=bob, mapping=mapping, assistant_type=AssistantType(slug="sales-coach")) == Limits(
        mapping_per_minute=1,
        mapping_per_day=7,
        user_concurrent=4,
        type_concurrent=8,
        deployment_concurrent=10,
        user_daily_spend=Decimal("5"),
        deployment_daily_spend=Decimal("50"),
    )


def test_a_mapping_without_overrides_leaves_the_users_limits(default_limits):
    mapping = UserMapping(user_id="bob")

    assert limits_for(end_user=None, mapping=mapping, assistant_type=AssistantType(slug="x")) == SETTINGS_LIMITS


@pytest.mark.parametrize("own, expected", [(None, 8), (3, 3), (20, 20)])
def test_a_types_own_concurrent_limit_wins_over_the_setting(default_limits, own, expected):
    coach = AssistantType(slug="sales-coach", max_concurrent_calls=own)

    assert limits_for(end_user=None, mapping=None, assistant_type=coach).type_concurrent == expected


# --- admit: one admission, frozen clock ------------------------------------------------------------------


def new_log(user_id="bob", assistant_type="sales-coach") -> CallLog:
    return CallLog(request_id="new", user_id=user_id, assistant_type=assistant_type)


ALL_LIMITS = Limits(
    user_per_minute=5,
    user_per_day=100,
    user_concurrent=2,
    mapping_per_minute=5,
    type_concurrent=8,
    deployment_concurrent=10,
    user_daily_spend=Decimal("5"),
    deployment_daily_spend=Decimal("50"),
)


def test_admission_saves_the_pending_row_active_for_the_longest_call_plus_the_grace(db, settings):
    settings.ACTIVE_CALL_GRACE_SECONDS = 90
    now = datetime(2026, 6, 10, 12, 0, tzinfo=ZoneInfo("UTC"))
    log = new_log()

    admit(log, limits=ALL_LIMITS, max_duration_seconds=600, now=now)

    log = CallLog.objects.get(pk=log.pk)
    assert (log.outcome, log.active_until) == ("pending", now + timedelta(seconds=690))
    assert sorted(AdmissionLock.objects.values_list("key", flat=True)) == ["deployment", "type:sales-coach", "user:bob"]


def test_an_admission_counts_every_limit_in_one_query(db, django_assert_num_queries):
    # savepoint, lock rows (created on first use), one count, the row, release
    with django_assert_num_queries(5):
        admit(new_log(), limits=ALL_LIMITS, max_duration_seconds=600)


def test_an_admission_without_limits_only_saves_the_row(db, django_assert_num_queries):
    with django_assert_num_queries(3):
        admit(new_log(), limits=Limits(), max_duration_seconds=600)
    assert not AdmissionLock.objects.exists()


def test_a_refused_admission_saves_nothing(db):
    now = timezone.now()
    CallLog.objects.create(request_id="a", user_id="bob", outcome="created", active_until=now + timedelta(minutes=5))

    with pytest.raises(ProxyError) as refused:
        admit(new_log(), limits=Limits(user_concurrent=1), max_duration_seconds=600, now=now)

    assert (refused.value.status, refused.value.code) == (429, "limit_user_concurrent_calls")
    assert CallLog.objects.count() == 1


def minute_refusal(calls_seconds_ago, limit) -> ProxyError:
    now = datetime(2026, 6, 10, 12, 0, tzinfo=ZoneInfo("UTC"))
    for seconds in calls_seconds_ago:
        CallLog.objects.create(
            request_id="a", user_id="bob", outcome="created", created_at=now - timedelta(seconds=seconds)
        )
    with pytest.raises(ProxyError) as refused:
        admit(new_log(), limits=Limits(user_per_minute=limit), max_duration_seconds=600, now=now)
    return refused.value


def test_at_the_per_minute_limit_the_oldest_call_of_the_minute_decides_retry_after(db):
    refused = minute_refusal([59.5, 30, 10], limit=3)

    assert refused.headers == {"Retry-After": "1"}
    assert refused.message == "You have started your limit of calls for this minute (3 of 3); try again in 1 s."


@pytest.mark.parametrize("limit, retry_after", [(1, "50"), (2, "30")])
def test_over_a_lowered_per_minute_limit_retry_after_waits_until_the_count_is_under_it(db, limit, retry_after):
    # Three calls in the minute, the limit lowered since: one slot frees when enough have left.
    refused = minute_refusal([50, 30, 10], limit=limit)

    assert refused.headers == {"Retry-After": retry_after}


@pytest.mark.parametrize(
    "local_now, seconds",
    [
        pytest.param(datetime(2026, 6, 10, 23, 59, 59, 500000), 1, id="half-a-second-before-midnight"),
        pytest.param(datetime(2026, 6, 10, 0, 0), 86400, id="at-midnight"),
        pytest.param(datetime(2026, 3, 8, 0, 30), 81000, id="spring-forward-day-has-23-hours"),
        pytest.param(datetime(2026, 11, 1, 0, 30), 88200, id="fall-back-day-has-25-hours"),
        pytest.param(datetime(2026, 11, 1, 23, 0), 3600, id="after-fall-back"),
    ],
)
def test_a_daily_limit_waits_until_midnight_in_time_zone(db, settings, local_now, seconds):
    settings.TIME_ZONE = "America/New_York"
    now = local_now.replace(tzinfo=NEW_YORK)
    CallLog.objects.create(request_id="a", user_id="bob", outcome="created", created_at=now)

    with pytest.raises(ProxyError) as refused:
        admit(new_log(), limits=Limits(user_per_day=1), max_duration_seconds=600, now=now)

    assert refused.value.headers == {"Retry-After": str(seconds)}


def test_a_per_minute_limit_of_zero_refuses_every_start(db):
    with pytest.raises(ProxyError) as refused:
        admit(new_log(), limits=Limits(user_per_minute=0), max_duration_seconds=600)

    assert (refused.value.code, refused.value.headers) == ("limit_user_calls_per_minute", {"Retry-After": "60"})



def test_days_follow_time_zone_whatever_zone_is_active(db, settings):
    settings.TIME_ZONE = "America/New_York"
    now = datetime(2026, 6, 10, 23, 30, tzinfo=NEW_YORK)  # June 11 in Tokyo and in UTC
    CallLog.objects.create(request_id="a", user_id="bob", outcome="created", created_at=now - timedelta(hours=20))

    with timezone.override(ZoneInfo("Asia/Tokyo")), pytest.raises(ProxyError) as refused:
        admit(new_log(), limits=Limits(user_per_day=1), max_duration_seconds=600, now=now)

    assert refused.value.headers == {"Retry-After": "1800"}

class CacheWhoseKeyExpiresDuringIncr:
    """Redis as Django drives it: EXISTS, then INCR; the key expiring in between gives a new counter."""

    def __init__(self):
        self.values, self.lifetimes = {}, {}

    def add(self, key, value, timeout):
        if key in self.values:
            return False
        self.values[key], self.lifetimes[key] = value, timeout
        return True

    def incr(self, key):
        self.values[key], self.lifetimes[key] = 1, None  # expired after the check: INCR starts over
        return 1

    def touch(self, key, timeout):
        self.lifetimes[key] = timeout


def test_a_refusal_counter_recreated_by_the_increment_still_expires(settings, monkeypatch):
    settings.REFUSAL_THROTTLE_PER_MINUTE = 3
    cache = CacheWhoseKeyExpiresDuringIncr()
    monkeypatch.setattr(limits, "cache", cache)

    limits.note_refusal("198.51.100.7")
    limits.note_refusal("198.51.100.7")

    assert cache.lifetimes == {"vapi-proxy:refusals:198.51.100.7": 60}
