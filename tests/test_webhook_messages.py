"""What the proxy does with each message Vapi sends to POST /webhooks/vapi: the reply Vapi gets, the
call-log row it fills, the stored message, and what the customer's backend and Vapi receive.

Payloads come from tests/fixtures/webhooks/ (real shapes, sanitized). Every request carries the
legacy `X-Vapi-Secret` credential; the credential kinds themselves are tested in test_webhook_auth.py.
"""

import copy
import json
import logging
from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal
from http import HTTPStatus
from io import StringIO

import httpx
import pytest
from django.core.management import call_command
from django.utils import timezone

from assistants.models import AssistantType, PhoneCaller, PhoneRoute, UserMapping
from calls import webhooks
from calls.models import CallLog, WebhookMessage
from calls.relay import use_backend_transport
from calls.vapi import use_vapi_transport
from tests.conftest import PERMANENT_ID, TEST_VAPI_BASE_URL, TEST_VAPI_KEY, load_fixture, post_call

pytestmark = pytest.mark.django_db

WEBHOOK_SECRET = "test-webhook-secret-2f7a"
BACKEND_URL = "https://backend.example.com/vapi/messages"
BACKEND_SECRET = "test-backend-secret-9c41"
WEB_CALL_ID = "3f1c9a52-6a7e-4c1b-9d1e-0c2f5e8b7a11"
INBOUND_CALL_ID = "a7c2e9d4-5b1f-4e8a-b6c3-2d9f0e1a4b57"
PHONE_NUMBER_ID = "b3e1f6a2-9c4d-4f7b-8e2a-5d6c7b8a9f01"
FRONT_DESK = "+14155550100"
CALLER = "+14155550123"
NO_BACKEND = "No backend is configured to handle this request."
FAILED_TO_APPLY = "The proxy failed to apply this message; see the server log."

STARTED_AT = datetime(2026, 12, 3, 10, 15, 2, 310000, tzinfo=dt_timezone.utc)
ENDED_AT = datetime(2026, 12, 3, 10, 18, 11, 840000, tzinfo=dt_timezone.utc)
REPORT = load_fixture("webhooks/end_of_call_report.json")["message"]
# What an end-of-call report (either shape) leaves in the call-log row.
REPORTED = {
    "call_status": "ended",
    "ended_reason": "customer-ended-call",
    "started_at": STARTED_AT,
    "ended_at": ENDED_AT,
    "duration_seconds": 189.53,
    "cost": Decimal("0.147200"),
    "cost_breakdown": REPORT["costBreakdown"],
    "summary": REPORT["analysis"]["summary"],
    "transcript": REPORT["artifact"]["transcript"],
    "recording_url": f"https://storage.vapi.ai/{WEB_CALL_ID}-1796293092411-mono.wav",
    "structured_data": {"topic": "pricing", "objection": "too expensive", "followUpNeeded": False},
    "success_evaluation": "true",
}
NOTHING_REPORTED = {
    "call_status": "",
    "ended_reason": "",
    "started_at": None,
    "ended_at": None,
    "duration_seconds": None,
    "cost": None,
    "cost_breakdown": None,
    "summary": "",
    "transcript": "",
    "recording_url": "",
    "structured_data": None,
    "success_evaluation": "",
}


def vapi_message(name: str) -> dict:
    return load_fixture(f"webhooks/{name}.json")


def for_row(payload: dict, log: CallLog) -> dict:
    """The payload as Vapi sends it for a call this proxy started: metadata carries the row's id."""
    payload["message"]["call"]["assistantOverrides"]["metadata"]["callLogId"] = log.pk
    return payload


def post_webhook(client, payload, *, secret: str = WEBHOOK_SECRET):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.generic(
        "POST", "/webhooks/vapi", data=body, content_type="application/json", headers={"X-Vapi-Secret": secret}
    )


def reported(log: CallLog) -> dict:
    log.refresh_from_db()
    return {name: getattr(log, name) for name in REPORTED}


def stored_messages() -> list[tuple]:
    return list(
        WebhookMessage.objects.order_by("pk").values_list(
            "message_type", "vapi_call_id", "call_log_id", "reply", "note"
        )
    )


def warnings_logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "calls.webhooks" and r.levelno == logging.WARNING]


def tool_call_errors(text: str) -> dict:
    """The reply that gives each tool call in tool_calls.json the same error."""
    return {
        "results": [
            {"toolCallId": "call_Qm7kV2xRb8TnL4pZ", "name": "lookupOrder", "error": text},
            {"toolCallId": "call_W3nH9cYd5JfE1sKa", "name": "scheduleFollowUp", "error": text},
        ]
    }


def invalid_message(response, message: str) -> dict:
    return {
        "statusCode": 400,
        "error": "Bad Request",
        "message": message,
        "code": "invalid_message",
        "requestId": response["X-Request-ID"],
    }


class FakeBackend:
    """The customer's backend behind the relay's transport: records requests, answers what the test says."""

    def __init__(self):
        self.requests: list[httpx.Request] = []
        self.answer = lambda request: httpx.Response(200, json={})

    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.answer(request)


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.VAPI_WEBHOOK_AUTH = "secret"
    settings.VAPI_WEBHOOK_SECRETS = [WEBHOOK_SECRET]
    settings.CUSTOMER_BACKEND_URL = ""
    settings.CUSTOMER_BACKEND_SECRET = ""
    return settings


@pytest.fixture(autouse=True)
def backend(webhook_settings):
    """Installed in every test, so no relay can reach the network; it has a URL only with `backend_on`."""
    fake = FakeBackend()
    use_backend_transport(httpx.MockTransport(fake.handle))
    yield fake
    use_backend_transport(None)


@pytest.fixture
def backend_on(backend, webhook_settings):
    webhook_settings.CUSTOMER_BACKEND_URL = BACKEND_URL
    webhook_settings.CUSTOMER_BACKEND_SECRET = BACKEND_SECRET
    return backend


@pytest.fixture
def web_call(client, sales_coach, fake_vapi) -> CallLog:
    """A call started through POST /call/web, as the browser SDK starts it; Vapi answered 201."""
    response = post_call(
        client,
        {
            "assistantId": "sales-coach",
            "assistantOverrides": {"variableValues": {"topic": "pricing"}, "metadata": {"userId": "customer123"}},
        },
    )
    assert response.status_code == HTTPStatus.CREATED
    fake_vapi.requests.clear()
    return CallLog.objects.get(vapi_call_id=WEB_CALL_ID)


# --- status updates and the end-of-call report --------------------------------------------------


def test_status_updates_and_the_report_complete_the_row_of_a_web_call(client, sales_coach, web_call, fake_vapi):
    statuses = []
    for name in ("status_update_queued", "status_update_in_progress", "status_update_ended"):
        response = post_webhook(client, for_row(vapi_message(name), web_call))
        assert response.status_code == HTTPStatus.OK
        assert response.json() == {}
        web_call.refresh_from_db()
        statuses.append((web_call.call_status, web_call.ended_reason, web_call.ended_at))
    assert statuses == [
        ("queued", "", None),
        ("in-progress", "", None),
        ("ended", "customer-ended-call", ENDED_AT),  # from the message's timestamp (ms)
    ]

    payload = for_row(vapi_message("end_of_call_report"), web_call)
    response = post_webhook(client, payload)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {}
    assert reported(web_call) == REPORTED
    assert (
        web_call.route,
        web_call.outcome,
        web_call.status_code,
        web_call.user_id,
        web_call.assistant_type,
        web_call.assistant,
    ) == ("web", "created", 201, "customer123", "sales-coach", sales_coach.default_assistant)
    assert CallLog.objects.count() == 1
    assert stored_messages() == [
        ("status-update", WEB_CALL_ID, web_call.pk, {}, ""),
        ("status-update", WEB_CALL_ID, web_call.pk, {}, ""),
        ("status-update", WEB_CALL_ID, web_call.pk, {}, ""),
        ("end-of-call-report", WEB_CALL_ID, web_call.pk, {}, ""),
    ]
    assert WebhookMessage.objects.order_by("pk").last().payload == payload
    assert fake_vapi.requests == []


