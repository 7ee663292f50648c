"""The official @vapi-ai/web SDK in headless Chromium, pointed at the real proxy (live server), which
forwards to a real HTTP stand-in for Vapi on loopback.

The page is a frontend of its own origin (`app_server`), so every start crosses origins as in
production: preflight, CORS, the Origin check. Most tests load the bundle whose Daily client is a
stand-in (frontend/src/fake-daily.js) whose join succeeds, so start() resolves to the call; one
loads the real Daily client and follows it to its join attempt, which fails offline.
"""

import json
import time
from pathlib import Path

import jwt
import pytest

from calls.models import CallLog
from tests.conftest import TEST_VAPI_KEY
from tests.vapi_standin import CALL, CLIENT_VIEW

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("transactional_db")]

PAGE = Path(__file__).with_name("sdk_page.html")
APP_TOKEN = "public-app-token-0b7e"  # the app's own credential for the proxy: never forwarded to Vapi
JWT_SECRET = "browser-test-jwt-secret-that-is-long-enough-1c9e"
DEFAULT_VARIABLES = {"companyName": "Acme", "customerName": "there"}
DAILY_CALL_OBJECT = {"audioSource": True, "videoSource": False, "dailyConfig": {}}


@pytest.fixture
def app(page, app_server, sdk_bundle, live_server, settings):
    """The frontend's page, at its own origin (listed in CORS_ALLOWED_ORIGINS), with the SDK bundle
    whose Daily client is the stand-in."""
    return open_app(page, app_server, sdk_bundle["vapi-fake-daily.js"], settings)


def open_app(page, app_server, bundle, settings):
    settings.CORS_ALLOWED_ORIGINS = [app_server.origin]
    app_server.serve("/vapi.js", bundle, "text/javascript")
    page.goto(app_server.serve("/coach", PAGE))
    return page


def start(page, token, proxy_url, *args):
    """`new Vapi(token, proxyUrl)`, then `await vapi.start(...args)` in the page: what start() resolved to."""
    return page.evaluate("([token, url, args]) => startCall(token, url, args)", [token, proxy_url, list(args)])


def events(page, name=None):
    """The SDK events the page saw, as {name, event}; only those called `name` if given."""
    return [e for e in page.evaluate("window.events") if name is None or e["name"] == name]


def page_origin(page) -> str:
    return page.evaluate("window.location.origin")


def proxy_error(page) -> dict:
    """The proxy's JSON error, as the SDK's `error` event carries it."""
    [error] = events(page, "error")
    assert error["event"]["type"] == "start-method-error"
    return error["event"]["error"]["error"]


def assert_vapi_received(standin_vapi, *, user_id, variables, log, extra=None):
    [received] = standin_vapi.received
    headers = received.header_dict
    assert (received.method, received.path) == ("POST", "/call/web")
    assert headers["authorization"] == f"Bearer {TEST_VAPI_KEY}"
    assert json.loads(received.body) == {
        "assistant": log.assistant.config,
        "assistantOverrides": {
            "variableValues": variables,
            "metadata": {"userId": user_id, "assistantType": "sales-coach", "callLogId": log.pk},
        },
        **(extra or {}),
    }
    assert APP_TOKEN not in repr(received.headers) and APP_TOKEN.encode() not in received.body
    assert "origin" not in headers and "cookie" not in headers


def assert_call_started(page, call):
    """start() resolved to the proxy's answer, and Daily was handed its room."""
    assert "monitor" in CALL  # what Vapi answered has the live-call URLs...
    assert call == CLIENT_VIEW  # ...the SDK gets only what it reads
    assert page.evaluate("window.dailyJoins") == [
        {"url": CALL["webCallUrl"], "subscribeToTracksAutomatically": False, "callObject": DAILY_CALL_OBJECT}
    ]
    page.wait_for_function("window.events.some((e) => e.name === 'call-start')")
    assert [e["name"] for e in events(page)] == ["call-start"]


