"""POST /call: phone calls placed by the customer's servers with API keys staff issue."""

import hashlib
import importlib
import io
import json
import logging
import os
import subprocess
import sys
import threading
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import clear_url_caches
from django.utils import timezone

import proxy_site.urls
from assistants.models import Assistant, AssistantType, EndUser
from calls.api_keys import issue_api_key
from calls.management.commands.issue_api_key import Command as IssueApiKey
from calls.models import ApiKey, CallLog
from calls.vapi import use_vapi_transport
from tests.conftest import PERMANENT_ID, TEST_VAPI_KEY, error_body, load_fixture, post_call

PHONE_NUMBER_ID = "5f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
OTHER_PHONE_NUMBER_ID = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
CUSTOMER_NUMBER = "+14155550100"
CALL = load_fixture("vapi_call_phone_201.json")
CALL_ID = CALL["id"]
CONTROL_URL = CALL["monitor"]["controlUrl"]
CLIENT_VIEW = {
    "id": CALL_ID,
    "status": "queued",
    "type": "outboundPhoneCall",
    "createdAt": "2026-12-03T10:20:00.000Z",
    "phoneNumberId": PHONE_NUMBER_ID,
    "customer": {"number": CUSTOMER_NUMBER},
}
BODY = {
    "assistantType": "sales-coach",
    "userId": "bob",
    "phoneNumberId": PHONE_NUMBER_ID,
    "customer": {"number": CUSTOMER_NUMBER},
}
ACCEPTED_FIELDS = "assistantType, userId, phoneNumberId, customer, variableValues"
ROOT = Path(__file__).resolve().parent.parent
LIMIT_SETTINGS = (
    "LIMIT_USER_CALLS_PER_MINUTE",
    "LIMIT_USER_CALLS_PER_DAY",
    "LIMIT_USER_CONCURRENT_CALLS",
    "LIMIT_TYPE_CONCURRENT_CALLS",
    "LIMIT_DEPLOYMENT_CONCURRENT_CALLS",
    "LIMIT_USER_DAILY_SPEND",
    "LIMIT_DEPLOYMENT_DAILY_SPEND",
)


@pytest.fixture(autouse=True)
def phone_settings(settings, fake_vapi):
    settings.PHONE_ALLOWED_COUNTRY_PREFIXES = ["+1", "+44"]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # admin_client's user
    fake_vapi.reply(201, CALL)


@pytest.fixture
def server_key(sales_coach):
    """A key for sales-coach calls from one phone number; `.key` is the full key, `.row` the ApiKey."""
    row, key = issue_api_key(name="CRM server", assistant_types=[sales_coach], phone_number_ids=[PHONE_NUMBER_ID])
    return Issued(row, key)


class Issued:
    def __init__(self, row: ApiKey, key: str):
        self.row = row
        self.key = key


def place(client, body=BODY, *, key: str | None = None, path="/call", **headers):
    if key is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return post_call(client, body, path=path, **headers)


def row(response) -> dict:
    log = CallLog.objects.get(request_id=response["X-Request-ID"])
    return {
        "route": log.route,
        "api_key": log.api_key,
        "user_id": log.user_id,
        "assistant_type": log.assistant_type,
        "assistant": log.assistant,
        "outcome": log.outcome,
        "status_code": log.status_code,
        "upstream_status": log.upstream_status,
        "error_code": log.error_code,
        "error_detail": log.error_detail,
        "vapi_call_id": log.vapi_call_id,
        "control_url": log.control_url,
        "idempotency_key": log.idempotency_key,
        "response_body": log.response_body,
    }


def refused_row(status, code, message, *, api_key=None, user_id="", assistant_type="", assistant=None, **fields):
    return {
        "route": "phone",
        "api_key": api_key,
        "user_id": user_id,
        "assistant_type": assistant_type,
        "assistant": assistant,
        "outcome": "rejected",
        "status_code": status,
        "upstream_status": None,
        "error_code": code,
        "error_detail": message,
        "vapi_call_id": None,
        "control_url": "",
        "idempotency_key": "",
        "response_body": None,
        **fields,
    }


def created_row(server_key, assistant, **fields):
    return {
        "route": "phone",
        "api_key": server_key.row,
        "user_id": "bob",
        "assistant_type": "sales-coach",
        "assistant": assistant,
        "outcome": "created",
        "status_code": 201,
        "upstream_status": 201,
        "error_code": "",
        "error_detail": "",
        "vapi_call_id": CALL_ID,
        "control_url": CONTROL_URL,
        "idempotency_key": "",
        "response_body": None,
        **fields,
    }


def sent_to_vapi(fake_vapi) -> list[tuple[str, str, str, dict]]:
    return [
        (sent.method, str(sent.url), sent.headers["Authorization"], json.loads(sent.content))
        for sent in fake_vapi.requests
    ]


def upstream_body(log: CallLog, **target) -> dict:
    return {
        **target,
        "assistantOverrides": {
            "variableValues": {"companyName": "Acme", "customerName": "there"},
            "metadata": {"userId": "bob", "assistantType": "sales-coach", "callLogId": log.pk},
        },
        "phoneNumberId": PHONE_NUMBER_ID,
        "customer": {"number": CUSTOMER_NUMBER},
    }


# --- Placing calls ----------------------------------------------------------------------------


def test_it_places_a_phone_call_with_a_transient_assistant(client, server_key, sales_coach, fake_vapi):
    response = place(client, key=server_key.key)

    assert response.status_code == HTTPStatus.CREATED
    assert response.json() == CLIENT_VIEW
    transient = sales_coach.default_assistant
    assert row(response) == created_row(server_key, transient)
    log = CallLog.objects.get()
    assert sent_to_vapi(fake_vapi) == [
        ("POST", "https://vapi.test/call", f"Bearer {TEST_VAPI_KEY}", upstream_body(log, assistant=transient.config))
    ]