def test_the_older_report_shape_fills_the_same_fields(client, web_call):
    response = post_webhook(client, for_row(vapi_message("end_of_call_report_legacy"), web_call))

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {}
    assert reported(web_call) == REPORTED


def test_the_report_alone_completes_the_row(client, web_call):
    response = post_webhook(client, for_row(vapi_message("end_of_call_report"), web_call))

    assert response.status_code == HTTPStatus.OK
    assert reported(web_call) == REPORTED


@pytest.mark.parametrize(
    ("cost", "problem"),
    [
        pytest.param("abc", "is not a number", id="text"),
        pytest.param({"total": 1}, "is not a number", id="object"),
        pytest.param(True, "is not a number", id="boolean"),
        pytest.param(-3, "is out of range", id="negative"),
        pytest.param(10**7, "is out of range", id="too-large"),
    ],
)
def test_a_report_with_an_unusable_cost_is_applied_without_it(client, web_call, caplog, cost, problem):
    payload = for_row(vapi_message("end_of_call_report"), web_call)
    payload["message"]["cost"] = cost

    response = post_webhook(client, payload)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {}
    assert reported(web_call) == {**REPORTED, "cost": None}
    assert warnings_logged(caplog) == [f"end-of-call-report for call {WEB_CALL_ID}: cost {problem}; ignored"]
    assert WebhookMessage.objects.get().payload == payload


def test_a_cost_sent_as_text_is_read_as_a_number(client, web_call):
    payload = for_row(vapi_message("end_of_call_report"), web_call)
    payload["message"]["cost"] = "0.1472"

    post_webhook(client, payload)

    assert reported(web_call)["cost"] == Decimal("0.147200")


@pytest.mark.parametrize("value", ["yesterday", "2026-13-45T10:15:02Z", "10:15"])
def test_a_report_with_a_garbage_start_time_is_applied_without_it(client, web_call, caplog, value):
    payload = for_row(vapi_message("end_of_call_report"), web_call)
    payload["message"]["startedAt"] = value

    response = post_webhook(client, payload)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {}
    assert reported(web_call) == {**REPORTED, "started_at": None, "duration_seconds": None}
    assert warnings_logged(caplog) == [
        f"end-of-call-report for call {WEB_CALL_ID}: startedAt is not a date and time; ignored"
    ]
    assert WebhookMessage.objects.count() == 1


def test_start_and_end_times_missing_from_the_report_are_read_from_its_call(client, web_call, caplog):
    payload = for_row(vapi_message("end_of_call_report"), web_call)
    message = payload["message"]
    message["call"]["startedAt"], message["call"]["endedAt"] = message.pop("startedAt"), message.pop("endedAt")

    post_webhook(client, payload)

    assert reported(web_call) == REPORTED
    assert warnings_logged(caplog) == []


def test_a_start_time_without_a_zone_is_read_as_utc(client, web_call):
    payload = for_row(vapi_message("end_of_call_report"), web_call)
    payload["message"]["startedAt"] = "2026-12-03T10:15:02.310"

    response = post_webhook(client, payload)

    assert response.status_code == HTTPStatus.OK
    assert reported(web_call) == REPORTED


# --- messages arrive in any order ----------------------------------------------------------------


def test_status_updates_after_the_report_do_not_reopen_the_call(client, web_call):
    post_webhook(client, for_row(vapi_message("end_of_call_report"), web_call))
    ended = vapi_message("status_update_ended")
    ended["message"]["endedReason"] = "silence-timed-out"
    ended["message"]["timestamp"] += 60_000

    replies = [
        post_webhook(client, for_row(vapi_message(name), web_call)).json()
        for name in ("status_update_queued", "status_update_in_progress", "status_update_forwarding")
    ]
    replies.append(post_webhook(client, for_row(ended, web_call)).json())

    assert replies == [{}, {}, {}, {}]
    assert reported(web_call) == REPORTED
    assert WebhookMessage.objects.filter(call_log=web_call).count() == 5


def test_forwarding_is_not_terminal(client, web_call):
    seen = []
    for name in ("status_update_in_progress", "status_update_forwarding", "status_update_in_progress"):
        payload = for_row(vapi_message(name), web_call)
        payload["message"]["timestamp"] += len(seen)  # a distinct delivery, not a redelivery
        post_webhook(client, payload)
        web_call.refresh_from_db()
        seen.append((web_call.call_status, web_call.ended_reason, web_call.ended_at))

    assert seen == [("in-progress", "", None), ("forwarding", "", None), ("in-progress", "", None)]


def test_an_ended_status_before_the_report_keeps_its_reason_until_the_report_comes(client, web_call):
    post_webhook(client, for_row(vapi_message("status_update_ended"), web_call))
    web_call.refresh_from_db()
    assert (web_call.call_status, web_call.ended_reason, web_call.ended_at) == (
        "ended",
        "customer-ended-call",
        ENDED_AT,
    )

    post_webhook(client, for_row(vapi_message("status_update_in_progress"), web_call))
    web_call.refresh_from_db()
    assert web_call.call_status == "ended"

    post_webhook(client, for_row(vapi_message("end_of_call_report"), web_call))
    assert reported(web_call) == REPORTED


def test_a_message_that_arrives_before_the_create_answer_finds_the_row_by_its_call_log_id(
    client, sales_coach, fake_vapi
):
    webhook_replies = []

    def vapi_sends_a_webhook_before_answering(request):
        fake_vapi.requests.append(request)
        row = CallLog.objects.get()
        assert (row.outcome, row.vapi_call_id) == ("pending", None)
        webhook_replies.append(post_webhook(client, for_row(vapi_message("status_update_in_progress"), row)))
        return httpx.Response(201, json=load_fixture("vapi_call_web_201.json"))

    use_vapi_transport(httpx.MockTransport(vapi_sends_a_webhook_before_answering))
    response = post_call(client, {"userId": "customer123", "assistantType": "sales-coach"})

    assert [(r.status_code, r.json()) for r in webhook_replies] == [(HTTPStatus.OK, {})]
    assert response.status_code == HTTPStatus.CREATED
    row = CallLog.objects.get()
    assert (row.outcome, row.status_code, row.vapi_call_id, row.call_status, row.route, row.user_id) == (
        "created",
        201,
        WEB_CALL_ID,
        "in-progress",
        "web",
        "customer123",
    )
    assert stored_messages() == [("status-update", WEB_CALL_ID, row.pk, {}, "")]


