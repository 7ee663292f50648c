"""The proxy's HTTP surface: refusals before resolution, request ids, methods, CORS, routes, crashes."""

import importlib
import io
import json
import logging
import re
from http import HTTPStatus

import pytest
from django.core.exceptions import PermissionDenied
from django.db import OperationalError
from django.http import Http404
from django.test import Client
from django.urls import clear_url_caches

import proxy_site.urls
from calls.middleware import RequestIdLogFilter
from calls.models import CallLog
from tests.conftest import error_body, post_call

ORIGIN = "https://app.example.com"
SDK_BODY = {"assistant": {"userId": "bob", "assistantType": "sales-coach"}}
CALL_ID = "3f1c9a52-6a7e-4c1b-9d1e-0c2f5e8b7a11"
INTERNAL_ERROR = "The proxy failed to handle this request; it has been logged."


@pytest.fixture
def client():
    # A browser calling the proxy has no CSRF token; Django's default test client skips that check.
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def console():
    """What the configured console log handler writes while the test runs."""
    handler = next(
        h for h in logging.getLogger().handlers if any(isinstance(f, RequestIdLogFilter) for f in h.filters)
    )
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


@pytest.fixture
def vapi_prefix(settings):
    original = settings.PROXY_PATH_PREFIX
    settings.PROXY_PATH_PREFIX = "vapi"
    _reload_urls()
    yield "vapi"
    settings.PROXY_PATH_PREFIX = original
    _reload_urls()


def _reload_urls():
    importlib.reload(proxy_site.urls)
    clear_url_caches()


def _lines(stream: io.StringIO) -> list[str]:
    """Log lines without their timestamp."""
    return [line.split(" ", 2)[2] for line in stream.getvalue().splitlines()]


def _row(response) -> tuple:
    log = CallLog.objects.get()
    assert log.request_id == response["X-Request-ID"]
    return (
        log.outcome,
        log.status_code,
        log.upstream_status,
        log.error_code,
        log.error_detail,
        log.user_id,
        log.assistant_type,
        log.assistant,
        log.origin,
        log.client_ip,
    )


# --- Refusals before the body is understood ------------------------------------------------------

REFUSALS = [
    pytest.param(
        "text/plain;charset=UTF-8",
        json.dumps(SDK_BODY).encode(),
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "Send the body as JSON with Content-Type: application/json (got 'text/plain').",
        id="text-plain",
    ),
    pytest.param(
        "application/x-www-form-urlencoded",
        b"userId=bob&assistantType=sales-coach",
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "Send the body as JSON with Content-Type: application/json (got 'application/x-www-form-urlencoded').",
        id="form-encoded",
    ),
    pytest.param(
        "",
        json.dumps(SDK_BODY).encode(),
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "Send the body as JSON with Content-Type: application/json (got 'none').",
        id="no-content-type",
    ),
    pytest.param(
        "application/json",
        b"",
        HTTPStatus.BAD_REQUEST,
        "empty_body",
        "The request body is empty; send a JSON object.",
        id="empty",
    ),
    pytest.param(
        "application/json",
        b" \r\n\t ",
        HTTPStatus.BAD_REQUEST,
        "empty_body",
        "The request body is empty; send a JSON object.",
        id="whitespace-only",
    ),
    pytest.param(
        "application/json",
        b'{"userId": ',
        HTTPStatus.BAD_REQUEST,
        "invalid_json",
        "The request body is not valid JSON (Expecting value at line 1 column 12).",
        id="truncated-json",
    ),
    pytest.param(
        "application/json",
        b'{"userId": "b\xffb", "assistantType": "sales-coach"}',
        HTTPStatus.BAD_REQUEST,
        "invalid_json",
        "The request body is not valid JSON (it is not UTF-8 text).",
        id="invalid-utf8",
    ),
    pytest.param(
        "application/json",
        json.dumps(SDK_BODY).encode("utf-16"),
        HTTPStatus.BAD_REQUEST,
        "invalid_json",
        "The request body is not valid JSON (it is not UTF-8 text).",
        id="utf16",
    ),
    pytest.param(
        "application/json",
        json.dumps([SDK_BODY]).encode(),
        HTTPStatus.BAD_REQUEST,
        "body_not_object",
        "The request body must be a JSON object.",
        id="array",
    ),
    pytest.param(
        "application/json",
        b'"sales-coach"',
        HTTPStatus.BAD_REQUEST,
        "body_not_object",
        "The request body must be a JSON object.",
        id="string",
    ),
]


