"""Between the proxy and Vapi, seen through POST /call/web: what Vapi receives, and what the client
is told when Vapi fails, refuses or answers oddly."""

import gzip
import json
import time
from http import HTTPStatus

import httpx
import jwt
import pytest

from calls.models import CallLog
from tests.conftest import TEST_VAPI_KEY, error_body, load_fixture, post_call

START = {"assistant": {"userId": "bob", "assistantType": "sales-coach"}}
CALL_ID = "3f1c9a52-6a7e-4c1b-9d1e-0c2f5e8b7a11"
ORIGIN = "https://app.example.com"
CLIENT_TOKEN = "client-app-token-9f8e7d"
JWT_KEY = "test-private-key-for-jwt-signing-not-real"


def row(response):
    log = CallLog.objects.get()
    assert log.request_id == response["X-Request-ID"]
    return {
        "outcome": log.outcome,
        "status_code": log.status_code,
        "upstream_status": log.upstream_status,
        "error_code": log.error_code,
        "error_detail": log.error_detail,
        "vapi_call_id": log.vapi_call_id,
    }


def failed_row(status, code, message, *, upstream_status=None, vapi_call_id=None):
    return {
        "outcome": "failed",
        "status_code": status,
        "upstream_status": upstream_status,
        "error_code": code,
        "error_detail": message,
        "vapi_call_id": vapi_call_id,
    }


def assert_asked_vapi_once(fake_vapi, sales_coach):
    assert len(fake_vapi.requests) == 1
    sent = fake_vapi.requests[0]
    assert (sent.method, str(sent.url)) == ("POST", "https://vapi.test/call/web")
    assert fake_vapi.last_json["assistant"] == sales_coach.default_assistant.config


def test_it_answers_502_when_vapi_cannot_be_reached(client, sales_coach, fake_vapi):
    fake_vapi.raise_error(httpx.ConnectError)

    response = post_call(client, START)

    message = "Vapi could not be reached; try again shortly."
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert response.json() == error_body(response, 502, "upstream_unreachable", message)
    assert row(response) == failed_row(502, "upstream_unreachable", message)
    assert_asked_vapi_once(fake_vapi, sales_coach)


@pytest.mark.parametrize("exc_type", [httpx.ReadTimeout, httpx.ConnectTimeout])
def test_it_answers_504_when_vapi_times_out(client, sales_coach, fake_vapi, exc_type):
    fake_vapi.raise_error(exc_type)

    response = post_call(client, START)

    message = "Vapi did not answer in time; the call may not have started."
    assert response.status_code == HTTPStatus.GATEWAY_TIMEOUT
    assert response.json() == error_body(response, 504, "upstream_timeout", message)
    assert row(response) == failed_row(504, "upstream_timeout", message)
    assert_asked_vapi_once(fake_vapi, sales_coach)


@pytest.mark.parametrize(
    ("status", "vapi_message"),
    [
        (401, "Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa."),
        (403, "Forbidden"),
    ],
)
def test_it_answers_502_saying_the_operators_key_is_wrong_when_vapi_refuses_it(
    client, sales_coach, fake_vapi, status, vapi_message
):
    fake_vapi.reply(status, {"statusCode": status, "message": vapi_message, "error": HTTPStatus(status).phrase})

    response = post_call(client, START)

    message = "Vapi refused the proxy's credentials: the operator must check VAPI_API_KEY."
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert response.json() == error_body(response, 502, "upstream_auth_failed", message)
    # Staff see Vapi's own explanation on the row; the browser is not told it.
    staff_detail = f"Vapi refused the proxy's credentials ({status}: {vapi_message}); check VAPI_API_KEY."
    assert row(response) == failed_row(502, "upstream_auth_failed", staff_detail, upstream_status=status)
    assert_asked_vapi_once(fake_vapi, sales_coach)


