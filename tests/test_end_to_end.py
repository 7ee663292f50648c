"""End to end: the real Django server over a socket, driven like the browser SDK drives it, in front of
a real HTTP server on loopback standing in for Vapi."""

import gzip
import json
import socket
from http import HTTPStatus

import httpx
import pytest

from calls.models import CallLog
from calls.vapi import USER_AGENT, use_vapi_transport
from tests.conftest import TEST_VAPI_KEY
from tests.vapi_standin import CALL, CLIENT_VIEW, Received, StandInVapi

pytestmark = pytest.mark.usefixtures("transactional_db")

ORIGIN = "https://app.example.com"
APP_TOKEN = "public-app-token-0b7e"
# What `vapi.start("sales-coach", {variableValues: {topic}, metadata: {userId}}, undefined, undefined,
# undefined, {roomDeleteOnUserLeaveEnabled: false})` sends.
SDK_BODY = {
    "assistantId": "sales-coach",
    "assistantOverrides": {"variableValues": {"topic": "pricing"}, "metadata": {"userId": "bob"}},
    "roomDeleteOnUserLeaveEnabled": False,
}


@pytest.fixture
def vapi(standin_vapi):
    return standin_vapi


@pytest.fixture
def browser(live_server):
    with httpx.Client(base_url=live_server.url, timeout=10) as client:
        yield client


def start_call(browser, body=SDK_BODY, *, path="/call/web", **kwargs):
    """What the SDK sends, plus what a browser adds on its own."""
    headers = {
        "Authorization": f"Bearer {APP_TOKEN}",
        "Content-Type": "application/json",
        "Origin": ORIGIN,
        "Cookie": "sessionid=app-session-9f3; csrftoken=app-csrf-77",
        "X-Forwarded-For": "203.0.113.7",
        "Referer": f"{ORIGIN}/coach",
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0",
        "Accept-Language": "en-GB",
    }
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return browser.post(path, content=content, headers=headers, **kwargs)


def expected_upstream_body(sales_coach, log) -> dict:
    return {
        "assistant": sales_coach.default_assistant.config,
        "assistantOverrides": {
            "variableValues": {"companyName": "Acme", "customerName": "there", "topic": "pricing"},
            "metadata": {"userId": "bob", "assistantType": "sales-coach", "callLogId": log.pk},
        },
        "roomDeleteOnUserLeaveEnabled": False,
    }


def assert_sent_like_the_proxy(received: Received, vapi: StandInVapi, *, path="/call/web"):
    headers = received.header_dict
    assert (received.method, received.path) == ("POST", path)
    assert "gzip" in headers.pop("accept-encoding")
    assert headers == {
        "host": f"127.0.0.1:{vapi.server_port}",
        "accept": "application/json",
        "connection": "keep-alive",
        "user-agent": USER_AGENT,
        "authorization": f"Bearer {TEST_VAPI_KEY}",
        "content-type": "application/json",
        "content-length": str(len(received.body)),
    }
    assert USER_AGENT.startswith("vapi-proxy")


def assert_answered_like_the_proxy(response, log):
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == log.request_id
    assert response.headers["access-control-allow-origin"] == ORIGIN
    for name in ("content-encoding", "set-cookie", "x-powered-by", "transfer-encoding"):
        assert name not in response.headers
    assert response.headers["content-length"] == str(len(response.content))


def row(log) -> tuple:
    return (
        log.outcome,
        log.status_code,
        log.upstream_status,
        log.error_code,
        log.user_id,
        log.assistant_type,
        log.assistant,
        log.origin,
        log.client_ip,
    )


def test_it_starts_a_call_through_the_real_server(browser, vapi, sales_coach):
    vapi.reply(
        HTTPStatus.CREATED,
        json.dumps(CALL).encode(),
        {"Set-Cookie": "AWSALB=lb-cookie-1; Path=/", "X-Powered-By": "Express"},
    )

    response = start_call(browser)

    assert response.status_code == HTTPStatus.CREATED
    assert response.json() == CLIENT_VIEW
    log = CallLog.objects.get()
    assert_answered_like_the_proxy(response, log)
    [received] = vapi.received
    assert_sent_like_the_proxy(received, vapi)
    assert json.loads(received.body) == expected_upstream_body(sales_coach, log)
    assert row(log) == (
        "created", 201, 201, "", "bob", "sales-coach", sales_coach.default_assistant, ORIGIN, "127.0.0.1"
    )
    assert log.vapi_call_id == CLIENT_VIEW["id"]


def test_a_cookie_vapi_set_does_not_ride_on_the_next_call(browser, vapi, sales_coach):
    vapi.reply(HTTPStatus.CREATED, json.dumps(CALL).encode(), {"Set-Cookie": "AWSALB=lb-cookie-1; Path=/"})
    assert start_call(browser).status_code == HTTPStatus.CREATED
    second_call = {**CALL, "id": "7c3e1b2a-0000-4000-8000-000000000002"}
    vapi.reply(HTTPStatus.CREATED, json.dumps(second_call).encode())

    response = start_call(browser)

    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["id"] == second_call["id"]
    assert [dict(r.headers).get("cookie") for r in vapi.received] == [None, None]


