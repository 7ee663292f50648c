"""What staff see of what Vapi sent: stored messages read-only with credentials and live-call URLs
redacted, how a call went, phone routes, and deleting everything stored about a user."""

import html
import json
import re
from datetime import datetime, timezone
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from assistants.models import PhoneCaller, PhoneRoute, UserMapping
from calls.models import CallLog, WebhookMessage

pytestmark = pytest.mark.django_db

LISTEN_URL = "wss://listen.example.test/monitor/listen-4f2a"
CONTROL_URL = "https://control.example.test/monitor/control-4f2a"
CALL_TOKEN = "daily-call-token-test-77aa"
SERVER_SECRET = "server-secret-test-1b2c"
SERVER_AUTHORIZATION = "Bearer server-auth-test-3d4e"
HEADER_SECRET = "x-vapi-secret-test-9d0e"
PROVIDER_KEY = "provider-api-key-test-5f6a"
MODEL_KEY = "model-api-key-test-0c1d"
URL_SECRET = "server-url-secret-test-7b8c"
CUSTOM_HEADER = "custom-header-value-test-2e3f"
HIDDEN = (
    LISTEN_URL,
    CONTROL_URL,
    CALL_TOKEN,
    SERVER_SECRET,
    SERVER_AUTHORIZATION,
    "server-auth-test-3d4e",
    HEADER_SECRET,
    PROVIDER_KEY,
    MODEL_KEY,
    URL_SECRET,
    CUSTOM_HEADER,
)
TRANSCRIPT = "AI: Hi Ana, how can I help?\nUser: Tell me about pricing & <plans>."


def report_payload(call_id: str = "call-1") -> dict:
    """An end-of-call report as Vapi sends it: the call echoes its assistant, monitor URLs and transport."""
    return {
        "message": {
            "type": "end-of-call-report",
            "timestamp": 1764756000000,
            "endedReason": "customer-ended-call",
            "artifact": {"transcript": TRANSCRIPT},
            "analysis": {"summary": "Ana asked about pricing."},
            "call": {
                "id": call_id,
                "type": "webCall",
                "status": "ended",
                "monitor": {"listenUrl": LISTEN_URL, "controlUrl": CONTROL_URL},
                "transport": {"provider": "daily", "callToken": CALL_TOKEN},
                "assistant": {
                    "firstMessage": "Hi Ana!",
                    "serverUrlSecret": URL_SECRET,
                    "server": {
                        "url": "https://backend.example.test/vapi",
                        "secret": SERVER_SECRET,
                        "headers": {
                            "X-Vapi-Secret": HEADER_SECRET,
                            "Authorization": SERVER_AUTHORIZATION,
                            "X-Customer": CUSTOM_HEADER,
                        },
                    },
                    "credentials": [{"provider": "11labs", "apiKey": PROVIDER_KEY}],
                    "model": {"provider": "openai", "model": "gpt-4o-mini", "apiKey": MODEL_KEY, "maxTokens": 250},
                },
            },
        }
    }


REDACTED_PAYLOAD = {
    "message": {
        "type": "end-of-call-report",
        "timestamp": 1764756000000,
        "endedReason": "customer-ended-call",
        "artifact": {"transcript": TRANSCRIPT},
        "analysis": {"summary": "Ana asked about pricing."},
        "call": {
            "id": "call-1",
            "type": "webCall",
            "status": "ended",
            "monitor": {"listenUrl": "[redacted]", "controlUrl": "[redacted]"},
            "transport": {"provider": "daily", "callToken": "[redacted]"},
            "assistant": {
                "firstMessage": "Hi Ana!",
                "serverUrlSecret": "[redacted]",
                "server": {
                    "url": "https://backend.example.test/vapi",
                    "secret": "[redacted]",
                    "headers": {
                        "X-Vapi-Secret": "[redacted]",
                        "Authorization": "[redacted]",
                        "X-Customer": "[redacted]",
                    },
                },
                "credentials": "[redacted]",
                "model": {"provider": "openai", "model": "gpt-4o-mini", "apiKey": "[redacted]", "maxTokens": 250},
            },
        },
    }
}