def test_in_jwt_mode_a_refused_credential_also_points_at_the_org_id(client, sales_coach, fake_vapi, settings):
    settings.VAPI_UPSTREAM_AUTH = "jwt"
    settings.VAPI_ORG_ID = "8d0f5a7e-2b1c-4e3d-9f8a-7c6b5a4d3e2f"
    fake_vapi.reply(401, {"statusCode": 401, "message": "Invalid token", "error": "Unauthorized"})

    response = post_call(client, START)

    assert response.json()["message"] == "Vapi refused the proxy's credentials: the operator must check VAPI_API_KEY."
    assert CallLog.objects.get().error_detail == (
        "Vapi refused the proxy's credentials (401: Invalid token); check VAPI_API_KEY and VAPI_ORG_ID."
    )


def test_it_passes_vapis_rate_limit_on_with_its_retry_after(client, sales_coach, fake_vapi):
    fake_vapi.reply(
        429,
        {"statusCode": 429, "message": "ThrottlerException: Too Many Requests", "error": "Too Many Requests"},
        headers={"Retry-After": "30"},
    )

    response = post_call(client, START, HTTP_ORIGIN=ORIGIN)

    message = "Vapi is rate limiting calls; try again later. (ThrottlerException: Too Many Requests)"
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response.json() == error_body(response, 429, "upstream_rate_limited", message)
    assert response["Retry-After"] == "30"
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert "retry-after" in response["Access-Control-Expose-Headers"].split(", ")
    assert row(response) == failed_row(429, "upstream_rate_limited", message, upstream_status=429)
    assert_asked_vapi_once(fake_vapi, sales_coach)


def test_it_sends_no_retry_after_when_vapis_rate_limit_has_none(client, sales_coach, fake_vapi):
    fake_vapi.reply(429, {"statusCode": 429, "message": "Too Many Requests"})

    response = post_call(client, START)

    message = "Vapi is rate limiting calls; try again later. (Too Many Requests)"
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response.json() == error_body(response, 429, "upstream_rate_limited", message)
    assert "Retry-After" not in response
    assert row(response) == failed_row(429, "upstream_rate_limited", message, upstream_status=429)


@pytest.mark.parametrize(
    ("vapi_message", "retry_after"),
    [("Over Concurrency Limit.", None), (["Couldn't Create Call. Over Concurrency Limit."], "5")],
)
def test_it_answers_429_when_vapi_refuses_for_its_concurrency_limit(
    client, sales_coach, fake_vapi, vapi_message, retry_after
):
    fake_vapi.reply(
        400,
        {"statusCode": 400, "message": vapi_message, "error": "Bad Request"},
        headers={"Retry-After": retry_after} if retry_after else None,
    )

    response = post_call(client, START)

    shown = vapi_message if isinstance(vapi_message, str) else vapi_message[0]
    message = f"Vapi's limit on simultaneous calls is reached; try again later. ({shown})"
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response.json() == error_body(response, 429, "upstream_concurrency_limited", message)
    assert response.get("Retry-After") == retry_after
    assert row(response) == failed_row(429, "upstream_concurrency_limited", message, upstream_status=400)
    assert_asked_vapi_once(fake_vapi, sales_coach)


@pytest.mark.parametrize(
    ("status", "vapi_body", "message"),
    [
        (
            400,
            {
                "statusCode": 400,
                "message": ["assistant.voice.voiceId must be a string", "assistant.model.model must be one of gpt-4o"],
                "error": "Bad Request",
            },
            "Vapi refused the call: assistant.voice.voiceId must be a string; "
            "assistant.model.model must be one of gpt-4o",
        ),
        (
            404,
            {"statusCode": 404, "message": "Couldn't Find Assistant.", "error": "Not Found"},
            "Vapi refused the call: Couldn't Find Assistant.",
        ),
        (422, {"statusCode": 422}, "Vapi refused the call: no reason given"),
    ],
)
def test_it_passes_other_vapi_refusals_on_with_their_status_and_message(
    client, sales_coach, fake_vapi, status, vapi_body, message
):
    fake_vapi.reply(status, vapi_body)

    response = post_call(client, START)

    assert response.status_code == status
    assert response.json() == error_body(response, status, "upstream_rejected", message)
    assert row(response) == failed_row(status, "upstream_rejected", message, upstream_status=status)
    assert_asked_vapi_once(fake_vapi, sales_coach)