# Each way the README starts a call in open mode: (arguments of start(), userId Vapi gets in
# metadata, variables Vapi gets, extra top-level fields).
OPEN_MODE_STARTS = {
    "user-and-type": (
        [{"userId": "customer123", "assistantType": "sales-coach"}],
        "customer123",
        DEFAULT_VARIABLES,
        {},
    ),
    "type-then-overrides": (
        ["sales-coach", {"variableValues": {"topic": "renewals"}, "metadata": {"userId": "customer123"}}],
        "customer123",
        {**DEFAULT_VARIABLES, "topic": "renewals"},
        {},
    ),
    "metadata": (
        [{"metadata": {"userId": "customer123", "assistantType": "sales-coach"}}],
        "customer123",
        DEFAULT_VARIABLES,
        {},
    ),
    "assistant-and-overrides": (
        [{"userId": 42, "assistantType": "sales-coach"}, {"variableValues": {"topic": "pricing"}}],
        "42",
        {**DEFAULT_VARIABLES, "topic": "pricing"},
        {},
    ),
    "keep-room-option": (
        ["sales-coach", {"metadata": {"userId": "customer123"}}, None, None, None, {"roomDeleteOnUserLeaveEnabled": False}],
        "customer123",
        DEFAULT_VARIABLES,
        {"roomDeleteOnUserLeaveEnabled": False},
    ),
}


@pytest.mark.parametrize("args, user_id, variables, extra", OPEN_MODE_STARTS.values(), ids=OPEN_MODE_STARTS.keys())
def test_each_documented_start_reaches_vapi_as_the_resolved_assistant(
    app, live_server, standin_vapi, sales_coach, screenshot, args, user_id, variables, extra
):
    call = start(app, APP_TOKEN, live_server.url, *args)
    screenshot("started")

    assert_call_started(app, call)
    log = CallLog.objects.get()
    assert (log.outcome, log.status_code, log.user_id, log.origin) == ("created", 201, user_id, page_origin(app))
    assert_vapi_received(standin_vapi, user_id=user_id, variables=variables, log=log, extra=extra)


def test_a_base_url_ending_in_a_slash_works(app, live_server, standin_vapi, sales_coach):
    call = start(app, APP_TOKEN, f"{live_server.url}/", {"userId": "customer123", "assistantType": "sales-coach"})

    assert_call_started(app, call)
    assert CallLog.objects.get().outcome == "created"


def test_jwt_mode_starts_the_call_for_the_tokens_user(app, live_server, standin_vapi, sales_coach, settings, screenshot):
    settings.PROXY_IDENTITY = "jwt"
    settings.PROXY_JWT_SECRETS = [JWT_SECRET]
    token = jwt.encode({"sub": "customer123", "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256")

    call = start(app, token, live_server.url, {"assistantType": "sales-coach"})
    screenshot("started")

    assert_call_started(app, call)
    log = CallLog.objects.get()
    assert (log.outcome, log.user_id) == ("created", "customer123")
    assert_vapi_received(standin_vapi, user_id="customer123", variables=DEFAULT_VARIABLES, log=log)
    [received] = standin_vapi.received
    assert token not in repr(received.headers) and token.encode() not in received.body


def test_session_mode_starts_the_call_for_the_logged_in_user(
    page, sdk_bundle, live_server, standin_vapi, sales_coach, settings, client, django_user_model
):
    # A page served by the proxy's own site: its origin, with the user's session cookie.
    settings.PROXY_IDENTITY = "session"
    client.force_login(django_user_model.objects.create_user("customer123"))
    host = live_server.url.split("://", 1)[1].split(":")[0]
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "domain": host, "path": "/"}]
    )
    page.route(f"{live_server.url}/coach", lambda route: route.fulfill(body=PAGE.read_bytes(), content_type="text/html"))
    page.route(f"{live_server.url}/vapi.js", lambda route: route.fulfill(path=sdk_bundle["vapi-fake-daily.js"]))
    page.goto(f"{live_server.url}/coach")

    call = page.evaluate(
        "(args) => startCall('', window.location.origin, args)", [{"assistantType": "sales-coach"}]
    )

    assert_call_started(page, call)
    log = CallLog.objects.get()
    assert (log.outcome, log.user_id, log.origin) == ("created", "customer123", live_server.url)
    assert_vapi_received(standin_vapi, user_id="customer123", variables=DEFAULT_VARIABLES, log=log)