def test_it_places_a_phone_call_with_a_permanent_assistant_and_the_users_values(client, alice, fake_vapi):
    row_, key = issue_api_key(name="CRM", assistant_types=[alice.assistant_type], phone_number_ids=[PHONE_NUMBER_ID])
    body = {**BODY, "userId": "alice", "variableValues": {"topic": "pricing"}}

    response = place(client, body, key=key)

    assert response.status_code == HTTPStatus.CREATED
    assert response.json() == CLIENT_VIEW
    log = CallLog.objects.get()
    assert (log.route, log.api_key, log.user_id, log.assistant, log.outcome, log.vapi_call_id) == (
        "phone",
        row_,
        "alice",
        alice.assistant,
        "created",
        CALL_ID,
    )
    assert fake_vapi.last_json == {
        "assistantId": PERMANENT_ID,
        "assistantOverrides": {
            "variableValues": {"companyName": "Acme", "topic": "pricing", "customerName": "Alice A."},
            "metadata": {"userId": "alice", "assistantType": "sales-coach", "callLogId": log.pk},
        },
        "phoneNumberId": PHONE_NUMBER_ID,
        "customer": {"number": CUSTOMER_NUMBER},
    }


@pytest.mark.parametrize("path", ["/call", "/call/", "http://testserver//call", "http://testserver//call/"])
def test_the_phone_route_answers_however_the_base_url_ends(client, server_key, fake_vapi, path):
    response = place(client, key=server_key.key, path=path)

    assert response.status_code == HTTPStatus.CREATED
    assert response.json() == CLIENT_VIEW
    assert str(fake_vapi.requests[0].url) == "https://vapi.test/call"


@pytest.fixture
def vapi_prefix(settings):
    settings.PROXY_PATH_PREFIX = "vapi"
    _reload_urls()
    yield "vapi"
    settings.PROXY_PATH_PREFIX = ""
    _reload_urls()


def _reload_urls():
    importlib.reload(proxy_site.urls)
    clear_url_caches()


@pytest.mark.parametrize("path", ["/vapi/call", "/vapi/call/", "http://testserver/vapi//call", "/call"])
def test_the_phone_route_is_served_under_the_path_prefix(client, server_key, fake_vapi, vapi_prefix, path):
    response = place(client, key=server_key.key, path=path)

    assert response.status_code == HTTPStatus.CREATED
    assert response.json() == CLIENT_VIEW
    assert len(fake_vapi.requests) == 1


def test_it_records_when_a_key_was_last_used(client, server_key):
    assert server_key.row.last_used_at is None

    place(client, key=server_key.key)

    server_key.row.refresh_from_db()
    assert server_key.row.last_used_at is not None


def test_it_answers_with_vapis_status(client, server_key, fake_vapi):
    fake_vapi.reply(200, CALL)

    response = place(client, key=server_key.key)

    assert response.status_code == HTTPStatus.OK
    assert response.json() == CLIENT_VIEW
    assert row(response)["status_code"] == 200


def test_a_server_gets_no_cors_headers(client, server_key):
    response = place(client, key=server_key.key, HTTP_ORIGIN="https://app.example.com")
    preflight = client.options(
        "/call",
        HTTP_ORIGIN="https://app.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type",
    )

    assert response.status_code == HTTPStatus.CREATED
    assert preflight.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    for answer in (response, preflight):
        assert not [name for name in answer.headers if name.lower().startswith("access-control-")]


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_other_methods_get_a_json_405_and_a_row(client, server_key, fake_vapi, method):
    response = getattr(client, method)("/call", HTTP_AUTHORIZATION=f"Bearer {server_key.key}")

    message = f"{method.upper()} is not allowed here; place a phone call with POST."
    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert response["Allow"] == "POST"
    assert response.json() == error_body(response, 405, "method_not_allowed", message)
    assert row(response) == refused_row(405, "method_not_allowed", message)
    assert fake_vapi.requests == []


# --- API keys ---------------------------------------------------------------------------------


def test_it_refuses_a_request_without_a_key(client, server_key, fake_vapi):
    response = place(client)

    message = "No API key: send Authorization: Bearer <key>, with a key staff issued for your server."
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response["WWW-Authenticate"] == 'Bearer realm="vapi-proxy"'
    assert response.json() == error_body(response, 401, "api_key_missing", message)
    assert row(response) == refused_row(401, "api_key_missing", message)
    assert fake_vapi.requests == []


@pytest.mark.parametrize(
    "authorization, message",
    [
        ("Basic {key}", "The Authorization header must be 'Bearer <API key>'."),
        ("Bearer", "The Authorization header must be 'Bearer <API key>'."),
        ("Bearer {key}x", "The API key is not valid."),
        ("Bearer vp_000000000000_{secret}", "The API key is not valid."),
        ("Bearer {secret}", "The API key is not valid."),
        ("Bearer vp__", "The API key is not valid."),
        ("Bearer {digest}", "The API key is not valid."),
    ],
    ids=["basic", "empty-bearer", "wrong-secret", "unknown-prefix", "secret-alone", "no-parts", "the-digest"],
)
def test_it_refuses_a_wrong_key(client, server_key, fake_vapi, authorization, message):
    secret = server_key.key.split("_", 2)[2]
    header = authorization.format(key=server_key.key, secret=secret, digest=server_key.row.digest)

    response = place(client, HTTP_AUTHORIZATION=header)

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json() == error_body(response, 401, "api_key_invalid", message)
    assert row(response) == refused_row(401, "api_key_invalid", message)
    assert fake_vapi.requests == []


def test_it_refuses_a_revoked_key(client, server_key, fake_vapi):
    server_key.row.revoked_at = timezone.now()
    server_key.row.save()

    response = place(client, key=server_key.key)

    message = "This API key has been revoked; ask staff for a new one."
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json() == error_body(response, 401, "api_key_invalid", message)
    assert row(response) == refused_row(401, "api_key_invalid", message)
    assert fake_vapi.requests == []


def test_a_key_revoked_from_a_later_time_works_until_then(client, server_key):
    server_key.row.revoked_at = timezone.now() + timedelta(days=1)
    server_key.row.save()

    response = place(client, key=server_key.key)

    assert response.status_code == HTTPStatus.CREATED


def test_issuing_a_key_stores_only_its_prefix_and_digest(sales_coach):
    row_, key = issue_api_key(name="CRM server", assistant_types=[sales_coach], phone_number_ids=[PHONE_NUMBER_ID])

    scheme, prefix, secret = key.split("_", 2)
    stored = ApiKey.objects.get()
    assert (scheme, prefix) == ("vp", stored.prefix)
    assert len(secret) >= 40
    assert stored.digest == hashlib.sha256(key.encode()).hexdigest()
    assert list(stored.allowed_types.all()) == [sales_coach]
    assert stored.allowed_phone_number_ids == [PHONE_NUMBER_ID]
    assert secret not in json.dumps([str(value) for value in ApiKey.objects.values().get().values()])