def test_a_row_waiting_for_the_create_answer_is_matched_by_call_log_id(client, sales_coach):
    row = CallLog.objects.create(
        request_id="a" * 32, route="web", user_id="customer123", assistant_type="sales-coach", outcome="pending"
    )

    response = post_webhook(client, for_row(vapi_message("end_of_call_report"), row))

    assert response.status_code == HTTPStatus.OK
    assert CallLog.objects.get() == row
    row.refresh_from_db()
    assert (row.vapi_call_id, row.outcome, row.user_id) == (WEB_CALL_ID, "pending", "customer123")
    assert reported(row) == REPORTED


def test_a_call_log_id_of_a_row_with_another_call_is_not_taken_over(client, web_call):
    other = vapi_message("status_update_in_progress")
    other["message"]["call"]["id"] = "0b6d4c2a-1e3f-4a5b-8c7d-9e0f1a2b3c4d"

    post_webhook(client, for_row(other, web_call))

    web_call.refresh_from_db()
    assert (web_call.vapi_call_id, web_call.call_status) == (WEB_CALL_ID, "")
    new = CallLog.objects.get(vapi_call_id="0b6d4c2a-1e3f-4a5b-8c7d-9e0f1a2b3c4d")
    assert (new.route, new.call_status, new.user_id, new.assistant_type) == (
        "web",
        "in-progress",
        "customer123",
        "sales-coach",
    )


# --- redelivery ----------------------------------------------------------------------------------


def test_a_redelivered_message_is_answered_again_and_applied_once(client, web_call, caplog):
    caplog.set_level(logging.INFO, logger="calls.webhooks")
    in_progress = json.dumps(for_row(vapi_message("status_update_in_progress"), web_call)).encode()
    post_webhook(client, in_progress)
    post_webhook(client, for_row(vapi_message("status_update_forwarding"), web_call))

    again = post_webhook(client, in_progress)

    assert again.status_code == HTTPStatus.OK
    assert again.json() == {}
    web_call.refresh_from_db()
    assert web_call.call_status == "forwarding"  # not set back to in-progress
    assert [row[0] for row in stored_messages()] == ["status-update", "status-update"]
    assert f"webhook status-update for call {WEB_CALL_ID} was delivered before; answered again, not applied" in [
        r.getMessage() for r in caplog.records
    ]


def test_a_redelivered_report_leaves_one_stored_message(client, web_call):
    body = json.dumps(for_row(vapi_message("end_of_call_report"), web_call)).encode()

    replies = [post_webhook(client, body) for _ in range(3)]

    assert [(r.status_code, r.json()) for r in replies] == [(HTTPStatus.OK, {})] * 3
    assert stored_messages() == [("end-of-call-report", WEB_CALL_ID, web_call.pk, {}, "")]
    assert reported(web_call) == REPORTED


# --- calls the proxy did not create ----------------------------------------------------------------


def inbound_call() -> dict:
    return vapi_message("assistant_request_inbound")["message"]["call"]


def inbound_status(status: str) -> dict:
    return {"message": {"type": "status-update", "status": status, "timestamp": 1796296801900, "call": inbound_call()}}


@pytest.mark.parametrize(
    ("call_type", "route"),
    [
        ("inboundPhoneCall", "inbound"),
        ("outboundPhoneCall", "phone"),
        ("webCall", "web"),
        ("vapi.websocketCall", "external"),
        (None, "external"),
    ],
)
def test_a_call_the_proxy_did_not_create_gets_a_row_on_its_first_message(client, call_type, route):
    status = inbound_status("in-progress")
    if call_type is None:
        del status["message"]["call"]["type"]
    else:
        status["message"]["call"]["type"] = call_type

    response = post_webhook(client, status)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {}
    row = CallLog.objects.get()
    assert (
        row.route,
        row.vapi_call_id,
        row.outcome,
        row.call_status,
        row.user_id,
        row.assistant_type,
        row.assistant,
        row.request_id,
    ) == (route, INBOUND_CALL_ID, "created", "in-progress", CALLER, "", None, response["X-Request-ID"])
    assert stored_messages() == [("status-update", INBOUND_CALL_ID, row.pk, {}, "")]


def test_a_second_message_for_a_call_the_proxy_did_not_create_updates_its_row(client):
    post_webhook(client, inbound_status("in-progress"))
    report = vapi_message("end_of_call_report")
    report["message"]["call"] = inbound_call()

    response = post_webhook(client, report)

    assert response.status_code == HTTPStatus.OK
    row = CallLog.objects.get()
    assert (row.route, row.vapi_call_id, row.user_id) == ("inbound", INBOUND_CALL_ID, CALLER)
    assert reported(row) == REPORTED
    assert [m[2] for m in stored_messages()] == [row.pk, row.pk]


def test_a_web_call_started_elsewhere_takes_the_user_from_its_metadata(client):
    report = vapi_message("end_of_call_report")
    del report["message"]["call"]["assistantOverrides"]["metadata"]["callLogId"]

    post_webhook(client, report)

    row = CallLog.objects.get()
    assert (row.route, row.user_id, row.assistant_type, row.outcome) == ("web", "customer123", "sales-coach", "created")
    assert reported(row) == REPORTED


# --- authentic but malformed ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["status_update_ended", "end_of_call_report"])
@pytest.mark.parametrize(
    "call",
    [
        pytest.param(None, id="no-call"),
        pytest.param(WEB_CALL_ID, id="call-is-text"),
        pytest.param({"id": 42}, id="id-is-number"),
        pytest.param({}, id="no-id"),
    ],
)
def test_a_message_without_a_usable_call_is_stored_and_updates_nothing(client, caplog, name, call):
    payload = vapi_message(name)
    if call is None:
        del payload["message"]["call"]
    else:
        payload["message"]["call"] = call

    response = post_webhook(client, payload)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {}
    kind = payload["message"]["type"]
    assert stored_messages() == [(kind, "", None, {}, "No call id: nothing was updated.")]
    assert WebhookMessage.objects.get().payload == payload
    assert CallLog.objects.count() == 0
    assert warnings_logged(caplog) == [f"webhook {kind} without message.call.id: stored, nothing to update"]


@pytest.mark.parametrize("raw", [False, True], ids=["escaped", "raw-bytes"])
def test_a_lone_surrogate_and_a_nul_in_a_transcript_are_stored_as_replacement_characters(client, web_call, raw):
    payload = for_row(vapi_message("end_of_call_report"), web_call)
    payload["message"]["artifact"]["transcript"] = "AI: Hi there! \ud83d\nUser: ok\x00bye\n"
    payload["message"]["analysis"]["summary"] = "Short call \udc00."
    if raw:  # the surrogate as (invalid) UTF-8 bytes rather than a \ud83d escape
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")
        assert b"\xed\xa0\xbd" in body
    else:
        body = json.dumps(payload).encode()
        assert b"\\ud83d" in body and b"\\u0000" in body

    response = post_webhook(client, body)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {}
    assert reported(web_call) == {
        **REPORTED,
        "transcript": "AI: Hi there! \ufffd\nUser: ok\ufffdbye\n",
        "summary": "Short call \ufffd.",
    }
    stored = WebhookMessage.objects.get()
    assert stored.payload["message"]["artifact"]["transcript"] == "AI: Hi there! \ufffd\nUser: ok\ufffdbye\n"
    assert stored.payload["message"]["analysis"]["summary"] == "Short call \ufffd."