def status_payload(call_id: str, status: str = "in-progress", timestamp: int = 1764756000000) -> dict:
    return {"message": {"type": "status-update", "status": status, "timestamp": timestamp, "call": {"id": call_id}}}


def store(payload: dict, *, call_log=None, reply=None, received_at=None) -> WebhookMessage:
    message = payload["message"]
    fields = {"received_at": received_at} if received_at else {}
    return WebhookMessage.objects.create(
        message_type=message["type"],
        vapi_call_id=message.get("call", {}).get("id", ""),
        call_log=call_log,
        payload=payload,
        body_sha256=f"{WebhookMessage.objects.count():064x}",
        reply=reply,
        **fields,
    )


def pre_blocks(response) -> list[str]:
    """The text of each <pre> block on the page, as staff read it."""
    assert response.status_code == HTTPStatus.OK
    return [html.unescape(block) for block in re.findall(r"<pre[^>]*>(.*?)</pre>", response.content.decode(), re.S)]


def listed(response) -> list:
    assert response.status_code == HTTPStatus.OK
    return list(response.context["cl"].result_list)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def report():
    return store(report_payload(), reply={})


# --- Stored messages --------------------------------------------------------------------------------


def test_the_message_list_shows_stored_messages_without_an_add_button(admin_client, report):
    response = admin_client.get("/admin/calls/webhookmessage/")

    assert listed(response) == [report]
    assertContains(response, '<td class="field-message_type">end-of-call-report</td>', html=True)
    assertContains(response, '<td class="field-vapi_call_id">call-1</td>', html=True)
    assertNotContains(response, "/admin/calls/webhookmessage/add/")
    assertNotContains(response, 'value="delete_selected"')
    for value in HIDDEN:
        assertNotContains(response, value)