def test_two_keys_are_different(sales_coach):
    _, first = issue_api_key(name="one")
    _, second = issue_api_key(name="two")

    assert first != second
    assert first.split("_", 2)[1] != second.split("_", 2)[1]


# --- What a key may call ----------------------------------------------------------------------


def test_it_refuses_a_type_the_key_may_not_call(client, server_key, fake_vapi):
    AssistantType.objects.create(slug="support", default_assistant=Assistant.objects.get())

    response = place(client, {**BODY, "assistantType": "support"}, key=server_key.key)

    message = "This API key may not start calls for assistant type 'support'."
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json() == error_body(response, 403, "assistant_type_not_allowed", message)
    assert row(response) == refused_row(
        403, "assistant_type_not_allowed", message, api_key=server_key.row, user_id="bob", assistant_type="support"
    )
    assert fake_vapi.requests == []


def test_it_refuses_a_phone_number_the_key_may_not_call_from(client, server_key, fake_vapi):
    response = place(client, {**BODY, "phoneNumberId": OTHER_PHONE_NUMBER_ID}, key=server_key.key)

    message = f"This API key may not call from phone number id {OTHER_PHONE_NUMBER_ID!r}."
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json() == error_body(response, 403, "phone_number_not_allowed", message)
    assert row(response) == refused_row(
        403, "phone_number_not_allowed", message, api_key=server_key.row, user_id="bob", assistant_type="sales-coach"
    )
    assert fake_vapi.requests == []



@pytest.mark.parametrize("number", ["+4930123456", "+33142685300"])
def test_it_refuses_a_destination_outside_the_allowed_prefixes(client, server_key, fake_vapi, number):
    response = place(client, {**BODY, "customer": {"number": number}}, key=server_key.key)

    message = "customer.number is outside the allowed destinations (+1, +44)."
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json() == error_body(response, 403, "destination_not_allowed", message)
    assert row(response) == refused_row(
        403, "destination_not_allowed", message, api_key=server_key.row, user_id="bob", assistant_type="sales-coach"
    )
    assert fake_vapi.requests == []


def test_prefixes_may_be_written_without_the_plus(client, server_key, settings):
    settings.PHONE_ALLOWED_COUNTRY_PREFIXES = [" 1415 "]

    response = place(client, key=server_key.key)

    assert response.status_code == HTTPStatus.CREATED


def test_without_allowed_prefixes_phone_calls_are_not_configured(client, server_key, fake_vapi, settings):
    settings.PHONE_ALLOWED_COUNTRY_PREFIXES = []

    response = place(client, key=server_key.key)

    message = (
        "Phone calls are not set up yet: the operator must list the country prefixes phone calls "
        "may go to in PHONE_ALLOWED_COUNTRY_PREFIXES (e.g. +1,+44)."
    )
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json() == error_body(response, 503, "phone_calls_not_configured", message)
    assert row(response)["error_code"] == "phone_calls_not_configured"
    assert fake_vapi.requests == []


def test_a_retry_after_the_operator_sets_the_prefixes_places_the_call(client, server_key, fake_vapi, settings):
    settings.PHONE_ALLOWED_COUNTRY_PREFIXES = []
    first = place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="reminder-8412")
    settings.PHONE_ALLOWED_COUNTRY_PREFIXES = ["+1"]

    retry = place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="reminder-8412")

    assert (first.status_code, retry.status_code) == (HTTPStatus.SERVICE_UNAVAILABLE, HTTPStatus.CREATED)
    assert len(fake_vapi.requests) == 1


def test_it_refuses_a_blocked_user(client, server_key, fake_vapi):
    EndUser.objects.create(user_id="bob", is_blocked=True, blocked_reason="fraud")

    response = place(client, key=server_key.key)

    message = "This user may not start calls; contact support."
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json() == error_body(response, 403, "user_blocked", message)
    assert row(response) == refused_row(
        403, "user_blocked", message, api_key=server_key.row, user_id="bob", assistant_type="sales-coach"
    )
    assert fake_vapi.requests == []


def test_it_refuses_an_unmapped_user_of_a_mapped_only_type(client, server_key, sales_coach, fake_vapi):
    sales_coach.mapped_users_only = True
    sales_coach.save()

    response = place(client, key=server_key.key)

    message = "User 'bob' has no assistant for 'sales-coach': ask staff to map this user (this type is for mapped users only)."
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json() == error_body(response, 403, "user_not_mapped", message)
    assert row(response) == refused_row(
        403, "user_not_mapped", message, api_key=server_key.row, user_id="bob", assistant_type="sales-coach"
    )
    assert fake_vapi.requests == []


@pytest.mark.parametrize(
    "variables, code, message",
    [
        ({"model": "gpt-4"}, "variable_not_allowed", "Variable 'model' may not be set by the client for 'sales-coach' (allowed: topic)."),
        ({"topic": "x" * 21}, "invalid_variable", "Variable 'topic' must be text of at most 20 characters."),
        ({"topic": 7}, "invalid_variable", "Variable 'topic' must be text of at most 20 characters."),
    ],
)
def test_variables_follow_the_web_rules(client, sales_coach, server_key, fake_vapi, variables, code, message):
    response = place(client, {**BODY, "variableValues": variables}, key=server_key.key)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == error_body(response, 400, code, message)
    assert row(response) == refused_row(
        400,
        code,
        message,
        api_key=server_key.row,
        user_id="bob",
        assistant_type="sales-coach",
        assistant=sales_coach.default_assistant,
    )
    assert fake_vapi.requests == []


def test_a_client_variable_reaches_vapi(client, server_key, fake_vapi):
    response = place(client, {**BODY, "variableValues": {"topic": "renewals"}}, key=server_key.key)

    assert response.status_code == HTTPStatus.CREATED
    assert fake_vapi.last_json["assistantOverrides"]["variableValues"] == {
        "companyName": "Acme",
        "customerName": "there",
        "topic": "renewals",
    }