def test_a_nul_and_a_surrogate_in_a_key_are_stored_too(client, web_call):
    payload = for_row(vapi_message("conversation_update"), web_call)
    payload["message"]["extra\x00\udfff"] = {"note\x00": "x\x00"}

    response = post_webhook(client, payload)

    assert response.status_code == HTTPStatus.OK
    assert WebhookMessage.objects.get().payload["message"]["extra\ufffd\ufffd"] == {"note\ufffd": "x\ufffd"}


def with_changes(name: str, *changes) -> dict:
    payload = vapi_message(name)
    for path, value in changes:
        target = payload["message"]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return payload


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(
            with_changes("status_update_in_progress", (("status",), 42)),
            {"call_status": ""},
            id="status-is-number",
        ),
        pytest.param(
            with_changes("status_update_ended", (("endedReason",), {"reason": "x"}), (("timestamp",), "soon")),
            {"call_status": "ended", "ended_reason": ""},
            id="ended-reason-is-object",
        ),
        pytest.param(
            with_changes("status_update_ended", (("timestamp",), 1e30)),
            {"call_status": "ended", "ended_reason": "customer-ended-call", "ended_at": None},
            id="timestamp-out-of-range",
        ),
        pytest.param(
            with_changes(
                "end_of_call_report",
                (("artifact",), "not an object"),
                (("analysis",), ["not", "an", "object"]),
                (("costBreakdown",), "cheap"),
                (("endedReason",), 7),
                (("endedAt",), 1796293091840),
            ),
            {
                **NOTHING_REPORTED,
                "call_status": "ended",
                "started_at": STARTED_AT,
                "cost": Decimal("0.147200"),
                "cost_breakdown": REPORT["costs"],
            },
            id="report-fields-of-other-types",
        ),
        pytest.param(
            with_changes(
                "end_of_call_report",
                (("artifact", "transcript"), ["AI: hi"]),
                (("artifact", "recordingUrl"), 5),
                (("analysis", "summary"), None),
                (("analysis", "successEvaluation"), True),
            ),
            {**REPORTED, "transcript": "", "recording_url": "", "summary": "", "success_evaluation": ""},
            id="artifact-and-analysis-fields-of-other-types",
        ),
        pytest.param(
            with_changes("status_update_in_progress", (("call", "assistantOverrides"), "x")),
            {"call_status": "in-progress"},
            id="overrides-is-text",
        ),
    ],
)
def test_fields_of_the_wrong_type_are_ignored(client, sales_coach, caplog, payload, expected):
    response = post_webhook(client, payload)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {}
    row = CallLog.objects.get(vapi_call_id=WEB_CALL_ID)
    assert {name: value for name, value in reported(row).items() if name in expected} == expected
    assert WebhookMessage.objects.get().note == ""


NOT_JSON = "The body is not JSON."
TOO_DEEP = "The body is nested too deeply."
NOT_A_MESSAGE = 'The body must be {"message": {"type": ..., ...}}.'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"not json", NOT_JSON, id="not-json"),
        pytest.param(b"", NOT_JSON, id="empty"),
        pytest.param(b'{"message": {"type": "status-update"', NOT_JSON, id="truncated"),
        pytest.param(b"\xff\xfe{}", NOT_JSON, id="not-utf8"),
        pytest.param(b'{"message": {"type": "end-of-call-report", "cost": NaN}}', NOT_JSON, id="nan"),
        pytest.param(b'{"message": {"type": "end-of-call-report", "cost": 1e999}}', NOT_JSON, id="infinite"),
        pytest.param(json.dumps(vapi_message("hang")).encode("utf-16"), NOT_JSON, id="utf-16"),
        pytest.param(b'{"message": ' * 100_000 + b"1" + b"}" * 100_000, TOO_DEEP, id="deeper-than-python-parses"),
        pytest.param(
            b'{"message": {"type": "hang", "x": ' + b"[" * 99 + b"1" + b"]" * 99 + b"}}",
            TOO_DEEP,
            id="nested-past-the-limit",
        ),
        pytest.param(b"[]", NOT_A_MESSAGE, id="array"),
        pytest.param(b'"status-update"', NOT_A_MESSAGE, id="string"),
        pytest.param(b'{"type": "status-update"}', NOT_A_MESSAGE, id="no-message"),
        pytest.param(b'{"message": "status-update"}', NOT_A_MESSAGE, id="message-is-text"),
        pytest.param(b'{"message": {}}', NOT_A_MESSAGE, id="no-type"),
        pytest.param(b'{"message": {"type": ""}}', NOT_A_MESSAGE, id="empty-type"),
        pytest.param(b'{"message": {"type": 3}}', NOT_A_MESSAGE, id="type-is-number"),
    ],
)
def test_a_body_that_is_not_a_vapi_message_is_refused_and_not_stored(client, body, message):
    response = post_webhook(client, body)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == invalid_message(response, message)
    assert WebhookMessage.objects.count() == 0
    assert CallLog.objects.count() == 0


def test_a_message_nested_up_to_the_limit_is_stored(client):
    payload = vapi_message("hang")
    payload["message"]["x"] = json.loads("[" * 98 + '"\\u0000"' + "]" * 98)  # 100 levels with the two above

    response = post_webhook(client, payload)

    assert response.status_code == HTTPStatus.OK
    value = WebhookMessage.objects.get().payload["message"]["x"]
    for _ in range(98):
        [value] = value
    assert value == "\ufffd"


def test_a_failure_while_applying_a_report_is_answered_200_and_the_message_kept(client, web_call, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated")

    monkeypatch.setattr(webhooks, "apply_end_of_call_report", broken)
    payload = for_row(vapi_message("end_of_call_report"), web_call)

    response = post_webhook(client, payload)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {}
    assert stored_messages() == [("end-of-call-report", WEB_CALL_ID, web_call.pk, {}, FAILED_TO_APPLY)]
    assert WebhookMessage.objects.get().payload == payload
    assert reported(web_call) == NOTHING_REPORTED
    errors = [r for r in caplog.records if r.name == "calls.webhooks" and r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        f"webhook end-of-call-report for call {WEB_CALL_ID} could not be applied"
    ]


def test_a_failure_while_answering_tool_calls_still_gives_each_tool_call_an_error(client, web_call, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated")

    monkeypatch.setattr(webhooks, "relay_to_backend", broken)

    response = post_webhook(client, for_row(vapi_message("tool_calls"), web_call))

    assert response.status_code == HTTPStatus.OK
    assert response.json() == tool_call_errors("The tool could not be run right now.")
    assert WebhookMessage.objects.get().note == FAILED_TO_APPLY


@pytest.mark.parametrize(
    "tool_call_list",
    [
        pytest.param(5, id="number"),
        pytest.param("call_1", id="text"),
        pytest.param({"id": "call_1"}, id="object"),
        pytest.param(None, id="null"),
    ],
)
def test_tool_calls_with_a_malformed_list_get_an_empty_results_array(client, web_call, tool_call_list):
    payload = for_row(vapi_message("tool_calls"), web_call)
    payload["message"]["toolCallList"] = tool_call_list

    response = post_webhook(client, payload)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"results": []}


def test_a_failure_while_answering_an_assistant_request_is_a_spoken_error(client, front_desk, monkeypatch, settings):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated")

    monkeypatch.setattr(webhooks, "resolve_assistant", broken)

    response = post_webhook(client, vapi_message("assistant_request_inbound"))

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"error": settings.PHONE_UNAVAILABLE_MESSAGE}
    assert WebhookMessage.objects.get().note == FAILED_TO_APPLY