def test_it_answers_502_for_a_vapi_refusal_with_a_status_http_does_not_name(client, sales_coach, fake_vapi):
    fake_vapi.reply(460, {"message": "Client closed connection"})

    response = post_call(client, START)

    message = "Vapi refused the call with status 460: Client closed connection"
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert response.json() == error_body(response, 502, "upstream_rejected", message)
    assert row(response) == failed_row(502, "upstream_rejected", message, upstream_status=460)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_it_answers_502_when_vapi_fails(client, sales_coach, fake_vapi, status):
    fake_vapi.reply(status, {"statusCode": status, "message": "Internal server error"})

    response = post_call(client, START)

    message = f"Vapi failed with status {status}; try again shortly."
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert response.json() == error_body(response, 502, "upstream_error", message)
    assert row(response) == failed_row(502, "upstream_error", message, upstream_status=status)
    assert_asked_vapi_once(fake_vapi, sales_coach)


def test_it_answers_502_and_does_not_follow_when_vapi_redirects(client, sales_coach, fake_vapi):
    fake_vapi.reply(307, content=b"", headers={"Location": "https://elsewhere.test/call/web"})

    response = post_call(client, START)

    message = "Vapi failed with status 307; try again shortly."
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert response.json() == error_body(response, 502, "upstream_error", message)
    assert "Location" not in response
    assert row(response) == failed_row(502, "upstream_error", message, upstream_status=307)
    assert_asked_vapi_once(fake_vapi, sales_coach)


def test_it_answers_502_when_vapi_fails_with_a_page_that_is_not_json(client, sales_coach, fake_vapi):
    fake_vapi.reply(502, content=b"<html><body>502 Bad Gateway</body></html>", headers={"Content-Type": "text/html"})

    response = post_call(client, START)

    message = "Vapi failed with status 502; try again shortly."
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert response.json() == error_body(response, 502, "upstream_error", message)
    assert row(response) == failed_row(502, "upstream_error", message, upstream_status=502)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"<html>Created</html>", "text/html"), (b"", "application/json"), (b'["queued"]', "application/json")],
)
def test_it_answers_502_when_vapis_success_answer_is_not_a_json_object(
    client, sales_coach, fake_vapi, content, content_type
):
    fake_vapi.reply(201, content=content, headers={"Content-Type": content_type})

    response = post_call(client, START)

    message = "Vapi answered with something that is not a call."
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert response.json() == error_body(response, 502, "upstream_invalid_response", message)
    assert row(response) == failed_row(502, "upstream_invalid_response", message, upstream_status=201)
    assert_asked_vapi_once(fake_vapi, sales_coach)


@pytest.mark.parametrize(
    ("call", "kept_call_id"),
    [
        ({"status": "queued", "webCallUrl": "https://vapi.daily.co/Zx8kP2mQ7rT1"}, None),
        ({"id": CALL_ID, "status": "queued"}, CALL_ID),
        ({"id": CALL_ID, "webCallUrl": None}, CALL_ID),
        ({"id": 12345, "webCallUrl": "https://vapi.daily.co/Zx8kP2mQ7rT1"}, None),
        ({"id": "", "webCallUrl": "https://vapi.daily.co/Zx8kP2mQ7rT1"}, None),
        ({"id": CALL_ID, "webCallUrl": ""}, CALL_ID),
        ({"id": "x" * 65, "webCallUrl": "https://vapi.daily.co/Zx8kP2mQ7rT1"}, None),
    ],
    ids=["no-id", "no-webCallUrl", "null-webCallUrl", "numeric-id", "empty-id", "empty-webCallUrl", "id-too-long"],
)
def test_it_answers_502_when_vapis_answer_is_not_a_usable_call(client, sales_coach, fake_vapi, call, kept_call_id):
    fake_vapi.reply(201, call)

    response = post_call(client, START)

    message = "Vapi created the call but its answer has no id or webCallUrl."
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert response.json() == error_body(response, 502, "upstream_invalid_response", message)
    # A usable id is kept: the call may exist at Vapi, and staff need it to find and end it.
    assert row(response) == failed_row(
        502, "upstream_invalid_response", message, upstream_status=201, vapi_call_id=kept_call_id
    )
    assert_asked_vapi_once(fake_vapi, sales_coach)