# --- The body ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, code, message",
    [
        (
            {**BODY, "assistant": {"model": {}}, "monitor": {}},
            "field_not_allowed",
            f"Not accepted: assistant, monitor. Send only {ACCEPTED_FIELDS}.",
        ),
        (
            {**BODY, "assistantOverrides": {"variableValues": {"topic": "x"}}},
            "field_not_allowed",
            f"Not accepted: assistantOverrides. Send only {ACCEPTED_FIELDS}.",
        ),
        (
            {**BODY, "customer": {"number": CUSTOMER_NUMBER, "name": "Bob"}},
            "field_not_allowed",
            "Not accepted: customer.name. Send only customer.number.",
        ),
        (
            {"assistantType": "sales-coach", "userId": "bob"},
            "missing_field",
            "Missing required fields: phoneNumberId, customer.",
        ),
        ({**BODY, "customer": {}}, "missing_field", "Missing required fields: customer.number."),
        ({**BODY, "userId": " "}, "missing_field", "userId is required (userId is empty)."),
        ({**BODY, "assistantType": None}, "invalid_field", "assistantType must be a string."),
        (
            {**BODY, "customer": CUSTOMER_NUMBER},
            "invalid_field",
            'customer must be an object: {"number": "+14155550100"}.',
        ),
        (
            {**BODY, "phoneNumberId": 42},
            "invalid_field",
            "phoneNumberId must be the id of a Vapi phone number, as text.",
        ),
        (
            {**BODY, "variableValues": ["topic"]},
            "invalid_field",
            "variableValues must be an object of variable names to values.",
        ),
        # A NUL was a 500 on PostgreSQL (it stores none), in a userId or in a refused field's name.
        ({**BODY, "userId": "bob\u0000"}, "invalid_field", "userId must not contain control characters."),
        (
            {**BODY, "bad\u0000name": 1},
            "field_not_allowed",
            f"Not accepted: 'bad\\x00name'. Send only {ACCEPTED_FIELDS}.",
        ),
        (
            '{"assistantType": "sales-coach", "userId": "bob\\ud800", "phoneNumberId": "p", "customer": {"number": "+1"}}',
            "invalid_json",
            "The request body is not valid JSON (it has a \\u escape that is half of a UTF-16 pair, not a character).",
        ),
    ],
    ids=[
        "unknown-fields",
        "overrides",
        "unknown-customer-field",
        "missing-fields",
        "missing-number",
        "empty-user",
        "type-not-text",
        "customer-not-object",
        "phone-number-id-not-text",
        "variables-not-object",
        "user-with-nul",
        "field-name-with-nul",
        "half-a-surrogate-pair",
    ],
)
def test_it_refuses_a_body_of_another_shape(client, server_key, fake_vapi, body, code, message):
    response = place(client, body, key=server_key.key)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == error_body(response, 400, code, message)
    assert row(response) == refused_row(400, code, message, api_key=server_key.row)
    assert fake_vapi.requests == []


@pytest.mark.parametrize(
    "number",
    ["+1 415 555 0100", "14155550100", "+0014155550100", "+1415555010012345", "+1415", "+14155550100\n", 14155550100],
)
def test_it_refuses_a_number_not_in_e164_form(client, server_key, fake_vapi, number):
    response = place(client, {**BODY, "customer": {"number": number}}, key=server_key.key)

    message = "customer.number must be in E.164 form: + and the country code, digits only, e.g. +14155550100."
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == error_body(response, 400, "invalid_phone_number", message)
    assert row(response) == refused_row(400, "invalid_phone_number", message, api_key=server_key.row)
    assert fake_vapi.requests == []


def test_it_refuses_a_body_that_is_not_json(client, server_key, fake_vapi):
    response = place(client, "userId=bob", key=server_key.key, content_type="application/x-www-form-urlencoded")

    message = "Send the body as JSON with Content-Type: application/json (got 'application/x-www-form-urlencoded')."
    assert response.status_code == HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    assert response.json() == error_body(response, 415, "unsupported_media_type", message)
    assert row(response) == refused_row(415, "unsupported_media_type", message, api_key=server_key.row)
    assert fake_vapi.requests == []


# --- Limits, Vapi, throttle -------------------------------------------------------------------


def test_the_keys_own_limits_apply(client, server_key, fake_vapi):
    server_key.row.calls_per_minute = 1
    server_key.row.save()
    first = place(client, key=server_key.key)

    second = place(client, key=server_key.key)

    assert first.status_code == HTTPStatus.CREATED
    assert second.status_code == HTTPStatus.TOO_MANY_REQUESTS
    retry_after = int(second["Retry-After"])
    assert 1 <= retry_after <= 60
    message = f"This API key has started its limit of calls for this minute (1 of 1); try again in {retry_after} s."
    assert second.json() == error_body(second, 429, "limit_key_calls_per_minute", message)
    assert row(second) == refused_row(
        429,
        "limit_key_calls_per_minute",
        message,
        api_key=server_key.row,
        user_id="bob",
        assistant_type="sales-coach",
        assistant=Assistant.objects.get(name="Sales coach"),
    )
    assert len(fake_vapi.requests) == 1


def test_the_users_limits_apply_to_phone_calls_too(client, server_key, fake_vapi, settings):
    settings.LIMIT_USER_CONCURRENT_CALLS = 1
    place(client, key=server_key.key)

    second = place(client, key=server_key.key)

    assert second.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert second.json()["code"] == "limit_user_concurrent_calls"
    assert len(fake_vapi.requests) == 1


def test_it_answers_503_without_a_vapi_key(client, server_key, fake_vapi, settings):
    settings.VAPI_API_KEY = ""

    response = place(client, key=server_key.key)

    message = "The proxy has no Vapi API key configured (VAPI_API_KEY), so it cannot start calls."
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json() == error_body(response, 503, "vapi_key_missing", message)
    assert row(response)["error_code"] == "vapi_key_missing"
    assert fake_vapi.requests == []