# --- messages the proxy only stores --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("conversation_update", "conversation-update"),
        ("speech_update", "speech-update"),
        ("hang", "hang"),
        ("user_interrupted", "user-interrupted"),
        ("future_type", "call-insight-update"),
    ],
)
def test_informational_and_unknown_types_are_answered_at_once_and_stored(
    client, web_call, fake_vapi, backend_on, name, kind
):
    payload = for_row(vapi_message(name), web_call)

    response = post_webhook(client, payload)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {}
    assert stored_messages() == [(kind, WEB_CALL_ID, None, {}, "")]
    assert WebhookMessage.objects.get().payload == payload
    assert reported(web_call) == NOTHING_REPORTED
    assert fake_vapi.requests == []
    assert backend_on.requests == []


def test_an_unknown_type_without_a_call_is_stored_too(client):
    response = post_webhook(client, {"message": {"type": "org-usage-alert", "timestamp": 1796292950000}})

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {}
    assert stored_messages() == [("org-usage-alert", "", None, {}, "")]


# --- assistant-request (inbound phone calls) ---------------------------------------------------


@pytest.fixture
def front_desk(sales_coach) -> PhoneRoute:
    return PhoneRoute.objects.create(
        phone_number_id=PHONE_NUMBER_ID,
        phone_number=FRONT_DESK,
        assistant_type=sales_coach,
        refusal_message="Sorry, this line is for registered customers. Goodbye.",
    )


@pytest.fixture
def members_only(sales_coach) -> AssistantType:
    return AssistantType.objects.create(
        slug="members", default_assistant=sales_coach.default_assistant, mapped_users_only=True
    )


def inbound_row() -> tuple:
    row = CallLog.objects.get()
    return (
        row.route,
        row.outcome,
        row.status_code,
        row.vapi_call_id,
        row.user_id,
        row.assistant_type,
        row.assistant,
        row.error_code,
        row.error_detail,
    )


def test_assistant_request_gives_a_known_caller_their_own_assistant(
    client, alice, front_desk, fake_vapi, django_assert_max_num_queries
):
    PhoneCaller.objects.create(phone_number=CALLER, user_id="alice")

    with django_assert_max_num_queries(11):
        response = post_webhook(client, vapi_message("assistant_request_inbound"))

    assert response.status_code == HTTPStatus.OK
    row = CallLog.objects.get()
    assert response.json() == {
        "assistantId": PERMANENT_ID,
        "assistantOverrides": {
            "variableValues": {"companyName": "Acme", "customerName": "Alice A."},
            "metadata": {"userId": "alice", "assistantType": "sales-coach", "callLogId": row.pk},
        },
    }
    assert inbound_row() == (
        "inbound",
        "created",
        200,
        INBOUND_CALL_ID,
        "alice",
        "sales-coach",
        alice.assistant,
        "",
        "",
    )
    assert row.request_id == response["X-Request-ID"]
    assert stored_messages() == [("assistant-request", INBOUND_CALL_ID, row.pk, response.json(), "")]
    assert fake_vapi.requests == []


def test_assistant_request_gives_an_unknown_caller_the_default_assistant_as_their_number(
    client, front_desk, fake_vapi, django_assert_max_num_queries
):
    with django_assert_max_num_queries(11):
        response = post_webhook(client, vapi_message("assistant_request_inbound"))

    assert response.status_code == HTTPStatus.OK
    row = CallLog.objects.get()
    assistant = front_desk.assistant_type.default_assistant
    assert response.json() == {
        "assistant": assistant.config,
        "assistantOverrides": {
            "variableValues": {"companyName": "Acme", "customerName": "there"},
            "metadata": {"userId": CALLER, "assistantType": "sales-coach", "callLogId": row.pk},
        },
    }
    assert inbound_row() == ("inbound", "created", 200, INBOUND_CALL_ID, CALLER, "sales-coach", assistant, "", "")
    assert fake_vapi.requests == []


@pytest.mark.parametrize(
    ("route_id", "route_number"),
    [
        pytest.param(PHONE_NUMBER_ID, "", id="by-phone-number-id"),
        pytest.param("", FRONT_DESK, id="by-number"),
        pytest.param("c9d8e7f6-0000-4000-8000-000000000001", FRONT_DESK, id="by-number-when-the-id-differs"),
    ],
)
def test_assistant_request_finds_the_route_by_id_or_by_number(client, sales_coach, route_id, route_number):
    PhoneRoute.objects.create(phone_number_id=route_id, phone_number=route_number, assistant_type=sales_coach)

    response = post_webhook(client, vapi_message("assistant_request_inbound"))

    assert response.status_code == HTTPStatus.OK
    assert response.json()["assistant"] == sales_coach.default_assistant.config
    assert CallLog.objects.get().assistant_type == "sales-coach"


def test_the_route_matched_by_id_wins_over_the_one_matched_by_number(client, alice, members_only):
    PhoneRoute.objects.create(phone_number=FRONT_DESK, assistant_type=members_only, refusal_message="Members only.")
    PhoneRoute.objects.create(phone_number_id=PHONE_NUMBER_ID, assistant_type=alice.assistant_type)

    response = post_webhook(client, vapi_message("assistant_request_inbound"))

    assert response.json()["assistantOverrides"]["metadata"]["assistantType"] == "sales-coach"
    assert CallLog.objects.get().outcome == "created"


def test_the_phone_number_id_may_come_from_the_phone_number_object(client, front_desk):
    payload = vapi_message("assistant_request_inbound")
    del payload["message"]["call"]["phoneNumberId"]
    front_desk.phone_number = ""
    front_desk.save()

    response = post_webhook(client, payload)

    assert "assistant" in response.json()


def test_an_inactive_route_is_not_used(client, front_desk, settings):
    front_desk.is_active = False
    front_desk.save()

    response = post_webhook(client, vapi_message("assistant_request_inbound"))

    assert response.json() == {"error": settings.PHONE_UNKNOWN_NUMBER_MESSAGE}


def test_assistant_request_for_an_unknown_number_is_a_spoken_error(client, sales_coach, settings, fake_vapi, caplog):
    response = post_webhook(client, vapi_message("assistant_request_inbound"))

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"error": settings.PHONE_UNKNOWN_NUMBER_MESSAGE}
    assert settings.PHONE_UNKNOWN_NUMBER_MESSAGE
    row = CallLog.objects.get()
    assert inbound_row() == (
        "inbound",
        "rejected",
        200,
        INBOUND_CALL_ID,
        CALLER,
        "",
        None,
        "unknown_phone_number",
        f"No active phone route for number {FRONT_DESK} (Vapi id {PHONE_NUMBER_ID}).",
    )
    assert stored_messages() == [
        ("assistant-request", INBOUND_CALL_ID, row.pk, response.json(), "No phone route matches this number.")
    ]
    assert warnings_logged(caplog) == [
        f"assistant-request for an unknown number (id={PHONE_NUMBER_ID} number={FRONT_DESK})"
    ]
    assert fake_vapi.requests == []