def test_an_unknown_assistant_type_reaches_the_error_event(app, live_server, standin_vapi, sales_coach, screenshot):
    call = start(app, APP_TOKEN, live_server.url, {"userId": "customer123", "assistantType": "no-such-type"})
    screenshot("refused")

    assert call is None
    log = CallLog.objects.get()
    assert proxy_error(app) == {
        "statusCode": 404,
        "error": "Not Found",
        "message": "Assistant type 'no-such-type' does not exist or is not active.",
        "code": "unknown_assistant_type",
        "requestId": log.request_id,
    }
    assert standin_vapi.received == []
    assert app.evaluate("window.dailyJoins") == []


def test_a_limit_reaches_the_error_event(app, live_server, standin_vapi, sales_coach, settings, screenshot):
    settings.LIMIT_USER_CONCURRENT_CALLS = 1
    first = start(app, APP_TOKEN, live_server.url, {"userId": "customer123", "assistantType": "sales-coach"})
    assert first == CLIENT_VIEW
    app.evaluate("window.events = []")

    second = start(app, APP_TOKEN, live_server.url, {"userId": "customer123", "assistantType": "sales-coach"})
    screenshot("refused")

    assert second is None
    refused = CallLog.objects.get(outcome="rejected")
    assert proxy_error(app) == {
        "statusCode": 429,
        "error": "Too Many Requests",
        "message": "You are at your limit of simultaneous calls (1 of 1); try again in 30 s.",
        "code": "limit_user_concurrent_calls",
        "requestId": refused.request_id,
    }
    assert len(standin_vapi.received) == 1


@pytest.mark.parametrize(
    "token, code, message",
    [
        ("", "token_missing", "No token: create the SDK with new Vapi(token, proxyUrl), using a token your backend minted."),
        (
            jwt.encode({"sub": "customer123", "exp": int(time.time()) - 3600}, JWT_SECRET, algorithm="HS256"),
            "token_expired",
            "The token has expired; get a new one from your backend.",
        ),
        (
            jwt.encode({"sub": "customer123", "exp": 4102444800}, "another-secret-that-is-long-enough-77aa", algorithm="HS256"),
            "token_invalid",
            "The token's signature does not match.",
        ),
    ],
    ids=["no-token", "expired", "wrong-secret"],
)
def test_a_refused_token_reaches_the_error_event(
    app, live_server, standin_vapi, sales_coach, settings, screenshot, token, code, message
):
    settings.PROXY_IDENTITY = "jwt"
    settings.PROXY_JWT_SECRETS = [JWT_SECRET]

    call = start(app, token, live_server.url, {"assistantType": "sales-coach"})
    screenshot("refused")

    assert call is None
    log = CallLog.objects.get()
    assert proxy_error(app) == {
        "statusCode": 401,
        "error": "Unauthorized",
        "message": message,
        "code": code,
        "requestId": log.request_id,
    }
    assert (log.outcome, log.error_code) == ("rejected", code)
    assert standin_vapi.received == []


def test_the_real_daily_client_gets_as_far_as_joining(
    page, app_server, sdk_bundle, live_server, standin_vapi, sales_coach, settings, outside_requests, screenshot
):
    open_app(page, app_server, sdk_bundle["vapi.js"], settings)

    call = start(page, APP_TOKEN, live_server.url, {"userId": "customer123", "assistantType": "sales-coach"})
    screenshot("join-failed-offline")

    # Offline, Daily cannot load its call machine, so the join fails and start() resolves null.
    assert call is None
    assert CallLog.objects.get().outcome == "created"
    assert len(standin_vapi.received) == 1
    assert outside_requests[0] == "https://c.daily.co/call-machine/versioned/0.87.0/static/call-machine-object-bundle.js"
    errors = {e["event"]["type"]: e["event"] for e in events(page, "error")}
    assert errors["daily-call-join-error"]["error"]["message"].startswith(f"Failed to load call object bundle {outside_requests[0]}")
    assert list(errors)[-1] == "start-method-error"