def test_it_answers_502_when_vapi_returns_a_call_id_already_in_the_log(client, sales_coach, fake_vapi):
    first = post_call(client, START)
    assert first.status_code == HTTPStatus.CREATED

    response = post_call(client, START)

    message = "Vapi answered with a call id the call log already holds."
    assert response.status_code == HTTPStatus.BAD_GATEWAY
    assert response.json() == error_body(response, 502, "upstream_invalid_response", message)
    log = CallLog.objects.get(request_id=response["X-Request-ID"])
    assert (log.outcome, log.status_code, log.upstream_status, log.error_code, log.error_detail, log.vapi_call_id) == (
        "failed",
        502,
        201,
        "upstream_invalid_response",
        message,
        None,
    )
    assert CallLog.objects.get(request_id=first["X-Request-ID"]).vapi_call_id == CALL_ID


def test_it_accepts_a_gzip_compressed_answer_and_sends_none_of_vapis_headers_on(client, sales_coach, fake_vapi):
    fake_vapi.reply(
        201,
        content=gzip.compress(json.dumps(load_fixture("vapi_call_web_201.json")).encode()),
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Content-Encoding": "gzip",
            "Set-Cookie": "AWSALB=sticky-abc; Path=/; HttpOnly",
            "Connection": "keep-alive",
            "Keep-Alive": "timeout=5",
            "Transfer-Encoding": "chunked",
            "Server": "cloudflare",
            "Via": "1.1 vapi-edge",
            "X-Vapi-Trace-Id": "trace-123",
        },
    )

    response = post_call(client, START, HTTP_ORIGIN=ORIGIN)

    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["id"] == CALL_ID
    assert response.json()["webCallUrl"] == "https://vapi.daily.co/Zx8kP2mQ7rT1"
    assert response["Content-Type"] == "application/json"
    for name in (
        "Content-Encoding",
        "Set-Cookie",
        "Connection",
        "Keep-Alive",
        "Transfer-Encoding",
        "Server",
        "Via",
        "X-Vapi-Trace-Id",
    ):
        assert name not in response, name
    assert response.cookies == {}
    assert int(response["Content-Length"]) == len(response.content)
    log = CallLog.objects.get()
    assert (log.outcome, log.status_code, log.upstream_status, log.vapi_call_id) == ("created", 201, 201, CALL_ID)


@pytest.mark.parametrize(
    "failure",
    [
        lambda fake: fake.raise_error(httpx.ConnectError),
        lambda fake: fake.raise_error(httpx.ReadTimeout),
        lambda fake: fake.raise_error(httpx.ConnectTimeout),
        lambda fake: fake.reply(500, {"message": "Internal server error"}),
        lambda fake: fake.reply(503, {"message": "Service Unavailable"}, headers={"Retry-After": "1"}),
        lambda fake: fake.reply(429, {"message": "Too Many Requests"}, headers={"Retry-After": "1"}),
        lambda fake: fake.reply(201, content=b"not json"),
    ],
    ids=["connect-error", "read-timeout", "connect-timeout", "500", "503", "429", "bad-201"],
)
def test_it_never_retries_a_call_start(client, sales_coach, fake_vapi, failure):
    failure(fake_vapi)

    first = post_call(client, START)
    second = post_call(client, START)

    assert first.status_code >= 400 and second.status_code >= 400
    assert len(fake_vapi.requests) == 2
    assert CallLog.objects.filter(outcome="failed").count() == 2


def test_it_answers_503_and_asks_vapi_nothing_without_a_key(client, sales_coach, fake_vapi, settings):
    settings.VAPI_API_KEY = ""

    response = post_call(client, START)

    message = "The proxy has no Vapi API key configured (VAPI_API_KEY), so it cannot start calls."
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json() == error_body(response, 503, "vapi_key_missing", message)
    assert fake_vapi.requests == []
    assert row(response) == {
        "outcome": "rejected",
        "status_code": 503,
        "upstream_status": None,
        "error_code": "vapi_key_missing",
        "error_detail": message,
        "vapi_call_id": None,
    }
    log = CallLog.objects.get()
    assert (log.user_id, log.assistant_type, log.assistant) == ("bob", "sales-coach", sales_coach.default_assistant)