def test_the_end_of_a_call_to_an_unknown_number_completes_its_rejected_row(client, sales_coach):
    post_webhook(client, vapi_message("assistant_request_inbound"))
    ended = vapi_message("status_update_ended")
    ended["message"]["call"]["id"] = INBOUND_CALL_ID

    post_webhook(client, ended)

    row = CallLog.objects.get()
    assert (row.outcome, row.error_code, row.call_status) == ("rejected", "unknown_phone_number", "ended")


def test_an_unmapped_caller_on_a_members_only_number_hears_the_routes_refusal(
    client, members_only, fake_vapi, django_assert_max_num_queries
):
    route = PhoneRoute.objects.create(
        phone_number_id=PHONE_NUMBER_ID, assistant_type=members_only, refusal_message="This line is for members only."
    )

    with django_assert_max_num_queries(11):
        response = post_webhook(client, vapi_message("assistant_request_inbound"))

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"error": route.refusal_message}
    assert inbound_row() == (
        "inbound",
        "rejected",
        200,
        INBOUND_CALL_ID,
        CALLER,
        "members",
        None,
        "user_not_mapped",
        f"User {CALLER!r} has no assistant for 'members': ask staff to map this user "
        "(this type is for mapped users only).",
    )
    assert fake_vapi.requests == []


def test_a_mapped_caller_on_a_members_only_number_gets_their_assistant(client, alice, members_only):
    PhoneRoute.objects.create(phone_number_id=PHONE_NUMBER_ID, assistant_type=members_only)
    PhoneCaller.objects.create(phone_number=CALLER, user_id="alice")
    UserMapping.objects.create(user_id="alice", assistant_type=members_only, assistant=alice.assistant)

    response = post_webhook(client, vapi_message("assistant_request_inbound"))

    assert response.json()["assistantId"] == PERMANENT_ID
    assert inbound_row()[:5] == ("inbound", "created", 200, INBOUND_CALL_ID, "alice")


def test_a_switched_off_assistant_is_refused_with_the_unavailable_sentence(client, front_desk, settings):
    front_desk.refusal_message = ""
    front_desk.save()
    assistant = front_desk.assistant_type.default_assistant
    assistant.is_active = False
    assistant.save()

    response = post_webhook(client, vapi_message("assistant_request_inbound"))

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"error": settings.PHONE_UNAVAILABLE_MESSAGE}
    assert inbound_row() == (
        "inbound",
        "rejected",
        200,
        INBOUND_CALL_ID,
        CALLER,
        "sales-coach",
        None,
        "assistant_inactive",
        "The assistant for 'sales-coach' is switched off.",
    )


@pytest.mark.parametrize("refusal", ["", "   "])
def test_the_spoken_error_is_never_empty(client, members_only, settings, refusal):
    settings.PHONE_UNAVAILABLE_MESSAGE = ""
    settings.PHONE_UNKNOWN_NUMBER_MESSAGE = " "
    PhoneRoute.objects.create(phone_number_id=PHONE_NUMBER_ID, assistant_type=members_only, refusal_message=refusal)
    unknown_number = vapi_message("assistant_request_inbound")
    unknown_number["message"]["call"]["phoneNumberId"] = unknown_number["message"]["phoneNumber"]["id"] = "other"
    unknown_number["message"]["phoneNumber"]["number"] = "+14155550199"

    replies = [
        post_webhook(client, payload).json() for payload in (vapi_message("assistant_request_inbound"), unknown_number)
    ]

    assert replies == [{"error": webhooks.LAST_RESORT_SPOKEN_ERROR}] * 2


def test_a_status_update_before_the_assistant_request_shares_the_row(client, front_desk):
    post_webhook(client, inbound_status("ringing"))

    response = post_webhook(client, vapi_message("assistant_request_inbound"))

    row = CallLog.objects.get()
    assert response.json()["assistantOverrides"]["metadata"]["callLogId"] == row.pk
    assert (row.route, row.outcome, row.call_status, row.assistant) == (
        "inbound",
        "created",
        "ringing",
        front_desk.assistant_type.default_assistant,
    )


def test_later_messages_of_an_inbound_call_complete_its_row(client, front_desk):
    post_webhook(client, vapi_message("assistant_request_inbound"))
    report = vapi_message("end_of_call_report")
    report["message"]["call"] = inbound_call()

    post_webhook(client, report)

    row = CallLog.objects.get()
    assert (row.route, row.outcome, row.user_id) == ("inbound", "created", CALLER)
    assert reported(row) == REPORTED


# --- relays to the customer's backend ----------------------------------------------------------


def without_monitor(payload: dict) -> dict:
    message = copy.deepcopy(payload["message"])
    del message["call"]["monitor"]
    return {"message": message}


def test_tool_calls_without_a_backend_get_an_error_for_each_tool_call(client, web_call, backend):
    response = post_webhook(client, for_row(vapi_message("tool_calls"), web_call))

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {
        "results": [
            {"toolCallId": "call_Qm7kV2xRb8TnL4pZ", "name": "lookupOrder", "error": NO_BACKEND},
            {"toolCallId": "call_W3nH9cYd5JfE1sKa", "name": "scheduleFollowUp", "error": NO_BACKEND},
        ]
    }
    assert stored_messages() == [("tool-calls", WEB_CALL_ID, web_call.pk, response.json(), "")]
    assert backend.requests == []


def test_transfer_destination_request_without_a_backend_gets_an_error(client, web_call, backend):
    response = post_webhook(client, for_row(vapi_message("transfer_destination_request"), web_call))

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"error": NO_BACKEND}
    assert backend.requests == []


def test_knowledge_base_request_without_a_backend_gets_an_empty_answer(client, web_call):
    payload = for_row(vapi_message("conversation_update"), web_call)
    payload["message"]["type"] = "knowledge-base-request"

    response = post_webhook(client, payload)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {}


BACKEND_RESULTS = {
    "results": [
        {"toolCallId": "call_Qm7kV2xRb8TnL4pZ", "name": "lookupOrder", "result": "Order A-1042 shipped on December 1."},
        {"toolCallId": "call_W3nH9cYd5JfE1sKa", "name": "scheduleFollowUp", "result": "Booked for December 10."},
    ]
}


@pytest.mark.parametrize(
    ("name", "answer"),
    [
        ("tool_calls", BACKEND_RESULTS),
        (
            "transfer_destination_request",
            {
                "destination": {"type": "number", "number": "+14155550142"},
                "message": {"type": "request-start", "message": "Transferring you now."},
            },
        ),
    ],
)
def test_relayed_messages_reach_the_backend_and_its_answer_is_returned_as_is(
    client, web_call, backend_on, name, answer
):
    backend_on.answer = lambda request: httpx.Response(200, json=answer)
    payload = for_row(vapi_message(name), web_call)

    response = post_webhook(client, payload)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == answer
    [request] = backend_on.requests
    assert (request.method, str(request.url)) == ("POST", BACKEND_URL)
    assert request.headers["Authorization"] == f"Bearer {BACKEND_SECRET}"
    assert request.headers["Content-Type"] == "application/json"
    assert "X-Vapi-Secret" not in request.headers
    assert json.loads(request.content) == without_monitor(payload)
    assert stored_messages()[0][3] == answer


def test_the_backend_gets_no_authorization_header_without_a_secret(client, web_call, backend_on, settings):
    settings.CUSTOMER_BACKEND_SECRET = ""

    post_webhook(client, for_row(vapi_message("tool_calls"), web_call))

    [request] = backend_on.requests
    assert "Authorization" not in request.headers