def test_a_refusal_by_vapi_is_a_failed_row(client, server_key, fake_vapi):
    fake_vapi.reply(400, {"statusCode": 400, "message": ["phoneNumberId must be a UUID"], "error": "Bad Request"})

    response = place(client, key=server_key.key)

    message = "Vapi refused the call: phoneNumberId must be a UUID"
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == error_body(response, 400, "upstream_rejected", message)
    log = CallLog.objects.get()
    assert (log.outcome, log.status_code, log.upstream_status, log.error_code, log.error_detail) == (
        "failed",
        400,
        400,
        "upstream_rejected",
        message,
    )
    assert len(fake_vapi.requests) == 1


def test_an_answer_without_a_call_id_is_a_502(client, server_key, fake_vapi):
    fake_vapi.reply(201, {key: value for key, value in CALL.items() if key != "id"})

    response = place(client, key=server_key.key)

    message = "Vapi created the call but its answer has no id."
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert response.json() == error_body(response, 502, "upstream_invalid_response", message)
    assert CallLog.objects.get().outcome == "failed"


def test_refused_keys_are_throttled_per_address(client, server_key, fake_vapi, settings):
    settings.REFUSAL_THROTTLE_PER_MINUTE = 2
    for _ in range(2):
        assert place(client, key=server_key.key + "x").status_code == HTTPStatus.UNAUTHORIZED

    response = place(client, key=server_key.key)

    message = "Too many refused requests from this address; try again in a minute."
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response.json() == error_body(response, 429, "too_many_refusals", message)
    assert CallLog.objects.count() == 2


# --- Idempotency-Key --------------------------------------------------------------------------


def body_sha256(body=BODY) -> str:
    return hashlib.sha256(json.dumps(body).encode()).hexdigest()


def test_a_retry_with_the_same_idempotency_key_gets_the_first_call(client, server_key, fake_vapi, sales_coach):
    first = place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")

    retry = place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")

    assert (first.status_code, retry.status_code) == (HTTPStatus.CREATED, HTTPStatus.CREATED)
    assert first.json() == retry.json() == CLIENT_VIEW
    assert "Idempotent-Replayed" not in first
    assert retry["Idempotent-Replayed"] == "true"
    assert len(fake_vapi.requests) == 1
    assert CallLog.objects.count() == 1  # the replay leaves no row of its own
    assert row(first) == created_row(
        server_key, sales_coach.default_assistant, idempotency_key="order-42", response_body=CLIENT_VIEW
    )
    assert CallLog.objects.get().request_sha256 == body_sha256()