@pytest.mark.parametrize(("content_type", "body", "status", "code", "message"), REFUSALS)
def test_it_refuses_bodies_it_cannot_read(client, sales_coach, fake_vapi, content_type, body, status, code, message):
    # CONTENT_TYPE is passed explicitly: the test client leaves it out when the body is empty.
    response = client.generic("POST", "/call/web", data=body, CONTENT_TYPE=content_type, HTTP_ORIGIN=ORIGIN)

    assert response.status_code == status
    assert response.json() == error_body(response, status, code, message)
    assert _row(response) == ("rejected", status, None, code, message, "", "", None, ORIGIN, "127.0.0.1")
    assert fake_vapi.requests == []


def test_it_refuses_a_body_over_the_size_limit(client, sales_coach, settings, fake_vapi):
    body = json.dumps(SDK_BODY)
    settings.CALL_MAX_BODY_BYTES = len(body) - 1

    response = post_call(client, body)

    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    message = f"The request body is larger than {len(body) - 1} bytes."
    assert response.json() == {
        "statusCode": 413,
        "error": "Request Entity Too Large",
        "message": message,
        "code": "body_too_large",
        "requestId": response["X-Request-ID"],
    }
    assert _row(response) == ("rejected", 413, None, "body_too_large", message, "", "", None, "", "127.0.0.1")
    assert fake_vapi.requests == []


def test_it_accepts_a_body_exactly_at_the_size_limit(client, sales_coach, settings, fake_vapi):
    body = json.dumps(SDK_BODY)
    settings.CALL_MAX_BODY_BYTES = len(body)

    response = post_call(client, body)

    assert response.status_code == HTTPStatus.CREATED
    assert len(fake_vapi.requests) == 1


# --- Request ids ------------------------------------------------------------------------------------

REQUESTS = {
    "call created": lambda client: post_call(client, SDK_BODY),
    "call refused": lambda client: post_call(client, b"[]"),
    "method not allowed": lambda client: client.get("/call/web"),
    "preflight": lambda client: client.options(
        "/call/web", HTTP_ORIGIN=ORIGIN, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    ),
    "health": lambda client: client.get("/healthz"),
    "root": lambda client: client.get("/"),
    "unknown route": lambda client: client.get("/nope"),
    "disallowed host": lambda client: client.get("/healthz", HTTP_HOST="evil.example"),
    "admin page": lambda client: client.get("/admin/login/"),
}


@pytest.mark.parametrize("send", REQUESTS.values(), ids=REQUESTS.keys())
def test_every_response_carries_a_fresh_request_id(client, sales_coach, send):
    first, second = send(client), send(client)

    assert re.fullmatch(r"[0-9a-f]{32}", first["X-Request-ID"])
    assert re.fullmatch(r"[0-9a-f]{32}", second["X-Request-ID"])
    assert first["X-Request-ID"] != second["X-Request-ID"]


def test_log_lines_of_a_refused_call_carry_its_request_id(client, db, console):
    response = post_call(client, "hello", content_type="text/plain")

    request_id = response["X-Request-ID"]
    assert _lines(console) == [
        f"WARNING calls [{request_id}] call rejected: status=415 code=unsupported_media_type user=- type=- "
        "detail=Send the body as JSON with Content-Type: application/json (got 'text/plain').",
        f"WARNING django.request [{request_id}] Unsupported Media Type: /call/web",
    ]
    assert CallLog.objects.get().request_id == request_id


def test_log_lines_of_a_created_call_carry_its_request_id(client, sales_coach, console):
    response = post_call(client, SDK_BODY)

    request_id = response["X-Request-ID"]
    lines = _lines(console)
    assert [line for line in lines if f"[{request_id}]" not in line] == []
    assert any(
        line.startswith(f"INFO calls [{request_id}] call created: user=bob type=sales-coach vapi_call={CALL_ID} ")
        for line in lines
    )
    assert CallLog.objects.get().request_id == request_id