def test_an_assistants_own_backend_url_wins(client, web_call, backend_on):
    web_call.assistant.backend_url = "https://coach-tools.example.org/vapi"
    web_call.assistant.save()
    backend_on.answer = lambda request: httpx.Response(200, json=BACKEND_RESULTS)

    response = post_webhook(client, for_row(vapi_message("tool_calls"), web_call))

    assert response.json() == BACKEND_RESULTS
    assert [str(r.url) for r in backend_on.requests] == ["https://coach-tools.example.org/vapi"]


def test_an_assistants_backend_url_is_used_without_a_global_one(client, web_call, backend):
    web_call.assistant.backend_url = "https://coach-tools.example.org/vapi"
    web_call.assistant.save()
    backend.answer = lambda request: httpx.Response(200, json=BACKEND_RESULTS)

    response = post_webhook(client, for_row(vapi_message("tool_calls"), web_call))

    assert response.json() == BACKEND_RESULTS
    assert [str(r.url) for r in backend.requests] == ["https://coach-tools.example.org/vapi"]


@pytest.mark.parametrize(
    ("backend_url", "trusted_origins", "authorized"),
    [
        pytest.param("https://backend.example.com/coach/tools", [], True, id="same-origin-as-the-global-url"),
        pytest.param("https://coach-tools.example.org/vapi", [], False, id="another-origin"),
        pytest.param("https://backend.example.com:8443/vapi", [], False, id="another-port"),
        pytest.param("http://backend.example.com/vapi", [], False, id="plain-http"),
        pytest.param(
            "https://coach-tools.example.org/vapi", ["https://coach-tools.example.org"], True, id="listed-origin"
        ),
        pytest.param(
            "https://coach-tools.example.org:443/vapi", ["https://COACH-TOOLS.example.org/"], True, id="listed-alike"
        ),
    ],
)
def test_the_backend_secret_goes_only_to_origins_the_operator_trusts(
    client, web_call, backend_on, settings, caplog, backend_url, trusted_origins, authorized
):
    settings.CUSTOMER_BACKEND_SECRET_ORIGINS = trusted_origins
    web_call.assistant.backend_url = backend_url
    web_call.assistant.save()
    backend_on.answer = lambda request: httpx.Response(200, json=BACKEND_RESULTS)

    response = post_webhook(client, for_row(vapi_message("tool_calls"), web_call))

    assert response.json() == BACKEND_RESULTS
    [request] = backend_on.requests
    assert request.url == httpx.URL(backend_url)
    assert request.headers.get("Authorization") == (f"Bearer {BACKEND_SECRET}" if authorized else None)
    warned = [r.getMessage() for r in caplog.records if "CUSTOMER_BACKEND_SECRET_ORIGINS" in r.getMessage()]
    assert len(warned) == (0 if authorized else 1)
    assert BACKEND_SECRET not in caplog.text


BACKEND_REFUSED = "The backend could not handle this request."
BACKEND_ODD = "The backend answered with something unexpected."


def raises(exc_type):
    def answer(request):
        raise exc_type("simulated", request=request)

    return answer


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        pytest.param(raises(httpx.ReadTimeout), "The backend could not be reached in time.", id="timeout"),
        pytest.param(raises(httpx.ConnectError), "The backend could not be reached in time.", id="unreachable"),
        pytest.param(lambda r: httpx.Response(500, json={"error": "boom"}), BACKEND_REFUSED, id="500"),
        pytest.param(lambda r: httpx.Response(404, text="Not Found"), BACKEND_REFUSED, id="404"),
        pytest.param(
            lambda r: httpx.Response(302, headers={"Location": "https://elsewhere.example.com/"}),
            BACKEND_REFUSED,
            id="redirect",
        ),
        pytest.param(lambda r: httpx.Response(200, text="<html>ok</html>"), BACKEND_ODD, id="not-json"),
        pytest.param(lambda r: httpx.Response(200, json=["ok"]), BACKEND_ODD, id="json-array"),
    ],
)
def test_a_backend_that_fails_gives_each_tool_call_an_error(client, web_call, backend_on, answer, error):
    backend_on.answer = answer

    response = post_webhook(client, for_row(vapi_message("tool_calls"), web_call))

    assert response.status_code == HTTPStatus.OK
    assert response.json() == tool_call_errors(error)
    assert len(backend_on.requests) == 1


def test_a_backend_that_fails_a_transfer_request_gives_an_error(client, web_call, backend_on):
    backend_on.answer = raises(httpx.ReadTimeout)

    response = post_webhook(client, for_row(vapi_message("transfer_destination_request"), web_call))

    assert response.json() == {"error": "The backend could not be reached in time."}


def test_a_redelivered_tool_call_gets_the_stored_answer_without_asking_the_backend_again(client, web_call, backend_on):
    answers = iter([BACKEND_RESULTS, {"results": []}])
    backend_on.answer = lambda request: httpx.Response(200, json=next(answers))
    body = json.dumps(for_row(vapi_message("tool_calls"), web_call)).encode()

    replies = [post_webhook(client, body) for _ in range(2)]

    assert [(r.status_code, r.json()) for r in replies] == [(HTTPStatus.OK, BACKEND_RESULTS)] * 2
    assert len(backend_on.requests) == 1
    assert WebhookMessage.objects.count() == 1


def test_tool_calls_for_a_call_the_proxy_did_not_create_are_relayed_too(client, backend_on):
    backend_on.answer = lambda request: httpx.Response(200, json=BACKEND_RESULTS)
    payload = vapi_message("tool_calls")
    payload["message"]["call"] = inbound_call()

    response = post_webhook(client, payload)

    assert response.json() == BACKEND_RESULTS
    assert [str(r.url) for r in backend_on.requests] == [BACKEND_URL]
    assert CallLog.objects.get().route == "inbound"


# --- missed webhooks: complete_stale_calls ----------------------------------------------------------


def stale_row(*, minutes_ago: int = 120, call_id: str | None = WEB_CALL_ID, **fields) -> CallLog:
    values = {
        "request_id": "b" * 32,
        "route": "web",
        "user_id": "customer123",
        "assistant_type": "sales-coach",
        "outcome": "created",
        "status_code": 201,
        "vapi_call_id": call_id,
        "call_status": "in-progress",
        "created_at": timezone.now() - timedelta(minutes=minutes_ago),
        **fields,
    }
    return CallLog.objects.create(**values)


def ended_call() -> dict:
    """Vapi's GET /call/{id} for the finished web call: the Call object with its final fields."""
    final_fields = ("endedReason", "startedAt", "endedAt", "cost", "costBreakdown", "costs", "artifact", "analysis")
    final = {key: REPORT[key] for key in final_fields}
    return {**REPORT["call"], "status": "ended", **final}


def test_a_stale_call_is_completed_from_vapi(fake_vapi, sales_coach):
    row = stale_row()
    fake_vapi.reply(200, ended_call())

    counts = webhooks.complete_stale_calls(older_than_minutes=60)

    assert counts == {"checked": 1, "ended": 1, "still_active": 0, "failed": 0}
    assert reported(row) == REPORTED
    [request] = fake_vapi.requests
    assert (request.method, str(request.url)) == ("GET", f"{TEST_VAPI_BASE_URL}/call/{WEB_CALL_ID}")
    assert request.headers["Authorization"] == f"Bearer {TEST_VAPI_KEY}"