def test_vapi_receives_only_headers_the_proxy_builds_itself(client, sales_coach, fake_vapi):
    response = post_call(
        client,
        START,
        HTTP_AUTHORIZATION=f"Bearer {CLIENT_TOKEN}",
        HTTP_COOKIE=f"sessionid={CLIENT_TOKEN}; csrftoken=abc",
        HTTP_X_FORWARDED_FOR="203.0.113.7",
        HTTP_X_REAL_IP="203.0.113.7",
        HTTP_ORIGIN=ORIGIN,
        HTTP_REFERER=f"{ORIGIN}/coach",
        HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",
        HTTP_ACCEPT_LANGUAGE="de-DE",
        HTTP_X_REQUEST_ID="client-chosen-id",
        HTTP_X_VAPI_SECRET=CLIENT_TOKEN,
        HTTP_CONNECTION="Upgrade",
        HTTP_UPGRADE="websocket",
        HTTP_PROXY_AUTHORIZATION=f"Basic {CLIENT_TOKEN}",
    )

    assert response.status_code == HTTPStatus.CREATED
    [sent] = fake_vapi.requests
    assert sorted(sent.headers.keys()) == [
        "accept",
        "accept-encoding",
        "authorization",
        "connection",
        "content-length",
        "content-type",
        "host",
        "user-agent",
    ]
    assert sent.headers["authorization"] == f"Bearer {TEST_VAPI_KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["user-agent"].startswith("vapi-proxy")
    assert sent.headers["host"] == "vapi.test"
    assert sent.headers["accept"] == "application/json"
    assert sent.headers["connection"] == "keep-alive"
    assert int(sent.headers["content-length"]) == len(sent.content)
    upstream_text = str(sent.url) + repr(sent.headers.raw) + sent.content.decode()
    for client_value in (CLIENT_TOKEN, "203.0.113.7", ORIGIN, "Mozilla", "de-DE", "client-chosen-id", "websocket"):
        assert client_value not in upstream_text, client_value


def test_the_client_never_sees_the_assistant_config_overrides_or_monitor_urls(client, sales_coach, fake_vapi):
    response = post_call(client, START)

    assert response.status_code == HTTPStatus.CREATED
    assert sorted(response.json()) == [
        "artifactPlan",
        "assistant",
        "createdAt",
        "id",
        "status",
        "transport",
        "type",
        "webCallUrl",
    ]
    assert response.json()["assistant"] == {"voice": {"provider": "vapi"}}
    text = response.content.decode()
    for hidden in (
        "SECRET SYSTEM PROMPT",
        "gpt-4o-mini",
        "firstMessage",
        "assistantOverrides",
        "variableValues",
        "customer123",
        "monitor",
        "listenUrl",
        "controlUrl",
        "phone-call-websocket",
        "orgId",
        "costBreakdown",
    ):
        assert hidden not in text, hidden


def test_jwt_mode_sends_vapi_a_token_signed_with_the_key_instead_of_the_key(client, sales_coach, fake_vapi, settings):
    settings.VAPI_API_KEY = JWT_KEY
    settings.VAPI_UPSTREAM_AUTH = "jwt"
    settings.VAPI_ORG_ID = "org-0000-test"

    response = post_call(client, START)

    assert response.status_code == HTTPStatus.CREATED
    [sent] = fake_vapi.requests
    scheme, token = sent.headers["authorization"].split(" ")
    assert scheme == "Bearer"
    claims = jwt.decode(token, JWT_KEY, algorithms=["HS256"])
    assert claims["orgId"] == "org-0000-test"
    assert claims["token"] == {"tag": "private"}
    assert claims["exp"] > time.time()
    assert JWT_KEY not in repr(sent.headers.raw) + sent.content.decode()
    assert CallLog.objects.get().outcome == "created"