def test_the_log_line_of_an_unknown_route_carries_its_request_id(client, console):
    response = client.get("/nope")

    assert _lines(console) == [f"WARNING django.request [{response['X-Request-ID']}] Not Found: /nope"]


def test_a_client_cannot_choose_its_request_id(client, sales_coach):
    response = post_call(client, SDK_BODY, HTTP_X_REQUEST_ID="attacker-chosen")

    assert response["X-Request-ID"] != "attacker-chosen"
    assert CallLog.objects.get().request_id == response["X-Request-ID"]


def test_api_answers_set_no_cookies(client, sales_coach):
    # A cookie the CSRF middleware cannot parse makes it issue a new one unless the proxy stops it.
    client.cookies["csrftoken"] = "host-app-token"
    client.cookies["sessionid"] = "host-app-session"

    responses = [post_call(client, SDK_BODY), post_call(client, b"[]"), client.get("/call/web"), client.get("/nope")]

    assert [r.cookies for r in responses] == [{}, {}, {}, {}]
    assert [r.has_header("Set-Cookie") for r in responses] == [False, False, False, False]


# --- Methods and CORS -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_it_answers_other_methods_with_405_and_logs_them(client, sales_coach, fake_vapi, method):
    response = client.generic(method, "/call/web", HTTP_ORIGIN=ORIGIN)

    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    message = f"{method} is not allowed here; start a call with POST."
    assert response.json() == {
        "statusCode": 405,
        "error": "Method Not Allowed",
        "message": message,
        "code": "method_not_allowed",
        "requestId": response["X-Request-ID"],
    }
    assert response["Allow"] == "POST, OPTIONS"
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert _row(response) == ("rejected", 405, None, "method_not_allowed", message, "", "", None, ORIGIN, "127.0.0.1")
    assert fake_vapi.requests == []


@pytest.mark.parametrize("path", ["/call/web", "http://testserver//call/web", "/call/web/"])
def test_it_answers_a_preflight_from_an_allowed_origin(client, db, fake_vapi, path):
    response = client.options(
        path,
        HTTP_ORIGIN=ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )

    assert response.status_code == HTTPStatus.OK
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in _header_list(response, "Access-Control-Allow-Methods")
    assert {"authorization", "content-type"} <= set(_header_list(response, "Access-Control-Allow-Headers"))
    assert "Access-Control-Allow-Credentials" not in response
    assert "origin" in _header_list(response, "Vary")
    assert CallLog.objects.count() == 0
    assert fake_vapi.requests == []


def test_a_preflight_from_another_origin_is_not_allowed(client, db, fake_vapi):
    response = client.options(
        "/call/web",
        HTTP_ORIGIN="https://evil.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )

    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Methods" not in response
    assert "Access-Control-Allow-Headers" not in response
    assert CallLog.objects.count() == 0


def test_a_call_from_another_origin_gets_no_cors_headers(client, sales_coach):
    response = post_call(client, SDK_BODY, HTTP_ORIGIN="https://evil.example.com")

    assert "Access-Control-Allow-Origin" not in response
    assert CallLog.objects.get().origin == "https://evil.example.com"


def test_an_error_to_an_allowed_origin_is_readable_by_the_page(client, sales_coach, fake_vapi):
    response = post_call(client, {"assistant": {"userId": "bob", "assistantType": "nope"}}, HTTP_ORIGIN=ORIGIN)

    assert response.status_code == HTTPStatus.NOT_FOUND
    message = "Assistant type 'nope' does not exist or is not active."
    assert response.json() == {
        "statusCode": 404,
        "error": "Not Found",
        "message": message,
        "code": "unknown_assistant_type",
        "requestId": response["X-Request-ID"],
    }
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert "x-request-id" in _header_list(response, "Access-Control-Expose-Headers")
    assert "Access-Control-Allow-Credentials" not in response
    assert _row(response) == (
        "rejected", 404, None, "unknown_assistant_type", message, "bob", "nope", None, ORIGIN, "127.0.0.1"
    )
    assert fake_vapi.requests == []


def test_a_created_call_is_readable_by_the_page(client, sales_coach):
    response = post_call(client, SDK_BODY, HTTP_ORIGIN=ORIGIN)

    assert response.status_code == HTTPStatus.CREATED
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert "x-request-id" in _header_list(response, "Access-Control-Expose-Headers")
    assert "Access-Control-Allow-Credentials" not in response


def _header_list(response, name: str) -> list[str]:
    return [part.strip() for part in response.get(name, "").split(",") if part.strip()]


# --- Routes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/call/web", "http://testserver//call/web", "/call/web/", "http://testserver//call/web/"]
)
def test_the_sdk_reaches_the_call_view_however_its_base_url_ends(client, sales_coach, fake_vapi, path):
    response = post_call(client, SDK_BODY, path=path)

    assert response.status_code == HTTPStatus.CREATED
    assert response.json()["id"] == CALL_ID
    assert len(fake_vapi.requests) == 1
    assert _row(response)[:2] == ("created", 201)