def test_a_retried_refusal_gets_the_same_refusal(client, server_key, fake_vapi):
    body = {**BODY, "phoneNumberId": OTHER_PHONE_NUMBER_ID}
    first = place(client, body, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")

    retry = place(client, body, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")

    message = f"This API key may not call from phone number id {OTHER_PHONE_NUMBER_ID!r}."
    assert first.status_code == retry.status_code == HTTPStatus.FORBIDDEN
    assert retry.json() == first.json() == error_body(first, 403, "phone_number_not_allowed", message)
    assert retry["Idempotent-Replayed"] == "true"
    assert row(first) == refused_row(
        403,
        "phone_number_not_allowed",
        message,
        api_key=server_key.row,
        user_id="bob",
        assistant_type="sales-coach",
        idempotency_key="order-42",
        response_body=first.json(),
    )
    assert CallLog.objects.count() == 1
    assert fake_vapi.requests == []


def test_a_retry_after_a_timeout_does_not_place_a_second_call(client, server_key, fake_vapi):
    fake_vapi.raise_error(httpx.ReadTimeout)
    first = place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")
    fake_vapi.reply(201, CALL)

    retry = place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")

    message = "Vapi did not answer in time; the call may not have started."
    assert first.status_code == retry.status_code == HTTPStatus.GATEWAY_TIMEOUT
    assert retry.json() == first.json() == error_body(first, 504, "upstream_timeout", message)
    assert len(fake_vapi.requests) == 1
    log = CallLog.objects.get()
    assert (log.outcome, log.idempotency_key, log.response_body) == ("failed", "order-42", first.json())


def test_a_retry_after_try_again_later_is_a_new_attempt(client, server_key, fake_vapi):
    fake_vapi.reply(429, {"statusCode": 429, "message": "Too Many Requests"}, headers={"Retry-After": "3"})
    first = place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")
    fake_vapi.reply(201, CALL)

    retry = place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")

    assert first.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert first["Retry-After"] == "3"
    assert retry.status_code == HTTPStatus.CREATED
    assert "Idempotent-Replayed" not in retry
    assert retry.json() == CLIENT_VIEW
    assert len(fake_vapi.requests) == 2
    failed, created = CallLog.objects.order_by("pk")
    assert (failed.outcome, failed.error_code, failed.idempotency_key, failed.response_body) == (
        "failed",
        "upstream_rate_limited",
        "",
        None,
    )
    assert (created.outcome, created.idempotency_key, created.response_body) == ("created", "order-42", CLIENT_VIEW)


def test_a_retry_after_a_limit_is_a_new_attempt(client, server_key, fake_vapi):
    server_key.row.max_concurrent_calls = 1
    server_key.row.save()
    running = place(client, key=server_key.key)
    refused = place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")
    CallLog.objects.filter(request_id=running["X-Request-ID"]).update(call_status="ended")
    fake_vapi.reply(201, {**CALL, "id": "0c9d8e7f-6a5b-4c3d-9e2f-1a0b9c8d7e6f"})

    retry = place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")

    assert refused.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert refused.json()["code"] == "limit_key_concurrent_calls"
    assert row(refused)["idempotency_key"] == ""
    assert retry.status_code == HTTPStatus.CREATED
    assert retry.json() == {**CLIENT_VIEW, "id": "0c9d8e7f-6a5b-4c3d-9e2f-1a0b9c8d7e6f"}
    assert row(retry)["idempotency_key"] == "order-42"
    assert len(fake_vapi.requests) == 2


def test_the_same_idempotency_key_with_another_body_is_refused(client, server_key, fake_vapi):
    first = place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")

    reused = place(client, {**BODY, "userId": "carol"}, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")

    message = "This Idempotency-Key was used with a different request body; use a new key for a new call."
    assert reused.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert reused.json() == error_body(reused, 422, "idempotency_key_reused", message)
    assert row(reused) == refused_row(
        422,
        "idempotency_key_reused",
        f"Idempotency-Key 'order-42' was first used by request {first['X-Request-ID']}.",
        api_key=server_key.row,
    )
    assert row(first)["idempotency_key"] == "order-42"
    assert len(fake_vapi.requests) == 1


def test_idempotency_keys_belong_to_one_api_key(client, server_key, sales_coach, fake_vapi):
    _, other_key = issue_api_key(name="Billing", assistant_types=[sales_coach], phone_number_ids=[PHONE_NUMBER_ID])
    place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")
    fake_vapi.reply(201, {**CALL, "id": "0c9d8e7f-6a5b-4c3d-9e2f-1a0b9c8d7e6f"})

    other = place(client, key=other_key, HTTP_IDEMPOTENCY_KEY="order-42")

    assert other.status_code == HTTPStatus.CREATED
    assert "Idempotent-Replayed" not in other
    assert len(fake_vapi.requests) == 2


def test_a_retry_while_the_first_is_with_vapi_gets_409(client, server_key, fake_vapi):
    retries = []

    def vapi_answers_after_a_retry(request):
        request.read()
        fake_vapi.requests.append(request)
        retries.append(place(Client(), key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42"))
        return httpx.Response(201, json=CALL)

    use_vapi_transport(httpx.MockTransport(vapi_answers_after_a_retry))

    first = place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")

    [retry] = retries
    message = "A request with this Idempotency-Key is still being handled; retry in a few seconds."
    assert first.status_code == HTTPStatus.CREATED
    assert retry.status_code == HTTPStatus.CONFLICT
    assert retry.json() == error_body(retry, 409, "idempotency_in_progress", message)
    assert row(retry) == refused_row(
        409,
        "idempotency_in_progress",
        f"Idempotency-Key 'order-42' is held by request {first['X-Request-ID']}.",
        api_key=server_key.row,
    )
    assert len(fake_vapi.requests) == 1


def _worker_killed_while_with_vapi(fake_vapi):
    def killed(request):
        request.read()
        fake_vapi.requests.append(request)
        raise KeyboardInterrupt  # like a SIGKILL: nothing in the proxy runs after it

    use_vapi_transport(httpx.MockTransport(killed))


def test_a_retry_soon_after_a_cut_off_request_gets_409(client, server_key, fake_vapi):
    _worker_killed_while_with_vapi(fake_vapi)
    with pytest.raises(KeyboardInterrupt):
        place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")
    fake_vapi.reply(201, CALL)

    retry = place(Client(), key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")

    cut_off = CallLog.objects.get(outcome="pending")
    message = "A request with this Idempotency-Key is still being handled; retry in a few seconds."
    assert retry.status_code == HTTPStatus.CONFLICT
    assert retry.json() == error_body(retry, 409, "idempotency_in_progress", message)
    assert (cut_off.status_code, cut_off.response_body, cut_off.idempotency_key) == (None, None, "order-42")
    assert len(fake_vapi.requests) == 1


def test_a_retry_long_after_a_cut_off_request_is_told_the_outcome_is_unknown(client, server_key, fake_vapi, settings):
    _worker_killed_while_with_vapi(fake_vapi)
    with pytest.raises(KeyboardInterrupt):
        place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")
    cut_off = CallLog.objects.get(outcome="pending")
    CallLog.objects.filter(pk=cut_off.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.PENDING_CALL_TIMEOUT_SECONDS + 1)
    )
    fake_vapi.reply(201, CALL)

    retry = place(Client(), key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")

    message = (
        "The proxy stopped before Vapi answered; the call may have started. Check the Vapi dashboard "
        "before you place it again."
    )
    expected = {**error_body(retry, 504, "upstream_outcome_unknown", message), "requestId": cut_off.request_id}
    assert retry.status_code == HTTPStatus.GATEWAY_TIMEOUT
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json() == expected
    cut_off.refresh_from_db()
    assert (cut_off.outcome, cut_off.status_code, cut_off.error_code, cut_off.response_body) == (
        "failed",
        504,
        "upstream_outcome_unknown",
        expected,
    )
    assert CallLog.objects.count() == 1  # a replay leaves no row of its own
    assert len(fake_vapi.requests) == 1


def test_a_refusal_that_loses_the_race_for_its_key_answers_as_the_winner_did(client, server_key, fake_vapi, monkeypatch):
    from calls import phone

    body = {**BODY, "customer": {"number": "+4930123456"}}
    real_check, winners = phone.check_destination, []

    def another_request_gets_there_first(number):
        monkeypatch.setattr(phone, "check_destination", real_check)
        winners.append(place(Client(), body, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42"))
        real_check(number)

    monkeypatch.setattr(phone, "check_destination", another_request_gets_there_first)

    loser = place(client, body, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42")

    [winner] = winners
    message = "customer.number is outside the allowed destinations (+1, +44)."
    assert winner.status_code == loser.status_code == HTTPStatus.FORBIDDEN
    assert loser.json() == winner.json() == error_body(winner, 403, "destination_not_allowed", message)
    assert loser["Idempotent-Replayed"] == "true"
    assert CallLog.objects.get().request_id == winner["X-Request-ID"]
    assert fake_vapi.requests == []


@pytest.mark.parametrize("value", ["", "   ", "k" * 256])
def test_it_refuses_an_unusable_idempotency_key(client, server_key, fake_vapi, value):
    response = place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY=value)

    message = "The Idempotency-Key header must be 1 to 255 characters; leave it out to send without one."
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json() == error_body(response, 400, "invalid_idempotency_key", message)
    assert row(response) == refused_row(400, "invalid_idempotency_key", message, api_key=server_key.row)
    assert fake_vapi.requests == []


def test_a_body_too_large_to_read_holds_no_idempotency_key(client, server_key, fake_vapi, settings):
    settings.CALL_MAX_BODY_BYTES = 100
    body = {**BODY, "variableValues": {"topic": "x" * 100}}

    responses = [place(client, body, key=server_key.key, HTTP_IDEMPOTENCY_KEY="order-42") for _ in range(2)]

    message = "The request body is larger than 100 bytes."
    for response in responses:
        assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        assert response.json() == error_body(response, 413, "body_too_large", message)
        assert row(response) == refused_row(413, "body_too_large", message, api_key=server_key.row)
    assert fake_vapi.requests == []


def test_an_idempotency_key_of_255_characters_is_kept(client, server_key):
    response = place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="k" * 255)

    assert response.status_code == HTTPStatus.CREATED
    assert row(response)["idempotency_key"] == "k" * 255


def fire_with_one_idempotency_key(key: str, *, senders: int = 4) -> dict:
    """Sends identical requests with one Idempotency-Key at once, one thread each; what came of them.

    Every request looks the key up (finding nothing) before any of them writes its row, and the one
    that reaches Vapi is kept waiting there until the others have their answer.
    """
    from calls import services

    real_admit = services.admit
    all_looked = threading.Barrier(senders, timeout=20)
    others_answered = threading.Event()
    lock = threading.Lock()
    statuses, received = [], []

    def admit_together(log, **kwargs):
        all_looked.wait()
        return real_admit(log, **kwargs)

    def vapi(request):
        request.read()
        received.append(request)
        others_answered.wait(20)
        return httpx.Response(201, json=CALL)

    def send():
        try:
            status = place(Client(), key=key, HTTP_IDEMPOTENCY_KEY="order-42").status_code
            with lock:
                statuses.append(status)
                if len([s for s in statuses if s != HTTPStatus.CREATED]) == senders - 1:
                    others_answered.set()
        finally:
            connection.close()

    services.admit = admit_together
    use_vapi_transport(httpx.MockTransport(vapi))
    try:
        threads = [threading.Thread(target=send) for _ in range(senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        services.admit = real_admit
        use_vapi_transport(None)
    return {
        "statuses": sorted(statuses),
        "vapi": len(received),
        "rows": sorted(list(values) for values in CallLog.objects.values_list("outcome", "error_code", "idempotency_key")),
    }


ONE_CALL_FROM_FOUR = {
    "statuses": [201, 409, 409, 409],
    "vapi": 1,
    "rows": [
        ["created", "", "order-42"],
        ["rejected", "idempotency_in_progress", ""],
        ["rejected", "idempotency_in_progress", ""],
        ["rejected", "idempotency_in_progress", ""],
    ],
}


@pytest.mark.django_db(transaction=True)
def test_simultaneous_requests_with_one_idempotency_key_place_one_call_on_postgresql(sales_coach):
    if connection.vendor != "postgresql":
        pytest.skip("the suite runs on SQLite (see the SQLite file test); DATABASE_URL=postgres://... runs this")
    _, key = issue_api_key(name="CRM", assistant_types=[sales_coach], phone_number_ids=[PHONE_NUMBER_ID])

    assert fire_with_one_idempotency_key(key) == ONE_CALL_FROM_FOUR


def sqlite_file_worker() -> None:
    """Runs in a subprocess on a SQLite file (DATABASE_URL): migrate, issue a key, fire, print the outcome.

    The suite's own SQLite test database is in memory, in shared-cache mode, where a second
    connection gets "database table is locked" at once instead of waiting for the lock.
    """
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    assistant = Assistant.objects.create(name="Sales coach", config={"firstMessage": "Hi!"})
    kind = AssistantType.objects.create(slug="sales-coach", default_assistant=assistant)
    _, key = issue_api_key(name="CRM", assistant_types=[kind], phone_number_ids=[PHONE_NUMBER_ID])
    print(json.dumps(fire_with_one_idempotency_key(key)))


def test_simultaneous_requests_with_one_idempotency_key_place_one_call_on_a_sqlite_file(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "proxy_site.settings",
        "DJANGO_ENV_FILE": "",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "test-only-secret-key-not-for-production",
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PROXY_IDENTITY": "open",
        "PROXY_ALLOW_OPEN_IDENTITY": "true",
        "VAPI_API_KEY": TEST_VAPI_KEY,
        "VAPI_BASE_URL": "https://vapi.test",
        "PHONE_ALLOWED_COUNTRY_PREFIXES": "+1",
        "REFUSAL_THROTTLE_PER_MINUTE": "0",
        "CACHE_URL": "",
        "LOG_LEVEL": "CRITICAL",
        **{name: "none" for name in LIMIT_SETTINGS},
    }
    code = "import django; django.setup(); from tests.test_phone_calls import sqlite_file_worker; sqlite_file_worker()"

    worker = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert worker.returncode == 0, worker.stderr[-3000:]
    assert json.loads(worker.stdout.strip().splitlines()[-1]) == ONE_CALL_FROM_FOUR


# --- Staff: the admin and the command ---------------------------------------------------------


def issue_in_admin(admin_client, sales_coach, **fields):
    data = {
        "name": "CRM server",
        "allowed_types": [sales_coach.pk],
        "allowed_phone_number_ids": json.dumps([PHONE_NUMBER_ID]),
        "calls_per_minute": "",
        "calls_per_day": "",
        "max_concurrent_calls": "",
        **fields,
    }
    return admin_client.post("/admin/calls/apikey/add/", data, follow=True)


def test_staff_issue_a_key_in_the_admin_and_see_it_once(admin_client, client, sales_coach, fake_vapi):
    response = issue_in_admin(admin_client, sales_coach)

    shown = [str(message) for message in response.context["messages"]]
    assert len(shown) == 2
    announcement, key = shown[0].rsplit("The key: ", 1)
    assert announcement == (
        "New API key for CRM server. Copy it now: only its hash is stored, so it cannot be shown again. "
        "The customer's server sends it as Authorization: Bearer <key>. "
    )
    stored = ApiKey.objects.get()
    assert key.startswith(f"vp_{stored.prefix}_")
    assert stored.digest == hashlib.sha256(key.encode()).hexdigest()
    assert (stored.name, list(stored.allowed_types.all()), stored.allowed_phone_number_ids) == (
        "CRM server",
        [sales_coach],
        [PHONE_NUMBER_ID],
    )
    assert place(client, key=key).status_code == HTTPStatus.CREATED

    secret = key.split("_", 2)[2]
    for page in (
        "/admin/calls/apikey/",
        f"/admin/calls/apikey/{stored.pk}/change/",
        f"/admin/calls/apikey/{stored.pk}/history/",
        "/admin/calls/calllog/",
        f"/admin/calls/calllog/{CallLog.objects.get().pk}/change/",
        "/admin/",
    ):
        later = admin_client.get(page)
        assert later.status_code == HTTPStatus.OK, page
        content = later.content.decode()
        assert secret not in content, page
        assert stored.digest not in content, page
    assert f"vp_{stored.prefix}_…" in admin_client.get(f"/admin/calls/apikey/{stored.pk}/change/").content.decode()
    assert secret not in json.dumps(list(LogEntry.objects.values_list("object_repr", "change_message")))


def test_the_admin_refuses_phone_number_ids_that_are_not_a_list_of_ids(admin_client, sales_coach):
    response = issue_in_admin(admin_client, sales_coach, allowed_phone_number_ids='{"id": 1}')

    assert response.context["adminform"].form.errors == {
        "allowed_phone_number_ids": ['Enter a list of Vapi phone number ids, e.g. ["5f1c..."], or leave it empty.']
    }
    assert not ApiKey.objects.exists()


def test_the_admin_lists_keys_without_their_secrets(admin_client, server_key):
    revoked, _ = issue_api_key(name="Old server")
    revoked.revoked_at = timezone.now()
    revoked.save()

    response = admin_client.get("/admin/calls/apikey/")

    assert list(response.context["cl"].list_display) == ["action_checkbox", "name", "prefix", "revoked", "last_used_at"]
    content = response.content.decode()
    assert server_key.row.prefix in content and revoked.prefix in content
    assert server_key.row.digest not in content


def test_staff_revoke_keys_from_the_list(admin_client, client, server_key, fake_vapi):
    response = admin_client.post(
        "/admin/calls/apikey/", {"action": "revoke_keys", "_selected_action": [server_key.row.pk]}, follow=True
    )

    assert [str(message) for message in response.context["messages"]] == [
        "Revoked 1 key(s): requests with them now get 401 api_key_invalid."
    ]
    server_key.row.refresh_from_db()
    assert server_key.row.revoked_at is not None
    refused = place(client, key=server_key.key)
    assert refused.status_code == HTTPStatus.UNAUTHORIZED
    assert refused.json()["message"] == "This API key has been revoked; ask staff for a new one."
    assert fake_vapi.requests == []


def test_the_command_prints_no_deployment_warnings_around_the_key(sales_coach, settings):
    settings.VAPI_API_KEY = ""  # a warning the system checks would print
    out, err = io.StringIO(), io.StringIO()
    # As manage.py runs it (call_command skips the system checks).
    command = IssueApiKey(stdout=out, stderr=err)
    options = command.create_parser("manage.py", "issue_api_key").parse_args(["--name", "CRM", "--types", "sales-coach"])

    command.execute(**vars(options))

    assert out.getvalue().startswith("vp_")
    assert err.getvalue().startswith("Issued API key 'CRM'")
    assert "VAPI_API_KEY" not in out.getvalue() + err.getvalue()


def test_the_command_issues_a_key_and_prints_it_once(client, sales_coach, fake_vapi):
    out, err = io.StringIO(), io.StringIO()

    call_command(
        "issue_api_key",
        "--name",
        "CRM server",
        "--types",
        "sales-coach",
        "--phone-number-ids",
        f"{PHONE_NUMBER_ID}, {OTHER_PHONE_NUMBER_ID}",
        stdout=out,
        stderr=err,
    )

    key = out.getvalue().strip()
    stored = ApiKey.objects.get()
    assert out.getvalue() == key + "\n"
    assert key.startswith(f"vp_{stored.prefix}_")
    assert stored.digest == hashlib.sha256(key.encode()).hexdigest()
    assert (stored.name, list(stored.allowed_types.all()), stored.allowed_phone_number_ids) == (
        "CRM server",
        [sales_coach],
        [PHONE_NUMBER_ID, OTHER_PHONE_NUMBER_ID],
    )
    assert err.getvalue() == (
        f"Issued API key 'CRM server' (prefix {stored.prefix}). Copy it now: only its hash is stored, "
        "so it cannot be shown again. Revoke it in the admin (Server API keys).\n"
    )
    assert place(client, key=key).status_code == HTTPStatus.CREATED


def test_the_command_refuses_an_unknown_type(sales_coach):
    with pytest.raises(CommandError, match="^No assistant type nope; create it in the admin first.$"):
        call_command("issue_api_key", "--name", "CRM", "--types", "sales-coach,nope", stdout=io.StringIO())

    assert not ApiKey.objects.exists()


# --- Secrets ----------------------------------------------------------------------------------


def test_no_key_appears_in_any_answer_row_or_log_record(client, server_key, fake_vapi, caplog):
    caplog.set_level(logging.DEBUG)
    secret = server_key.key.split("_", 2)[2]
    answers = [place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="a")]
    answers.append(place(client, key=server_key.key, HTTP_IDEMPOTENCY_KEY="a"))
    answers.append(place(client, {**BODY, "assistantType": "other"}, key=server_key.key))
    answers.append(place(client, key=server_key.key[:-1]))
    fake_vapi.reply(401, {"statusCode": 401, "message": f"Invalid key {TEST_VAPI_KEY}"})
    answers.append(place(client, key=server_key.key))
    server_key.row.revoked_at = timezone.now()
    server_key.row.save()
    answers.append(place(client, key=server_key.key))

    assert [answer.status_code for answer in answers] == [201, 201, 403, 401, 502, 401]
    told = [answer.content.decode() + json.dumps(dict(answer.headers)) for answer in answers]
    told += [record.getMessage() for record in caplog.records]
    assert len(caplog.records) >= len(answers)
    rows = json.dumps([list(map(str, values)) for values in CallLog.objects.values_list()])
    for text in [*told, rows]:
        for forbidden in (TEST_VAPI_KEY, secret, server_key.row.digest):
            assert forbidden not in text
    for text in told:  # the row keeps the control URL, to end the call of a blocked user
        assert CONTROL_URL not in text


def test_it_answers_json_whatever_the_accept_header_says(client, server_key):
    response = place(client, key=server_key.key, HTTP_ACCEPT="text/html")
    refused = place(client, HTTP_ACCEPT="text/html")

    assert (response.status_code, response["Content-Type"]) == (HTTPStatus.CREATED, "application/json")
    assert (refused.status_code, refused["Content-Type"]) == (HTTPStatus.UNAUTHORIZED, "application/json")