def test_a_messages_time_is_written_as_the_call_log_writes_times(admin_client, db, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    message = store(status_payload("call-1"), received_at=datetime(2026, 12, 1, 9, 0, 5, tzinfo=timezone.utc))

    listing = admin_client.get("/admin/calls/webhookmessage/")
    page = admin_client.get(f"/admin/calls/webhookmessage/{message.pk}/change/")

    shown = '<span class="nowrap">2026-12-01 10:00:05</span>'
    assertContains(listing, shown, html=True)
    assertContains(page, shown, html=True)
    assertContains(page, "Received (Europe/Berlin)")


def test_a_message_is_shown_read_only_and_pretty_printed_with_secrets_redacted(admin_client, report):
    response = admin_client.get(f"/admin/calls/webhookmessage/{report.pk}/change/")

    payload_text = pre_blocks(response)[0]
    assert json.loads(payload_text) == REDACTED_PAYLOAD
    assert payload_text.startswith('{\n  "message": {\n    "')
    assert response.context["has_change_permission"] is False
    assert response.context["adminform"].form.fields == {}
    assertNotContains(response, 'name="_save"')
    assertNotContains(response, f"/admin/calls/webhookmessage/{report.pk}/delete/")
    for value in HIDDEN:
        assertNotContains(response, value)
    assertContains(response, "customer-ended-call")
    assertContains(response, "https://backend.example.test/vapi")
    assertContains(response, html.escape(TRANSCRIPT.replace("\n", "\\n")))


def test_the_reply_to_a_message_is_shown_redacted_too(admin_client):
    server = {"url": "https://backend.example.test/vapi", "secret": SERVER_SECRET}
    reply = {"assistant": {"firstMessage": "Hi!", "server": server}}
    message = store({"message": {"type": "assistant-request", "call": {"id": "call-9"}}}, reply=reply)

    response = admin_client.get(f"/admin/calls/webhookmessage/{message.pk}/change/")

    assert [json.loads(text) for text in pre_blocks(response)] == [
        {"message": {"type": "assistant-request", "call": {"id": "call-9"}}},
        {"assistant": {"firstMessage": "Hi!", "server": {**server, "secret": "[redacted]"}}},
    ]
    assertNotContains(response, SERVER_SECRET)


@pytest.mark.parametrize(
    "name",
    [
        "secret",
        "apiKey",
        "api_key",
        "API-Key",
        "X-Vapi-Secret",
        "Authorization",
        "token",
        "accessToken",
        "password",
        "clientSecret",
    ],
)
def test_any_credential_name_is_redacted_wherever_it_is(admin_client, name):
    value = "credential-value-test-8a9b"
    tool_calls = [{"function": {"x": {name: value}}}]
    message = store({"message": {"type": "tool-calls", "call": {"id": "call-7"}, "toolCalls": tool_calls}})

    response = admin_client.get(f"/admin/calls/webhookmessage/{message.pk}/change/")

    assert json.loads(pre_blocks(response)[0])["message"]["toolCalls"] == [{"function": {"x": {name: "[redacted]"}}}]
    assertNotContains(response, value)


def test_empty_credential_fields_are_shown_as_they_are(admin_client):
    call = {"id": "call-8", "transport": {"callToken": ""}, "credentials": []}
    payload = {"message": {"type": "status-update", "call": call}}
    message = store(payload)

    response = admin_client.get(f"/admin/calls/webhookmessage/{message.pk}/change/")

    assert json.loads(pre_blocks(response)[0]) == payload


def test_stored_messages_cannot_be_added_changed_or_deleted(admin_client, report):
    before = WebhookMessage.objects.values().get()

    assert admin_client.get("/admin/calls/webhookmessage/add/").status_code == HTTPStatus.FORBIDDEN
    added = admin_client.post("/admin/calls/webhookmessage/add/", {"message_type": "status-update", "payload": "{}"})
    changed = admin_client.post(
        f"/admin/calls/webhookmessage/{report.pk}/change/", {"message_type": "hang", "note": "x"}
    )
    deleted = admin_client.post(f"/admin/calls/webhookmessage/{report.pk}/delete/", {"post": "yes"})
    bulk = admin_client.post(
        "/admin/calls/webhookmessage/",
        {"action": "delete_selected", "_selected_action": [report.pk], "post": "yes"},
        follow=True,
    )

    assert (added.status_code, changed.status_code, deleted.status_code) == (HTTPStatus.FORBIDDEN,) * 3
    assertNotContains(bulk, 'value="delete_selected"')
    assert list(WebhookMessage.objects.values()) == [before]


def test_the_admin_index_offers_no_way_to_add_a_message(admin_client, report):
    response = admin_client.get("/admin/")

    assertContains(response, "/admin/calls/webhookmessage/")
    assertNotContains(response, "/admin/calls/webhookmessage/add/")


@pytest.fixture
def messages_of_two_calls():
    return {
        "report": store(report_payload(), received_at=datetime(2026, 12, 1, 9, 0, 5, tzinfo=timezone.utc)),
        "status 1": store(status_payload("call-1"), received_at=datetime(2026, 12, 1, 9, 0, 0, tzinfo=timezone.utc)),
        "status 2": store(status_payload("call-2"), received_at=datetime(2026, 12, 2, 9, 0, 0, tzinfo=timezone.utc)),
        "hang": store(
            {"message": {"type": "hang", "timestamp": 1764756000001, "call": {"id": "call-2"}}},
            received_at=datetime(2026, 12, 2, 9, 1, 0, tzinfo=timezone.utc),
        ),
    }


@pytest.mark.parametrize(
    "message_type, expected",
    [
        ("status-update", ["status 2", "status 1"]),
        ("end-of-call-report", ["report"]),
        ("hang", ["hang"]),
        ("tool-calls", []),
    ],
)
def test_messages_can_be_filtered_by_type(admin_client, messages_of_two_calls, message_type, expected):
    response = admin_client.get("/admin/calls/webhookmessage/", {"message_type": message_type})

    assert listed(response) == [messages_of_two_calls[name] for name in expected]


@pytest.mark.parametrize(
    "query, expected",
    [("call-2", ["hang", "status 2"]), ("call-1", ["report", "status 1"]), ("call-3", [])],
)
def test_messages_can_be_found_by_call_id(admin_client, messages_of_two_calls, query, expected):
    response = admin_client.get("/admin/calls/webhookmessage/", {"q": query})

    assert listed(response) == [messages_of_two_calls[name] for name in expected]


# --- How a call went ---------------------------------------------------------------------------------


@pytest.fixture
def finished_call():
    return CallLog.objects.create(
        request_id="req-finished",
        created_at=datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc),
        route="web",
        user_id="ana",
        assistant_type="sales-coach",
        outcome=CallLog.Outcome.CREATED,
        status_code=201,
        upstream_status=201,
        vapi_call_id="call-1",
        call_status="ended",
        ended_reason="customer-ended-call",
        started_at=datetime(2026, 12, 1, 9, 0, 2, tzinfo=timezone.utc),
        ended_at=datetime(2026, 12, 1, 9, 1, 35, 500000, tzinfo=timezone.utc),
        duration_seconds=93.5,
        cost=Decimal("0.1234"),
        cost_breakdown={"llm": 0.05, "tts": 0.0434, "total": 0.1234},
        summary="Ana asked about pricing.",
        transcript=TRANSCRIPT,
        recording_url="https://storage.example.test/recordings/call-1.wav",
        structured_data={"customerName": "Ana", "plan": "pro", "apiKey": PROVIDER_KEY, "callToken": CALL_TOKEN},
        success_evaluation="true",
    )


