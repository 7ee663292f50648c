"""The Vapi key (and in JWT mode the tokens signed with it) never leaves the proxy: not in a response,
a call-log row or a log record, whatever Vapi answers; and the system check speaks up when the key
setup is incomplete."""

import logging
from http import HTTPStatus

import httpx
import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from calls.apps import check_vapi_settings
from calls.models import CallLog
from calls.vapi import use_vapi_transport
from tests.conftest import load_fixture, post_call

KEY = "test-vapi-key-that-must-never-leak-0001"
START = {"assistant": {"userId": "bob", "assistantType": "sales-coach"}}


@pytest.fixture(autouse=True)
def secret_key_settings(vapi_settings, fake_vapi):
    vapi_settings.VAPI_API_KEY = KEY
    vapi_settings.VAPI_ORG_ID = "org-0000-test"
    return vapi_settings


@pytest.fixture(params=["private_key", "jwt"])
def upstream_auth(request, secret_key_settings):
    secret_key_settings.VAPI_UPSTREAM_AUTH = request.param
    return request.param


@pytest.fixture
def captured(caplog):
    """Every record any logger writes, at DEBUG, SQL with its parameters included."""
    caplog.set_level(logging.DEBUG)
    for name in ("calls", "django", "django.request", "django.db.backends", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    django_logger = logging.getLogger("django")  # does not propagate to the root logger caplog listens on
    django_logger.addHandler(caplog.handler)
    try:
        with CaptureQueriesContext(connection) as queries:
            yield caplog, queries
    finally:
        django_logger.removeHandler(caplog.handler)


def echo(text):
    return f"Invalid Key: {text}. Hot tip: Bearer {text}"


def call(**response):
    return lambda fake: fake.reply(**response)


def fails(exc):
    def setup(fake):
        fake.raise_error(exc)

    return setup


class KeyInMessageError(httpx.LocalProtocolError):
    def __init__(self, message, *, request):
        super().__init__(f"Illegal header value b'Bearer {KEY}'", request=request)


UPSTREAM = {
    "created": call(status=201, json_body=load_fixture("vapi_call_web_201.json")),
    "unreachable": fails(httpx.ConnectError),
    "read-timeout": fails(httpx.ReadTimeout),
    "connect-timeout": fails(httpx.ConnectTimeout),
    "transport-error-naming-the-key": fails(KeyInMessageError),
    "401-echoing-key": call(status=401, json_body={"statusCode": 401, "message": echo(KEY), "error": "Unauthorized"}),
    "403": call(status=403, json_body={"statusCode": 403, "message": "Forbidden"}),
    "429-echoing-key": call(status=429, json_body={"message": echo(KEY)}, headers={"Retry-After": "3"}),
    "concurrency-echoing-key": call(status=400, json_body={"message": f"Over Concurrency Limit for {KEY}."}),
    "400-list-echoing-key": call(status=400, json_body={"message": [echo(KEY), f"key={KEY}"]}),
    "404-echoing-key": call(status=404, json_body={"message": echo(KEY)}),
    "500-echoing-key": call(status=500, json_body={"message": echo(KEY)}),
    "201-not-json-echoing-key": call(status=201, content=f"<html>{KEY}</html>".encode()),
    "201-without-id-echoing-key": call(status=201, json_body={"status": "queued", "error": echo(KEY)}),
}

REFUSED = {
    "invalid-json": {"body": b"{not json"},
    "wrong-content-type": {"body": b"userId=bob", "content_type": "application/x-www-form-urlencoded"},
    "missing-user": {"body": {"assistant": {"assistantType": "sales-coach"}}},
    "unknown-type": {"body": {"assistant": {"userId": "bob", "assistantType": "nope"}}},
    "client-override": {"body": {**START, "assistantOverrides": {"model": {"provider": "openai"}}}},
    "variable-not-allowed": {"body": {"userId": "bob", "assistantType": "sales-coach", "variableValues": {"x": "1"}}},
}


def tokens_sent(fake_vapi):
    return {
        request.headers["authorization"].removeprefix("Bearer ")
        for request in fake_vapi.requests
        if "authorization" in request.headers
    }


def assert_nowhere(secrets, responses, captured):
    caplog, queries = captured
    secrets = {secret for secret in secrets if secret}
    assert secrets
    places = []
    for response in responses:
        places.append(("response body", response.content.decode()))
        places.extend(("response header", f"{name}: {value}") for name, value in response.items())
    for log in CallLog.objects.all():
        places.extend(
            (f"call log {field.name}", str(getattr(log, field.attname))) for field in CallLog._meta.concrete_fields
        )
    for record in caplog.records:
        places.append((f"log record {record.name}", caplog.handler.format(record)))
        places.append((f"log record {record.name} args", repr(record.args)))
    places.extend(("SQL", query["sql"]) for query in queries.captured_queries)
    assert CallLog.objects.count() == len(responses)
    assert caplog.records
    for secret in secrets:
        leaked_in = [where for where, text in places if secret in text]
        assert leaked_in == []


@pytest.mark.parametrize("scenario", UPSTREAM)
def test_the_key_never_leaves_the_proxy_whatever_vapi_answers(
    client, sales_coach, fake_vapi, upstream_auth, captured, scenario
):
    UPSTREAM[scenario](fake_vapi)

    response = post_call(client, START, HTTP_ORIGIN="https://app.example.com")

    assert len(fake_vapi.requests) == 1
    if upstream_auth == "jwt":
        assert tokens_sent(fake_vapi) != {KEY}
    assert_nowhere({KEY, *tokens_sent(fake_vapi)}, [response], captured)


@pytest.mark.parametrize("scenario", REFUSED)
def test_the_key_never_leaves_the_proxy_when_it_refuses_a_request(
    client, sales_coach, fake_vapi, upstream_auth, captured, scenario
):
    request = REFUSED[scenario]

    response = post_call(client, request["body"], content_type=request.get("content_type", "application/json"))

    assert HTTPStatus.BAD_REQUEST <= response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR
    assert fake_vapi.requests == []
    assert_nowhere({KEY}, [response], captured)


def test_the_key_never_leaves_the_proxy_over_many_requests(client, sales_coach, fake_vapi, upstream_auth, captured):
    responses = []
    for scenario, setup in UPSTREAM.items():
        if scenario == "created":
            call_id = f"call-{len(responses)}"
            fake_vapi.reply(201, {**load_fixture("vapi_call_web_201.json"), "id": call_id})
        else:
            setup(fake_vapi)
        responses.append(post_call(client, START))
    responses.append(client.get("/call/web"))
    responses.append(client.put("/call/web", data=b"{}", content_type="application/json"))

    assert sorted({response.status_code for response in responses}) == [201, 400, 404, 405, 429, 502, 504]
    assert_nowhere({KEY, *tokens_sent(fake_vapi)}, responses, captured)


def test_the_jwt_vapi_echoes_back_is_scrubbed_like_the_key(client, sales_coach, secret_key_settings, captured):
    secret_key_settings.VAPI_UPSTREAM_AUTH = "jwt"
    seen = []

    def echo_token(request):
        token = request.headers["authorization"].removeprefix("Bearer ")
        seen.append(token)
        return httpx.Response(400, json={"statusCode": 400, "message": f"JWT {token} has no assistant scope"})

    use_vapi_transport(httpx.MockTransport(echo_token))

    response = post_call(client, START)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["message"] == "Vapi refused the call: JWT [redacted] has no assistant scope"
    assert len(seen) == 1
    assert_nowhere({KEY, *seen}, [response], captured)


def test_the_key_vapi_echoes_back_is_replaced_in_what_the_client_reads(client, sales_coach, fake_vapi):
    fake_vapi.reply(404, {"statusCode": 404, "message": f"No assistant for key {KEY}."})

    response = post_call(client, START)

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json() == {
        "statusCode": 404,
        "error": "Not Found",
        "message": "Vapi refused the call: No assistant for key [redacted].",
        "code": "upstream_rejected",
        "requestId": response["X-Request-ID"],
    }
    assert CallLog.objects.get().error_detail == "Vapi refused the call: No assistant for key [redacted]."


UPSTREAM_CHECKS = {"vapi_proxy.W001", "vapi_proxy.E001", "vapi_proxy.E002"}


def upstream_problems():
    return [problem for problem in check_vapi_settings(None) if problem.id in UPSTREAM_CHECKS]


def test_the_system_check_warns_when_the_key_is_missing(settings):
    settings.VAPI_API_KEY = ""

    assert [(problem.id, problem.level) for problem in upstream_problems()] == [("vapi_proxy.W001", checks.WARNING)]


def test_manage_py_check_reports_the_missing_key_without_failing(settings, capsys):
    settings.VAPI_API_KEY = ""

    call_command("check")

    assert "vapi_proxy.W001" in capsys.readouterr().err


def test_the_system_check_is_silent_with_a_key(settings):
    assert upstream_problems() == []


def test_jwt_mode_without_an_org_id_is_a_system_check_error(settings):
    settings.VAPI_UPSTREAM_AUTH = "jwt"
    settings.VAPI_ORG_ID = ""

    problems = upstream_problems()

    assert [(problem.id, problem.level) for problem in problems] == [("vapi_proxy.E002", checks.ERROR)]
    assert KEY not in problems[0].msg
    with pytest.raises(SystemCheckError, match=r"vapi_proxy\.E002"):
        call_command("check")


def test_jwt_mode_with_an_org_id_passes_the_system_check(settings):
    settings.VAPI_UPSTREAM_AUTH = "jwt"

    assert upstream_problems() == []