def test_it_decodes_a_gzip_answer(browser, vapi, sales_coach):
    vapi.reply(HTTPStatus.CREATED, gzip.compress(json.dumps(CALL).encode()), {"Content-Encoding": "gzip"})

    response = start_call(browser)

    assert response.status_code == HTTPStatus.CREATED
    assert response.json() == CLIENT_VIEW
    log = CallLog.objects.get()
    assert_answered_like_the_proxy(response, log)
    assert row(log)[:3] == ("created", 201, 201)


def test_vapi_rate_limiting_reaches_the_client_with_retry_after(browser, vapi, sales_coach):
    vapi.reply(
        HTTPStatus.TOO_MANY_REQUESTS,
        json.dumps({"statusCode": 429, "message": "Too many requests", "error": "Too Many Requests"}).encode(),
        {"Retry-After": "7"},
    )

    response = start_call(browser)

    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    log = CallLog.objects.get()
    assert response.json() == {
        "statusCode": 429,
        "error": "Too Many Requests",
        "message": "Vapi is rate limiting calls; try again later. (Too many requests)",
        "code": "upstream_rate_limited",
        "requestId": log.request_id,
    }
    assert_answered_like_the_proxy(response, log)
    assert response.headers["retry-after"] == "7"
    assert "retry-after" in response.headers["access-control-expose-headers"].split(", ")
    assert len(vapi.received) == 1  # a call start is never retried
    assert row(log) == (
        "failed",
        429,
        429,
        "upstream_rate_limited",
        "bob",
        "sales-coach",
        sales_coach.default_assistant,
        ORIGIN,
        "127.0.0.1",
    )


def test_an_unreachable_vapi_is_a_502(browser, settings, fake_vapi, sales_coach):
    # Bound but not listening: connecting is refused, and no other process can take the port meanwhile.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        settings.VAPI_BASE_URL = f"http://127.0.0.1:{closed.getsockname()[1]}"
        use_vapi_transport(None)

        response = start_call(browser)

    assert response.status_code == HTTPStatus.BAD_GATEWAY
    log = CallLog.objects.get()
    assert response.json() == {
        "statusCode": 502,
        "error": "Bad Gateway",
        "message": "Vapi could not be reached; try again shortly.",
        "code": "upstream_unreachable",
        "requestId": log.request_id,
    }
    assert_answered_like_the_proxy(response, log)
    assert row(log) == (
        "failed",
        502,
        None,
        "upstream_unreachable",
        "bob",
        "sales-coach",
        sales_coach.default_assistant,
        ORIGIN,
        "127.0.0.1",
    )


def test_a_slow_vapi_is_a_504(browser, vapi, settings, sales_coach):
    settings.VAPI_TIMEOUT_SECONDS = 0.2
    vapi.delay = 30  # released as soon as the test ends

    response = start_call(browser)

    assert response.status_code == HTTPStatus.GATEWAY_TIMEOUT
    log = CallLog.objects.get()
    assert response.json() == {
        "statusCode": 504,
        "error": "Gateway Timeout",
        "message": "Vapi did not answer in time; the call may not have started.",
        "code": "upstream_timeout",
        "requestId": log.request_id,
    }
    assert_answered_like_the_proxy(response, log)
    assert len(vapi.received) == 1
    assert row(log) == (
        "failed",
        504,
        None,
        "upstream_timeout",
        "bob",
        "sales-coach",
        sales_coach.default_assistant,
        ORIGIN,
        "127.0.0.1",
    )


@pytest.mark.parametrize("prefix", ["/vapi", "/vapi/"])
def test_a_path_in_the_vapi_base_url_is_kept(browser, vapi, settings, sales_coach, prefix):
    settings.VAPI_BASE_URL = vapi.url + prefix

    response = start_call(browser)

    assert response.status_code == HTTPStatus.CREATED
    [received] = vapi.received
    assert_sent_like_the_proxy(received, vapi, path="/vapi/call/web")


def test_an_sdk_base_url_ending_in_a_slash_works(browser, live_server, vapi, sales_coach):
    # An absolute URL: httpx reads a relative "//call/web" as the host "call".
    response = start_call(browser, path=f"{live_server.url}//call/web")

    assert response.status_code == HTTPStatus.CREATED
    assert response.json() == CLIENT_VIEW
    assert len(vapi.received) == 1


def test_the_browser_preflight_is_answered(browser, vapi):
    response = browser.options(
        "/call/web",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )

    assert response.status_code == HTTPStatus.OK
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"].split(", ")
    assert {"authorization", "content-type"} <= set(response.headers["access-control-allow-headers"].split(", "))
    assert "access-control-allow-credentials" not in response.headers
    assert CallLog.objects.count() == 0
    assert vapi.received == []


def test_an_oversized_body_gets_its_413_over_the_socket(browser, vapi, settings, sales_coach):
    settings.CALL_MAX_BODY_BYTES = 1024
    body = json.dumps({**SDK_BODY, "padding": "x" * 256 * 1024}).encode()

    response = start_call(browser, body)

    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    log = CallLog.objects.get()
    assert response.json() == {
        "statusCode": 413,
        "error": "Request Entity Too Large",
        "message": "The request body is larger than 1024 bytes.",
        "code": "body_too_large",
        "requestId": log.request_id,
    }
    assert row(log)[:4] == ("rejected", 413, None, "body_too_large")
    assert vapi.received == []