def test_a_call_log_entry_shows_how_the_call_went(admin_client, finished_call):
    response = admin_client.get(f"/admin/calls/calllog/{finished_call.pk}/change/")

    cost_breakdown, structured_data, transcript = pre_blocks(response)
    assert json.loads(cost_breakdown) == {"llm": 0.05, "tts": 0.0434, "total": 0.1234}
    assert json.loads(structured_data) == {
        "customerName": "Ana",
        "plan": "pro",
        "apiKey": "[redacted]",
        "callToken": "[redacted]",
    }
    assert transcript == TRANSCRIPT
    for shown in ("customer-ended-call", "Ana asked about pricing.", "0.123400", "93.5", "ended", "call-1"):
        assertContains(response, f'<div class="readonly">{shown}</div>', html=True)
    assertContains(response, "https://storage.example.test/recordings/call-1.wav")
    assertNotContains(response, PROVIDER_KEY)
    assertNotContains(response, CALL_TOKEN)
    assertNotContains(response, 'name="_save"')


def test_the_call_log_list_shows_status_duration_and_cost(admin_client, finished_call):
    response = admin_client.get("/admin/calls/calllog/")

    assert listed(response) == [finished_call]
    assertContains(response, '<td class="field-outcome_summary">Created, ended</td>', html=True)
    assertContains(response, '<td class="field-duration"><span class="nowrap">1 min 34 s</span></td>', html=True)
    assertContains(response, '<td class="field-cost_usd">$0.1234</td>', html=True)


def test_the_call_log_is_searchable_by_vapi_call_id(admin_client, finished_call):
    other = CallLog.objects.create(request_id="req-other", user_id="bob", vapi_call_id="call-2")

    assert listed(admin_client.get("/admin/calls/calllog/", {"q": "call-1"})) == [finished_call]
    assert listed(admin_client.get("/admin/calls/calllog/", {"q": "call-2"})) == [other]


def test_the_call_log_filters_by_call_status(admin_client, finished_call):
    CallLog.objects.create(request_id="req-other", user_id="bob", vapi_call_id="call-2", call_status="in-progress")

    assert listed(admin_client.get("/admin/calls/calllog/", {"call_status": "ended"})) == [finished_call]