@pytest.mark.parametrize(
    "path", ["/vapi/call/web", "http://testserver/vapi//call/web", "/vapi/call/web/", "/call/web"]
)
def test_the_call_view_is_served_under_the_path_prefix(client, sales_coach, fake_vapi, vapi_prefix, path):
    response = post_call(client, SDK_BODY, path=path, HTTP_ORIGIN=ORIGIN)

    assert response.status_code == HTTPStatus.CREATED
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert len(fake_vapi.requests) == 1
    assert _row(response)[:2] == ("created", 201)


def test_a_preflight_under_the_path_prefix_is_answered(client, vapi_prefix):
    response = client.options("/vapi/call/web", HTTP_ORIGIN=ORIGIN, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")

    assert response.status_code == HTTPStatus.OK
    assert response["Access-Control-Allow-Origin"] == ORIGIN


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("POST", "/nope"),
        ("POST", "/vapi/call/web"),  # a prefix that is not configured
        ("POST", "/call/webs"),
        ("POST", "/call/web/extra"),
        ("GET", "/healthz/extra"),
    ],
)
def test_an_unknown_route_is_a_json_404(client, sales_coach, settings, fake_vapi, debug, method, path):
    settings.DEBUG = debug

    response = client.generic(method, path, data=json.dumps(SDK_BODY), content_type="application/json")

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json() == {
        "statusCode": 404,
        "error": "Not Found",
        "message": f"There is nothing at {path}. Calls start with POST /call/web.",
        "code": "not_found",
        "requestId": response["X-Request-ID"],
    }
    assert CallLog.objects.count() == 0
    assert fake_vapi.requests == []


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_a_disallowed_host_gets_a_json_400(client, sales_coach, settings, fake_vapi, debug):
    settings.DEBUG = debug

    response = post_call(client, SDK_BODY, HTTP_HOST="evil.example")

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "statusCode": 400,
        "error": "Bad Request",
        "message": "The request was refused before it reached the proxy (for example an unknown Host header).",
        "code": "bad_request",
        "requestId": response["X-Request-ID"],
    }
    assert CallLog.objects.count() == 0
    assert fake_vapi.requests == []


@pytest.mark.parametrize("path", ["/", "/healthz"])
def test_the_read_only_routes_refuse_post_with_a_json_405(client, path):
    response = client.post(path, data="{}", content_type="application/json")

    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert response.json() == {
        "statusCode": 405,
        "error": "Method Not Allowed",
        "message": "This method is not allowed here.",
        "code": "method_not_allowed",
        "requestId": response["X-Request-ID"],
    }
    assert response["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_the_webhook_route_refuses_other_methods_with_a_json_405(client, db, method):
    response = client.generic(method, "/webhooks/vapi")

    message = f"{method} is not allowed here; Vapi sends its messages with POST."
    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert response.json() == error_body(response, 405, "method_not_allowed", message)
    assert response["Allow"] == "POST"


def test_the_admin_still_serves_html(client):
    response = client.get("/admin/login/")

    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert b"<form" in response.content


def test_an_unknown_admin_page_stays_html(admin_client):
    response = admin_client.get("/admin/no-such-page/")

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response["Content-Type"].startswith("text/html")


def test_health_checks_the_database(client, db):
    response = client.get("/healthz")

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {"status": "ok", "database": "ok"}


def test_health_reports_an_unreachable_database(client, monkeypatch):
    class BrokenConnection:
        def cursor(self):
            raise OperationalError("connection refused")

    monkeypatch.setattr("calls.views.connection", BrokenConnection())

    response = client.get("/healthz")

    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json() == {
        "statusCode": 503,
        "error": "Service Unavailable",
        "message": "The database cannot be reached.",
        "code": "database_unavailable",
        "requestId": response["X-Request-ID"],
    }


def test_the_root_says_the_proxy_is_running(client):
    response = client.get("/")

    assert response.status_code == HTTPStatus.OK
    assert response.json() == {
        "service": "vapi-proxy",
        "status": "running",
        "callWebUrl": "http://testserver/call/web",
        "vapiKeyConfigured": True,
    }


# --- Crashes ----------------------------------------------------------------------------------------


def _assert_internal_error(response):
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "statusCode": 500,
        "error": "Internal Server Error",
        "message": INTERNAL_ERROR,
        "code": "internal_error",
        "requestId": response["X-Request-ID"],
    }
    assert b"Traceback" not in response.content
    assert b"database is on fire" not in response.content