def test_a_stale_call_with_a_garbage_start_time_is_completed_without_it(fake_vapi, db, caplog):
    row = stale_row()
    fake_vapi.reply(200, {**ended_call(), "startedAt": "yesterday"})

    counts = webhooks.complete_stale_calls(older_than_minutes=60)

    assert counts == {"checked": 1, "ended": 1, "still_active": 0, "failed": 0}
    assert reported(row) == {**REPORTED, "started_at": None, "duration_seconds": None}
    assert warnings_logged(caplog) == [
        f"end-of-call-report for call {WEB_CALL_ID}: startedAt is not a date and time; ignored"
    ]


def test_a_stale_call_still_active_at_vapi_gets_its_status(fake_vapi, db):
    row = stale_row(call_status="queued")
    fake_vapi.reply(200, {**REPORT["call"], "status": "in-progress"})

    counts = webhooks.complete_stale_calls(older_than_minutes=60)

    assert counts == {"checked": 1, "ended": 0, "still_active": 1, "failed": 0}
    assert reported(row) == {**NOTHING_REPORTED, "call_status": "in-progress"}


def test_a_stale_call_vapi_does_not_know_is_marked_ended(fake_vapi, db):
    row = stale_row()
    fake_vapi.reply(404, {"statusCode": 404, "message": "Call not found.", "error": "Not Found"})

    counts = webhooks.complete_stale_calls(older_than_minutes=60)

    assert counts == {"checked": 1, "ended": 1, "still_active": 0, "failed": 0}
    assert reported(row) == {**NOTHING_REPORTED, "call_status": "ended", "ended_reason": "unknown-to-vapi"}


@pytest.mark.parametrize(
    "vapi_fails",
    [
        pytest.param(lambda fake: fake.reply(500, {"statusCode": 500, "message": "Internal server error"}), id="500"),
        pytest.param(lambda fake: fake.reply(429, {"statusCode": 429, "message": "Too many requests"}), id="429"),
        pytest.param(
            lambda fake: fake.reply(200, content=b"<html>", headers={"Content-Type": "text/html"}), id="not-json"
        ),
        pytest.param(lambda fake: fake.raise_error(httpx.ConnectError), id="unreachable"),
        pytest.param(lambda fake: fake.raise_error(httpx.ReadTimeout), id="timeout"),
    ],
)
def test_a_vapi_failure_leaves_the_stale_row_as_it_was(fake_vapi, db, vapi_fails):
    row = stale_row()
    vapi_fails(fake_vapi)

    counts = webhooks.complete_stale_calls(older_than_minutes=60)

    assert counts == {"checked": 1, "ended": 0, "still_active": 0, "failed": 1}
    assert reported(row) == {**NOTHING_REPORTED, "call_status": "in-progress"}


def test_one_call_that_cannot_be_applied_does_not_stop_the_sweep(fake_vapi, db, monkeypatch):
    first = stale_row(minutes_ago=180)
    second = stale_row(minutes_ago=120, call_id="0b6d4c2a-1e3f-4a5b-8c7d-9e0f1a2b3c4d")
    fake_vapi.reply(200, ended_call())
    real = webhooks.apply_end_of_call_report

    def fails_for_the_first(log, message, call):
        if log.pk == first.pk:
            raise RuntimeError("simulated")
        real(log, message, call)

    monkeypatch.setattr(webhooks, "apply_end_of_call_report", fails_for_the_first)

    counts = webhooks.complete_stale_calls(older_than_minutes=60)

    assert counts == {"checked": 2, "ended": 1, "still_active": 0, "failed": 1}
    assert reported(first) == {**NOTHING_REPORTED, "call_status": "in-progress"}
    assert reported(second) == REPORTED


def test_recent_ended_and_unstarted_calls_are_not_asked_about(fake_vapi, db):
    stale_row(minutes_ago=30, call_id="recent")
    stale_row(call_id="ended", call_status="ended")
    stale_row(call_id=None, outcome="pending")
    stale_row(call_id="refused", outcome="rejected")
    stale_row(call_id="failed", outcome="failed")
    asked = stale_row(minutes_ago=61, call_id="stale")
    fake_vapi.reply(200, {**REPORT["call"], "id": "stale", "status": "in-progress"})

    counts = webhooks.complete_stale_calls(older_than_minutes=60)

    assert counts == {"checked": 1, "ended": 0, "still_active": 1, "failed": 0}
    assert [r.url.path for r in fake_vapi.requests] == ["/call/stale"]
    asked.refresh_from_db()
    assert asked.call_status == "in-progress"


def test_the_command_completes_stale_calls_and_says_what_it_did(fake_vapi, db, settings):
    settings.STALE_CALL_MINUTES = 30
    row = stale_row(minutes_ago=45)
    stale_row(minutes_ago=10, call_id="recent")
    fake_vapi.reply(200, ended_call())
    out = StringIO()

    call_command("complete_stale_calls", stdout=out)

    assert out.getvalue() == "Checked 1 calls with Vapi: 1 ended, 0 still active, 0 could not be checked.\n"
    assert reported(row) == REPORTED
    assert [r.url.path for r in fake_vapi.requests] == [f"/call/{WEB_CALL_ID}"]


def test_the_command_takes_a_threshold_and_a_limit(fake_vapi, db):
    for index in range(3):
        stale_row(minutes_ago=20 + index, call_id=f"call-{index}")
    fake_vapi.reply(404, {"statusCode": 404, "message": "Call not found.", "error": "Not Found"})
    out = StringIO()

    call_command("complete_stale_calls", "--older-than-minutes", "15", "--limit", "2", stdout=out)

    assert out.getvalue() == "Checked 2 calls with Vapi: 2 ended, 0 still active, 0 could not be checked.\n"
    assert [r.url.path for r in fake_vapi.requests] == ["/call/call-2", "/call/call-1"]  # oldest first


def test_the_command_settles_rows_left_pending_by_a_stopped_process(fake_vapi, db, settings):
    settings.PENDING_CALL_TIMEOUT_SECONDS = 300
    old_seconds = settings.PENDING_CALL_TIMEOUT_SECONDS + 5
    cut_off = stale_row(call_id=None, outcome="pending", status_code=None, call_status="", minutes_ago=0)
    in_flight = stale_row(call_id=None, outcome="pending", status_code=None, call_status="", minutes_ago=0)
    CallLog.objects.filter(pk=cut_off.pk).update(created_at=timezone.now() - timedelta(seconds=old_seconds))
    CallLog.objects.filter(pk=in_flight.pk).update(created_at=timezone.now() - timedelta(seconds=60))
    out = StringIO()

    call_command("complete_stale_calls", stdout=out)

    assert out.getvalue() == (
        "Settled 1 calls left pending by a process that stopped before Vapi answered.\n"
        "Checked 0 calls with Vapi: 0 ended, 0 still active, 0 could not be checked.\n"
    )
    settled = CallLog.objects.values("outcome", "status_code", "error_code", "response_body")
    assert settled.get(pk=cut_off.pk) == {
        "outcome": "failed",
        "status_code": 504,
        "error_code": "upstream_outcome_unknown",
        "response_body": None,
    }
    assert settled.get(pk=in_flight.pk)["outcome"] == "pending"
    assert fake_vapi.requests == []