# --- Phone routes and callers ----------------------------------------------------------------------


@pytest.fixture
def phone_route(sales_coach):
    return PhoneRoute.objects.create(phone_number="+14155550100", phone_number_id="pn-1", assistant_type=sales_coach)


@pytest.fixture
def phone_caller(db):
    return PhoneCaller.objects.create(phone_number="+14155550123", user_id="ana")


@pytest.mark.parametrize(
    "page",
    [
        "/admin/assistants/phoneroute/",
        "/admin/assistants/phoneroute/add/",
        "/admin/assistants/phoneroute/{route}/change/",
        "/admin/assistants/phonecaller/",
        "/admin/assistants/phonecaller/add/",
        "/admin/assistants/phonecaller/{caller}/change/",
    ],
)
def test_phone_route_and_caller_pages_render(admin_client, phone_route, phone_caller, page):
    response = admin_client.get(page.format(route=phone_route.pk, caller=phone_caller.pk))

    assert response.status_code == HTTPStatus.OK


def test_the_phone_route_list_shows_the_number_and_its_type(admin_client, phone_route):
    response = admin_client.get("/admin/assistants/phoneroute/")

    assert listed(response) == [phone_route]
    assertContains(response, "+14155550100")
    assertContains(response, '<td class="field-phone_number_id">pn-1</td>', html=True)
    assertContains(response, '<td class="field-assistant_type nowrap">sales-coach</td>', html=True)


def route_form(sales_coach, **fields) -> dict:
    return {
        "phone_number_id": "",
        "phone_number": "",
        "assistant_type": str(sales_coach.pk),
        "refusal_message": "",
        "is_active": "on",
        **fields,
    }


def form_errors(response) -> dict:
    assert response.status_code == HTTPStatus.OK
    errors = response.context["adminform"].form.errors.get_json_data(escape_html=False)
    return {field: [error["message"] for error in items] for field, items in errors.items()}


E164_MESSAGE = "Enter the number in E.164 form: + and country code, e.g. +14155550100."


@pytest.mark.parametrize(
    "number", ["4155550100", "+1 415 555 0100", "+0415555010", "(415) 555-0100", "+1415555010099999"]
)
def test_a_route_with_a_number_not_in_e164_form_shows_one_plain_message(admin_client, sales_coach, number):
    response = admin_client.post("/admin/assistants/phoneroute/add/", route_form(sales_coach, phone_number=number))

    assert form_errors(response) == {"phone_number": [E164_MESSAGE]}
    assertContains(response, "Enter the number in E.164 form: + and country code, e.g. +14155550100.")
    assert not PhoneRoute.objects.exists()


def test_a_route_needs_a_phone_number_id_or_a_number(admin_client, sales_coach):
    response = admin_client.post("/admin/assistants/phoneroute/add/", route_form(sales_coach))

    assert form_errors(response) == {"__all__": ["Give the Vapi phone number id, the number, or both."]}
    assert not PhoneRoute.objects.exists()


@pytest.mark.parametrize(
    "fields",
    [
        {"phone_number": "+14155550100"},
        {"phone_number_id": "pn-1"},
        {"phone_number": "+14155550100", "phone_number_id": "pn-1"},
    ],
)
def test_a_route_with_an_id_or_a_number_is_saved(admin_client, sales_coach, fields):
    response = admin_client.post("/admin/assistants/phoneroute/add/", route_form(sales_coach, **fields))

    assertRedirects(response, "/admin/assistants/phoneroute/", fetch_redirect_response=False)
    route = PhoneRoute.objects.get()
    assert (route.phone_number, route.phone_number_id, route.assistant_type) == (
        fields.get("phone_number", ""),
        fields.get("phone_number_id", ""),
        sales_coach,
    )


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"phone_number": "+14155550100"}, "Another active route already has this phone number."),
        ({"phone_number_id": "pn-1"}, "Another active route already has this Vapi phone number id."),
    ],
    ids=["same-number", "same-id"],
)
def test_a_second_active_route_for_one_number_is_refused(admin_client, sales_coach, phone_route, fields, message):
    response = admin_client.post("/admin/assistants/phoneroute/add/", route_form(sales_coach, **fields))

    assert form_errors(response) == {"__all__": [message]}
    assert list(PhoneRoute.objects.all()) == [phone_route]