def _explode(*args, **kwargs):
    raise RuntimeError("database is on fire")


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_a_crash_inside_the_service_is_a_json_500_and_a_failed_row(
    client, sales_coach, settings, fake_vapi, monkeypatch, debug
):
    settings.DEBUG = debug
    monkeypatch.setattr("calls.services.resolve_assistant", _explode)

    response = post_call(client, SDK_BODY, HTTP_ORIGIN=ORIGIN)

    _assert_internal_error(response)
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert _row(response) == (
        "failed", 500, None, "internal_error", INTERNAL_ERROR, "bob", "sales-coach", None, ORIGIN, "127.0.0.1"
    )
    assert fake_vapi.requests == []


def test_a_crash_while_asking_vapi_settles_the_pending_row_as_failed(client, sales_coach, fake_vapi):
    class TransportCrash(Exception):
        def __init__(self, message, *, request):
            super().__init__(message)

    fake_vapi.raise_error(TransportCrash)

    response = post_call(client, SDK_BODY)

    _assert_internal_error(response)
    assert _row(response) == (
        "failed",
        500,
        None,
        "internal_error",
        INTERNAL_ERROR,
        "bob",
        "sales-coach",
        sales_coach.default_assistant,
        "",
        "127.0.0.1",
    )
    assert len(fake_vapi.requests) == 1


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_a_crash_in_the_call_view_is_a_json_500(client, settings, fake_vapi, monkeypatch, debug):
    settings.DEBUG = debug
    monkeypatch.setattr("calls.views.call_web_start", _explode)

    response = post_call(client, SDK_BODY)

    _assert_internal_error(response)
    assert fake_vapi.requests == []


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_a_crash_in_a_plain_view_is_a_json_500(client, settings, monkeypatch, debug):
    settings.DEBUG = debug
    monkeypatch.setattr("calls.views.get_vapi_client", _explode)

    response = client.get("/")

    _assert_internal_error(response)


def test_it_answers_json_whatever_the_accept_header_says(client, sales_coach, fake_vapi):
    response = post_call(client, SDK_BODY, HTTP_ACCEPT="text/html")

    assert response.status_code == HTTPStatus.CREATED
    assert response["Content-Type"] == "application/json"
    assert response.json()["id"] == "3f1c9a52-6a7e-4c1b-9d1e-0c2f5e8b7a11"


@pytest.mark.parametrize(
    "raised, status, code, message",
    [
        (Http404("no such assistant row 42"), 404, "not_found", "Not found."),
        (PermissionDenied("staff only: row 42"), 403, "permission_denied", "You do not have permission to perform this action."),
    ],
    ids=["Http404", "PermissionDenied"],
)
def test_djangos_own_refusals_in_an_api_view_keep_their_status(client, db, monkeypatch, raised, status, code, message):
    def refuse(self, request):
        raise raised

    monkeypatch.setattr("calls.views.HealthView.get", refuse)

    response = client.get("/healthz")

    assert response.status_code == status
    assert response.json() == error_body(response, status, code, message)
    assert b"row 42" not in response.content