def test_a_number_may_get_a_new_route_while_its_old_one_is_switched_off(admin_client, sales_coach, phone_route):
    phone_route.is_active = False
    phone_route.save()

    response = admin_client.post(
        "/admin/assistants/phoneroute/add/", route_form(sales_coach, phone_number="+14155550100", phone_number_id="pn-1")
    )

    assertRedirects(response, "/admin/assistants/phoneroute/", fetch_redirect_response=False)
    assert PhoneRoute.objects.filter(phone_number="+14155550100", is_active=True).count() == 1


def test_a_caller_with_a_number_not_in_e164_form_shows_one_plain_message(admin_client, db):
    response = admin_client.post(
        "/admin/assistants/phonecaller/add/", {"phone_number": "415-555-0123", "user_id": "ana"}
    )

    assert form_errors(response) == {"phone_number": [E164_MESSAGE]}
    assert not PhoneCaller.objects.exists()


def test_a_caller_is_saved_with_its_user_id(admin_client, db):
    response = admin_client.post(
        "/admin/assistants/phonecaller/add/", {"phone_number": "+14155550123", "user_id": "ana"}
    )

    assertRedirects(response, "/admin/assistants/phonecaller/", fetch_redirect_response=False)
    assert list(PhoneCaller.objects.values_list("phone_number", "user_id")) == [("+14155550123", "ana")]


# --- Deleting everything stored about a user ---------------------------------------------------------


@pytest.fixture
def two_users(alice):
    """Alice and bob each with calls, messages (linked by row or only by call id), a mapping and a number."""
    bob_mapping = UserMapping.objects.create(
        user_id="bob", assistant_type=alice.assistant_type, assistant=alice.assistant
    )
    rows = {
        "alice 1": CallLog.objects.create(request_id="req-a1", user_id="alice", vapi_call_id="call-a1"),
        "alice 2": CallLog.objects.create(request_id="req-a2", user_id="alice", vapi_call_id="call-a2"),
        "alice refused": CallLog.objects.create(request_id="req-a3", user_id="alice", outcome=CallLog.Outcome.REJECTED),
        "bob": CallLog.objects.create(request_id="req-b1", user_id="bob", vapi_call_id="call-b1"),
        "nobody": CallLog.objects.create(request_id="req-n1", user_id="", outcome=CallLog.Outcome.REJECTED),
    }
    messages = {
        "alice 1": store(status_payload("call-a1"), call_log=rows["alice 1"]),
        "alice 1 report": store(report_payload("call-a1"), call_log=rows["alice 1"]),
        "alice 2 unlinked": store(status_payload("call-a2", timestamp=1764756000002)),
        "bob": store(status_payload("call-b1"), call_log=rows["bob"]),
        "no call": store({"message": {"type": "hang", "timestamp": 1764756000003}}),
    }
    callers = {
        "alice": PhoneCaller.objects.create(phone_number="+14155550101", user_id="alice"),
        "bob": PhoneCaller.objects.create(phone_number="+14155550102", user_id="bob"),
    }
    return {"rows": rows, "messages": messages, "callers": callers, "mappings": {"alice": alice, "bob": bob_mapping}}


def what_is_stored() -> dict:
    return {
        "call logs": sorted(CallLog.objects.values_list("request_id", flat=True)),
        "messages": sorted(WebhookMessage.objects.values_list("vapi_call_id", "message_type")),
        "mappings": sorted(UserMapping.objects.values_list("user_id", flat=True)),
        "callers": sorted(PhoneCaller.objects.values_list("user_id", flat=True)),
    }


def forget(client, *rows):
    return client.post(
        "/admin/calls/calllog/",
        {"action": "forget_users", "_selected_action": [row.pk for row in rows], "index": "0"},
        follow=True,
    )


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_the_forget_action_is_offered_to_a_superuser(admin_client, two_users):
    response = admin_client.get("/admin/calls/calllog/")

    assertContains(
        response,
        '<option value="forget_users">Delete everything stored about the selected rows&#x27; users</option>',
        html=True,
    )


def test_forgetting_a_user_deletes_their_calls_messages_mappings_and_numbers_and_nothing_else(admin_client, two_users):
    response = forget(admin_client, two_users["rows"]["alice 1"])

    assert shown_messages(response) == [
        "User alice: deleted 3 webhook messages, 3 call log entries, 1 user mappings, 2 mapping history entries, 1 phone callers, 0 user settings."
    ]
    assert what_is_stored() == {
        "call logs": ["req-b1", "req-n1"],
        "messages": [("", "hang"), ("call-b1", "status-update")],
        "mappings": ["bob"],
        "callers": ["bob"],
    }


def test_forgetting_the_users_of_several_rows_names_each_user_once(admin_client, two_users):
    rows = two_users["rows"]

    response = forget(admin_client, rows["alice 1"], rows["alice 2"], rows["bob"], rows["nobody"])

    assert shown_messages(response) == [
        "User alice: deleted 3 webhook messages, 3 call log entries, 1 user mappings, 2 mapping history entries, 1 phone callers, 0 user settings.",
        "User bob: deleted 1 webhook messages, 1 call log entries, 1 user mappings, 2 mapping history entries, 1 phone callers, 0 user settings.",
    ]
    assert what_is_stored() == {
        "call logs": ["req-n1"],
        "messages": [("", "hang")],
        "mappings": [],
        "callers": [],
    }


def test_forgetting_rows_that_name_no_user_deletes_nothing(admin_client, two_users):
    before = what_is_stored()

    response = forget(admin_client, two_users["rows"]["nobody"])

    assert shown_messages(response) == ["The selected rows name no user."]
    assert what_is_stored() == before


@pytest.fixture
def viewer(client, two_users):
    """A staff member who may look at call logs and messages, and delete nothing."""
    user = get_user_model().objects.create_user("viewer", password="viewer-password-test", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="calls", codename__in=["view_calllog", "view_webhookmessage"]
        )
    )
    client.force_login(user)
    return client


def test_a_staff_member_without_delete_permission_is_not_offered_the_forget_action(viewer, two_users):
    before = what_is_stored()

    page = viewer.get("/admin/calls/calllog/")
    response = forget(viewer, two_users["rows"]["alice 1"])

    assert len(listed(page)) == 5
    assertNotContains(page, 'value="forget_users"')
    assert response.status_code == HTTPStatus.OK
    assert what_is_stored() == before


def test_a_staff_member_with_delete_permission_on_call_logs_may_forget_a_user(viewer, two_users):
    user = get_user_model().objects.get(username="viewer")
    user.user_permissions.add(Permission.objects.get(content_type__app_label="calls", codename="delete_calllog"))

    page = viewer.get("/admin/calls/calllog/")
    response = forget(viewer, two_users["rows"]["bob"])

    assertContains(page, 'value="forget_users"')
    assert shown_messages(response) == [
        "User bob: deleted 1 webhook messages, 1 call log entries, 1 user mappings, 2 mapping history entries, 1 phone callers, 0 user settings."
    ]
    assert "bob" not in what_is_stored()["call logs"]


def test_a_viewer_sees_a_message_redacted(viewer, two_users):
    message = two_users["messages"]["alice 1 report"]

    response = viewer.get(f"/admin/calls/webhookmessage/{message.pk}/change/")

    assert json.loads(pre_blocks(response)[0])["message"]["call"]["monitor"] == {
        "listenUrl": "[redacted]",
        "controlUrl": "[redacted]",
    }
    for value in HIDDEN:
        assertNotContains(response, value)
