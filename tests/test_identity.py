"""Who may start a call: the three identity modes (jwt, session, open), the Origin check, the client
address behind a load balancer, the start-up guards, and the local `mint_token` command."""

import base64
import io
import json
import logging
import os
import subprocess
import sys
import time
from http import HTTPStatus

import jwt
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from assistants.models import AssistantType
from calls.apps import check_vapi_settings
from calls.management.commands.mint_token import Command as MintToken
from calls.models import CallLog
from tests.conftest import PERMANENT_ID, TEST_VAPI_KEY, post_call

pytestmark = pytest.mark.django_db

SECRET = "identity-test-hs256-secret-0001-aaaaaaaa"
NEXT_SECRET = "identity-test-hs256-secret-0002-bbbbbbbb"
REMOVED_SECRET = "identity-test-hs256-secret-0000-zzzzzzzz"
START = {"assistant": {"assistantType": "sales-coach"}}  # what vapi.start({assistantType}) sends
OWN_ORIGIN = "http://testserver"
VAPI_CALL_ID = "3f1c9a52-6a7e-4c1b-9d1e-0c2f5e8b7a11"
CREATED_ANSWER = {
    "id": VAPI_CALL_ID,
    "webCallUrl": "https://vapi.daily.co/Zx8kP2mQ7rT1",
    "status": "queued",
    "type": "webCall",
    "createdAt": "2026-12-03T10:15:00.000Z",
    "artifactPlan": {"recordingEnabled": True, "videoRecordingEnabled": False},
    "transport": {"provider": "daily", "assistantVideoEnabled": False, "callUrl": "https://vapi.daily.co/Zx8kP2mQ7rT1"},
    "assistant": {"voice": {"provider": "vapi"}},
}
DROP = object()

TOKEN_MISSING = "No token: create the SDK with new Vapi(token, proxyUrl), using a token your backend minted."
NOT_BEARER = "The Authorization header must be 'Bearer <token>'."
MALFORMED = "The token is not valid: it is malformed."
EXPIRED = "The token has expired; get a new one from your backend."
BAD_SIGNATURE = "The token's signature does not match."
NOT_HS256 = "The token is not valid: it is not signed with HS256."
USER_MISMATCH = (
    "The body's userId is not the user the token (or session) belongs to; leave userId out or send the same."
)
SESSION_ORIGIN = "In session mode calls must come from this site's own pages (same-origin Origin header)."
NOT_LOGGED_IN = "Log in to start a call."


def mint(*, secret=SECRET, algorithm="HS256", **claims) -> str:
    """A token like a customer's backend mints: sub "bob", valid for ten minutes; DROP leaves a claim out."""
    now = int(time.time())
    payload = {"sub": "bob", "iat": now, "exp": now + 600, **claims}
    return jwt.encode({name: value for name, value in payload.items() if value is not DROP}, secret, algorithm=algorithm)


def forged(header: dict, payload: dict, signature: bytes = b"not-a-signature") -> str:
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return ".".join([part(json.dumps(header).encode()), part(json.dumps(payload).encode()), part(signature)])


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def upstream_body(sales_coach, log, *, user_id: str) -> dict:
    return {
        "assistant": sales_coach.default_assistant.config,
        "assistantOverrides": {
            "variableValues": {"companyName": "Acme", "customerName": "there"},
            "metadata": {"userId": user_id, "assistantType": "sales-coach", "callLogId": log.pk},
        },
    }


def assert_started(response, fake_vapi, sales_coach, *, user_id: str) -> CallLog:
    """201 with what the SDK reads, a `created` row for this user, and one Vapi request with the right body."""
    assert response.status_code == HTTPStatus.CREATED
    assert response.json() == CREATED_ANSWER
    log = CallLog.objects.get()
    assert (log.outcome, log.status_code, log.error_code, log.error_detail, log.user_id, log.assistant_type) == (
        "created",
        201,
        "",
        "",
        user_id,
        "sales-coach",
    )
    assert log.assistant == sales_coach.default_assistant
    assert len(fake_vapi.requests) == 1
    assert fake_vapi.requests[0].headers["authorization"] == f"Bearer {TEST_VAPI_KEY}"
    assert fake_vapi.last_json == upstream_body(sales_coach, log, user_id=user_id)
    return log


def assert_refused(response, fake_vapi, status: HTTPStatus, code: str, message: str, *, user_id="", assistant_type=""):
    """The JSON error the app's `error` event shows, one `rejected` row saying the same, nothing sent to Vapi."""
    assert response.status_code == status
    assert response.json() == {
        "statusCode": status.value,
        "error": status.phrase,
        "message": message,
        "code": code,
        "requestId": response["X-Request-ID"],
    }
    log = CallLog.objects.get()
    assert (
        log.outcome,
        log.status_code,
        log.upstream_status,
        log.error_code,
        log.error_detail,
        log.user_id,
        log.assistant_type,
        log.assistant,
        log.vapi_call_id,
    ) == ("rejected", status.value, None, code, message, user_id, assistant_type, None, None)
    assert fake_vapi.requests == []
    return log


@pytest.fixture
def jwt_mode(settings):
    settings.PROXY_IDENTITY = "jwt"
    settings.PROXY_JWT_SECRETS = [SECRET]
    settings.PROXY_JWT_AUDIENCE = ""
    settings.PROXY_JWT_ISSUER = ""
    settings.PROXY_JWT_LEEWAY_SECONDS = 0
    return settings


@pytest.fixture
def session_mode(settings):
    settings.PROXY_IDENTITY = "session"
    return settings


@pytest.fixture
def csrf_client():
    """A client that enforces CSRF like a browser without a CSRF token would meet it."""
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def sam(django_user_model):
    return django_user_model.objects.create_user("sam")


# --- jwt mode: accepted -------------------------------------------------------------------------


@pytest.mark.usefixtures("jwt_mode")
def test_jwt_a_valid_token_starts_a_call_for_its_sub(client, sales_coach, fake_vapi):
    response = post_call(client, START, **bearer(mint(sub="bob")))

    assert_started(response, fake_vapi, sales_coach, user_id="bob")


@pytest.mark.usefixtures("jwt_mode")
@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"assistant": {"userId": "bob", "assistantType": "sales-coach"}}, id="assistant"),
        pytest.param(
            {"assistantId": "sales-coach", "assistantOverrides": {"metadata": {"userId": "bob"}}}, id="metadata"
        ),
    ],
)
def test_jwt_a_body_userid_equal_to_sub_is_accepted(client, sales_coach, fake_vapi, body):
    response = post_call(client, body, **bearer(mint(sub="bob")))

    assert_started(response, fake_vapi, sales_coach, user_id="bob")


@pytest.mark.usefixtures("jwt_mode")
def test_jwt_the_scheme_is_case_insensitive(client, sales_coach, fake_vapi):
    response = post_call(client, START, HTTP_AUTHORIZATION=f"bearer {mint()}")

    assert_started(response, fake_vapi, sales_coach, user_id="bob")


@pytest.mark.usefixtures("jwt_mode")
def test_jwt_the_user_gets_their_own_mapping(client, alice, fake_vapi):
    response = post_call(client, START, **bearer(mint(sub="alice")))

    assert response.status_code == HTTPStatus.CREATED
    log = CallLog.objects.get()
    assert (log.outcome, log.user_id, log.assistant) == ("created", "alice", alice.assistant)
    assert fake_vapi.last_json == {
        "assistantId": PERMANENT_ID,
        "assistantOverrides": {
            "variableValues": {"companyName": "Acme", "customerName": "Alice A."},
            "metadata": {"userId": "alice", "assistantType": "sales-coach", "callLogId": log.pk},
        },
    }


# --- jwt mode: refused --------------------------------------------------------------------------


@pytest.mark.usefixtures("jwt_mode")
@pytest.mark.parametrize("headers", [{}, {"HTTP_AUTHORIZATION": ""}], ids=["no-header", "empty-header"])
def test_jwt_without_a_token_is_401_token_missing(client, sales_coach, fake_vapi, headers):
    response = post_call(client, START, **headers)

    assert_refused(response, fake_vapi, HTTPStatus.UNAUTHORIZED, "token_missing", TOKEN_MISSING)


@pytest.mark.usefixtures("jwt_mode")
@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Basic Ym9iOnBhc3N3b3Jk", id="basic"),
        pytest.param("Token {token}", id="other-scheme"),
        pytest.param("{token}", id="no-scheme"),
        pytest.param("Bearer", id="bearer-alone"),
        pytest.param("Bearer    ", id="bearer-and-spaces"),
    ],
)
def test_jwt_an_authorization_header_that_is_not_bearer_is_401(client, sales_coach, fake_vapi, value):
    response = post_call(client, START, HTTP_AUTHORIZATION=value.format(token=mint()))

    assert_refused(response, fake_vapi, HTTPStatus.UNAUTHORIZED, "token_invalid", NOT_BEARER)


@pytest.mark.usefixtures("jwt_mode")
@pytest.mark.parametrize(
    "token",
    [
        pytest.param("not-a-jwt", id="one-part"),
        pytest.param("a.b", id="two-parts"),
        pytest.param("a.b.c", id="three-garbage-parts"),
        pytest.param("bm90IGpzb24.bm90IGpzb24.c2ln", id="header-not-json"),
        pytest.param(jwt.api_jws.encode(b"not json", SECRET, algorithm="HS256"), id="signed-payload-not-json"),
        pytest.param(jwt.api_jws.encode(b'["bob"]', SECRET, algorithm="HS256"), id="signed-payload-not-an-object"),
        pytest.param("é.é.é", id="not-ascii"),
    ],
)
def test_jwt_a_malformed_token_is_401_token_invalid(client, sales_coach, fake_vapi, token):
    response = post_call(client, START, **bearer(token))

    assert_refused(response, fake_vapi, HTTPStatus.UNAUTHORIZED, "token_invalid", MALFORMED)


@pytest.mark.usefixtures("jwt_mode")
def test_jwt_an_expired_token_is_401_token_expired(client, sales_coach, fake_vapi):
    response = post_call(client, START, **bearer(mint(exp=int(time.time()) - 60)))

    assert_refused(response, fake_vapi, HTTPStatus.UNAUTHORIZED, "token_expired", EXPIRED)


@pytest.mark.usefixtures("jwt_mode")
def test_jwt_a_token_signed_with_another_secret_is_401(client, sales_coach, fake_vapi):
    response = post_call(client, START, **bearer(mint(secret="someone-elses-secret-of-forty-characters")))

    assert_refused(response, fake_vapi, HTTPStatus.UNAUTHORIZED, "token_invalid", BAD_SIGNATURE)


@pytest.mark.usefixtures("jwt_mode")
def test_jwt_a_token_with_its_payload_changed_is_401(client, sales_coach, fake_vapi):
    header, _, signature = mint(sub="bob").split(".")
    payload = base64.urlsafe_b64encode(json.dumps({"sub": "alice", "exp": int(time.time()) + 600}).encode())

    response = post_call(client, START, **bearer(f"{header}.{payload.rstrip(b'=').decode()}.{signature}"))

    assert_refused(response, fake_vapi, HTTPStatus.UNAUTHORIZED, "token_invalid", BAD_SIGNATURE)


@pytest.mark.usefixtures("jwt_mode")
@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: jwt.encode({"sub": "bob", "exp": int(time.time()) + 600}, None, algorithm="none"), id="none"),
        pytest.param(lambda: forged({"alg": "None", "typ": "JWT"}, {"sub": "bob"}, b""), id="None-unsigned"),
        pytest.param(lambda: mint(algorithm="HS512"), id="HS512-with-the-right-secret"),
        pytest.param(lambda: mint(algorithm="HS384"), id="HS384-with-the-right-secret"),
        pytest.param(
            lambda: forged({"alg": "RS256", "typ": "JWT"}, {"sub": "bob", "exp": int(time.time()) + 600}), id="RS256"
        ),
        pytest.param(lambda: forged({"typ": "JWT"}, {"sub": "bob", "exp": int(time.time()) + 600}), id="no-alg"),
    ],
)
def test_jwt_only_hs256_is_accepted(client, sales_coach, fake_vapi, token):
    response = post_call(client, START, **bearer(token()))

    assert_refused(response, fake_vapi, HTTPStatus.UNAUTHORIZED, "token_invalid", NOT_HS256)


@pytest.mark.usefixtures("jwt_mode")
def test_jwt_an_hs256_header_with_the_signature_stripped_is_401(client, sales_coach, fake_vapi):
    header, payload, _ = mint().split(".")

    response = post_call(client, START, **bearer(f"{header}.{payload}."))

    assert_refused(response, fake_vapi, HTTPStatus.UNAUTHORIZED, "token_invalid", BAD_SIGNATURE)


@pytest.mark.usefixtures("jwt_mode")
@pytest.mark.parametrize(
    ("claims", "message"),
    [
        pytest.param({"exp": DROP}, "The token is not valid: it has no exp claim.", id="no-exp"),
        pytest.param({"sub": DROP}, "The token is not valid: it has no sub claim.", id="no-sub"),
        pytest.param({"sub": ""}, "The token's sub claim must be the userId, as text.", id="empty-sub"),
        pytest.param({"sub": "   "}, "The token's sub claim must be the userId, as text.", id="blank-sub"),
        pytest.param(
            {"sub": 42}, "The token is not valid: its sub claim must be the userId, as text.", id="numeric-sub"
        ),
        pytest.param({"sub": "u" * 256}, "The token's sub claim is longer than 255 characters.", id="sub-too-long"),
        # PostgreSQL stores no NUL and nothing encodes half a surrogate pair: these were 500s.
        pytest.param({"sub": "bob\u0000"}, "The token's sub claim must be the userId, as text.", id="sub-with-nul"),
        pytest.param({"sub": "bob\nadmin"}, "The token's sub claim must be the userId, as text.", id="sub-with-newline"),
        pytest.param({"exp": "tomorrow"}, MALFORMED, id="exp-not-a-number"),
        pytest.param(
            {"assistantTypes": "sales-coach"},
            "The token's assistantTypes claim must be a list of type names.",
            id="types-not-a-list",
        ),
        pytest.param(
            {"assistantTypes": ["sales-coach", 7]},
            "The token's assistantTypes claim must be a list of type names.",
            id="types-not-text",
        ),
    ],
)
def test_jwt_a_token_without_a_usable_exp_or_sub_is_401(client, sales_coach, fake_vapi, claims, message):
    response = post_call(client, START, **bearer(mint(**claims)))

    assert_refused(response, fake_vapi, HTTPStatus.UNAUTHORIZED, "token_invalid", message)


@pytest.mark.usefixtures("jwt_mode")
def test_jwt_a_sub_of_the_longest_allowed_length_is_accepted(client, sales_coach, fake_vapi):
    response = post_call(client, START, **bearer(mint(sub="u" * 255)))

    assert_started(response, fake_vapi, sales_coach, user_id="u" * 255)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"assistant": {"userId": "alice", "assistantType": "sales-coach"}}, id="assistant"),
        pytest.param(
            {"assistantId": "sales-coach", "assistantOverrides": {"metadata": {"userId": "alice"}}}, id="metadata"
        ),
        pytest.param({"userId": "alice", "assistantType": "sales-coach"}, id="top-level"),
    ],
)
def test_jwt_a_body_userid_other_than_sub_is_403_user_mismatch(client, jwt_mode, alice, fake_vapi, body):
    response = post_call(client, body, **bearer(mint(sub="bob")))

    assert_refused(
        response,
        fake_vapi,
        HTTPStatus.FORBIDDEN,
        "user_mismatch",
        USER_MISMATCH,
        user_id="bob",  # the row names who really asked
        assistant_type="sales-coach",
    )


# --- jwt mode: secrets and rotation ---------------------------------------------------------------


def test_jwt_during_rotation_a_token_signed_with_the_second_secret_works(client, jwt_mode, sales_coach, fake_vapi):
    jwt_mode.PROXY_JWT_SECRETS = [NEXT_SECRET, SECRET]

    response = post_call(client, START, **bearer(mint(secret=SECRET)))

    assert_started(response, fake_vapi, sales_coach, user_id="bob")


def test_jwt_during_rotation_a_token_signed_with_the_new_secret_works(client, jwt_mode, sales_coach, fake_vapi):
    jwt_mode.PROXY_JWT_SECRETS = [SECRET, NEXT_SECRET]

    response = post_call(client, START, **bearer(mint(secret=NEXT_SECRET)))

    assert_started(response, fake_vapi, sales_coach, user_id="bob")


def test_jwt_a_token_signed_with_a_removed_secret_fails(client, jwt_mode, sales_coach, fake_vapi):
    jwt_mode.PROXY_JWT_SECRETS = [NEXT_SECRET, SECRET]

    response = post_call(client, START, **bearer(mint(secret=REMOVED_SECRET)))

    assert_refused(response, fake_vapi, HTTPStatus.UNAUTHORIZED, "token_invalid", BAD_SIGNATURE)


def test_jwt_an_expired_token_signed_with_the_second_secret_is_token_expired(client, jwt_mode, sales_coach, fake_vapi):
    jwt_mode.PROXY_JWT_SECRETS = [NEXT_SECRET, SECRET]

    response = post_call(client, START, **bearer(mint(secret=SECRET, exp=int(time.time()) - 60)))

    assert_refused(response, fake_vapi, HTTPStatus.UNAUTHORIZED, "token_expired", EXPIRED)


def test_jwt_without_any_secret_every_token_is_refused_and_staff_are_told_why(client, jwt_mode, sales_coach, fake_vapi):
    jwt_mode.PROXY_JWT_SECRETS = []

    response = post_call(client, START, **bearer(mint()))

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["message"] == BAD_SIGNATURE
    log = CallLog.objects.get()
    assert (log.error_code, log.error_detail) == ("token_invalid", "No token can match: PROXY_JWT_SECRETS is empty.")
    assert fake_vapi.requests == []


# --- jwt mode: the assistantTypes claim ---------------------------------------------------------


@pytest.mark.usefixtures("jwt_mode")
def test_jwt_the_assistant_types_claim_allows_a_listed_type(client, sales_coach, fake_vapi):
    response = post_call(client, START, **bearer(mint(assistantTypes=["support", "sales-coach"])))

    assert_started(response, fake_vapi, sales_coach, user_id="bob")


@pytest.mark.usefixtures("jwt_mode")
@pytest.mark.parametrize("types", [["support"], []], ids=["other-type", "no-type"])
def test_jwt_the_assistant_types_claim_refuses_an_unlisted_type(client, sales_coach, fake_vapi, types):
    response = post_call(client, START, **bearer(mint(assistantTypes=types)))

    assert_refused(
        response,
        fake_vapi,
        HTTPStatus.FORBIDDEN,
        "assistant_type_not_allowed",
        "This token does not allow assistant type 'sales-coach'.",
        user_id="bob",
        assistant_type="sales-coach",
    )


@pytest.mark.usefixtures("jwt_mode")
def test_jwt_the_assistant_types_claim_narrows_what_staff_allow_and_never_widens_it(client, sales_coach, fake_vapi):
    AssistantType.objects.create(slug="support", default_assistant=sales_coach.default_assistant, mapped_users_only=True)

    response = post_call(
        client, {"assistant": {"assistantType": "support"}}, **bearer(mint(assistantTypes=["support"]))
    )

    assert_refused(
        response,
        fake_vapi,
        HTTPStatus.FORBIDDEN,
        "user_not_mapped",
        "User 'bob' has no assistant for 'support': ask staff to map this user (this type is for mapped users only).",
        user_id="bob",
        assistant_type="support",
    )


# --- jwt mode: audience, issuer, leeway ---------------------------------------------------------


@pytest.mark.parametrize("aud", ["vapi-proxy", ["other-service", "vapi-proxy"]], ids=["text", "list"])
def test_jwt_with_an_audience_set_a_token_for_it_is_accepted(client, jwt_mode, sales_coach, fake_vapi, aud):
    jwt_mode.PROXY_JWT_AUDIENCE = "vapi-proxy"

    response = post_call(client, START, **bearer(mint(aud=aud)))

    assert_started(response, fake_vapi, sales_coach, user_id="bob")


@pytest.mark.parametrize(
    ("aud", "message"),
    [
        pytest.param("other-service", "The token is not valid: it is for another audience.", id="other"),
        pytest.param(DROP, "The token is not valid: it has no aud claim.", id="missing"),
    ],
)
def test_jwt_with_an_audience_set_other_tokens_are_401(client, jwt_mode, sales_coach, fake_vapi, aud, message):
    jwt_mode.PROXY_JWT_AUDIENCE = "vapi-proxy"

    response = post_call(client, START, **bearer(mint(aud=aud)))

    assert_refused(response, fake_vapi, HTTPStatus.UNAUTHORIZED, "token_invalid", message)


def test_jwt_without_an_audience_set_the_aud_claim_is_not_checked(client, jwt_mode, sales_coach, fake_vapi):
    response = post_call(client, START, **bearer(mint(aud="anything")))

    assert_started(response, fake_vapi, sales_coach, user_id="bob")


def test_jwt_with_an_issuer_set_a_token_from_it_is_accepted(client, jwt_mode, sales_coach, fake_vapi):
    jwt_mode.PROXY_JWT_ISSUER = "https://backend.example.com"

    response = post_call(client, START, **bearer(mint(iss="https://backend.example.com")))

    assert_started(response, fake_vapi, sales_coach, user_id="bob")


@pytest.mark.parametrize(
    ("iss", "message"),
    [
        pytest.param("https://evil.example", "The token is not valid: it is from another issuer.", id="other"),
        pytest.param(DROP, "The token is not valid: it has no iss claim.", id="missing"),
    ],
)
def test_jwt_with_an_issuer_set_other_tokens_are_401(client, jwt_mode, sales_coach, fake_vapi, iss, message):
    jwt_mode.PROXY_JWT_ISSUER = "https://backend.example.com"

    response = post_call(client, START, **bearer(mint(iss=iss)))

    assert_refused(response, fake_vapi, HTTPStatus.UNAUTHORIZED, "token_invalid", message)


def test_jwt_leeway_accepts_a_token_that_expired_within_it(client, jwt_mode, sales_coach, fake_vapi):
    jwt_mode.PROXY_JWT_LEEWAY_SECONDS = 30

    response = post_call(client, START, **bearer(mint(exp=int(time.time()) - 10)))

    assert_started(response, fake_vapi, sales_coach, user_id="bob")


@pytest.mark.parametrize(("leeway", "expired_ago"), [(30, 90), (0, 10)])
def test_jwt_leeway_refuses_a_token_that_expired_before_it(client, jwt_mode, sales_coach, fake_vapi, leeway, expired_ago):
    jwt_mode.PROXY_JWT_LEEWAY_SECONDS = leeway

    response = post_call(client, START, **bearer(mint(exp=int(time.time()) - expired_ago)))

    assert_refused(response, fake_vapi, HTTPStatus.UNAUTHORIZED, "token_expired", EXPIRED)


def test_jwt_leeway_accepts_a_token_from_a_backend_whose_clock_is_slightly_ahead(
    client, jwt_mode, sales_coach, fake_vapi
):
    jwt_mode.PROXY_JWT_LEEWAY_SECONDS = 30
    now = int(time.time())

    response = post_call(client, START, **bearer(mint(iat=now + 10, nbf=now + 10)))

    assert_started(response, fake_vapi, sales_coach, user_id="bob")


def test_jwt_a_token_not_valid_yet_is_401(client, jwt_mode, sales_coach, fake_vapi):
    jwt_mode.PROXY_JWT_LEEWAY_SECONDS = 30

    response = post_call(client, START, **bearer(mint(nbf=int(time.time()) + 300)))

    assert_refused(
        response, fake_vapi, HTTPStatus.UNAUTHORIZED, "token_invalid", "The token is not valid: it is not valid yet."
    )


# --- jwt mode: the token goes nowhere -----------------------------------------------------------


@pytest.fixture
def captured(caplog):
    """Every record any logger writes, at DEBUG, and every SQL statement with its parameters."""
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


LEAK_SCENARIOS = {
    "created": ({"sub": "bob"}, START, None),
    "vapi-fails": ({"sub": "bob"}, START, 500),
    "wrong-secret": ({"secret": REMOVED_SECRET}, START, None),
    "expired": ({"exp": int(time.time()) - 3600}, START, None),
    "not-hs256": ({"algorithm": "HS512"}, START, None),
    "no-exp": ({"exp": DROP}, START, None),
    "user-mismatch": ({"sub": "bob"}, {"assistant": {"userId": "alice", "assistantType": "sales-coach"}}, None),
    "type-not-allowed": ({"assistantTypes": ["support"]}, START, None),
    "invalid-body": ({}, b"{not json", None),
}


@pytest.mark.usefixtures("jwt_mode")
@pytest.mark.parametrize("scenario", LEAK_SCENARIOS)
def test_jwt_the_token_is_never_logged_stored_or_forwarded(client, sales_coach, fake_vapi, captured, scenario):
    claims, body, vapi_status = LEAK_SCENARIOS[scenario]
    if vapi_status:
        fake_vapi.reply(vapi_status, {"message": "upstream trouble"})
    token = mint(**claims)

    response = post_call(client, body, **bearer(token))

    caplog, queries = captured
    places = [("response", response.content.decode()), *(("response header", f"{name}: {value}") for name, value in response.items())]
    for log in CallLog.objects.all():
        places.extend((f"call log {field.name}", str(getattr(log, field.attname))) for field in CallLog._meta.fields)
    for record in caplog.records:
        places.append((f"log record {record.name}", caplog.handler.format(record)))
        places.append((f"log record {record.name} args", repr(record.args)))
    places.extend(("SQL", query["sql"]) for query in queries.captured_queries)
    for request in fake_vapi.requests:
        places.append(("Vapi request", request.content.decode()))
        places.extend(("Vapi request header", f"{name}: {value}") for name, value in request.headers.items())
    assert CallLog.objects.count() == 1
    assert caplog.records and queries.captured_queries
    signature = token.rsplit(".", 1)[1]
    for secret in (token, signature, SECRET, REMOVED_SECRET):
        assert [where for where, text in places if secret in text] == []


# --- session mode -------------------------------------------------------------------------------


@pytest.mark.usefixtures("session_mode")
def test_session_a_logged_in_user_on_the_same_origin_starts_a_call_as_themselves(
    csrf_client, sam, sales_coach, fake_vapi
):
    csrf_client.force_login(sam)

    response = post_call(csrf_client, START, HTTP_ORIGIN=OWN_ORIGIN)

    log = assert_started(response, fake_vapi, sales_coach, user_id="sam")
    assert log.origin == OWN_ORIGIN
    assert "Set-Cookie" not in response  # no CSRF token needed, and none handed out


@pytest.mark.usefixtures("session_mode")
def test_session_a_logged_in_user_gets_their_own_mapping(csrf_client, django_user_model, alice, fake_vapi):
    csrf_client.force_login(django_user_model.objects.create_user("alice"))

    response = post_call(csrf_client, START, HTTP_ORIGIN=OWN_ORIGIN)

    assert response.status_code == HTTPStatus.CREATED
    log = CallLog.objects.get()
    assert (log.user_id, log.assistant) == ("alice", alice.assistant)
    assert fake_vapi.last_json["assistantId"] == PERMANENT_ID


@pytest.mark.usefixtures("session_mode")
def test_session_a_body_userid_equal_to_the_user_is_accepted(csrf_client, sam, sales_coach, fake_vapi):
    csrf_client.force_login(sam)

    response = post_call(
        csrf_client, {"assistant": {"userId": "sam", "assistantType": "sales-coach"}}, HTTP_ORIGIN=OWN_ORIGIN
    )

    assert_started(response, fake_vapi, sales_coach, user_id="sam")


@pytest.mark.usefixtures("session_mode")
def test_session_a_body_userid_of_someone_else_is_403(csrf_client, sam, sales_coach, fake_vapi):
    csrf_client.force_login(sam)

    response = post_call(
        csrf_client, {"assistant": {"userId": "alice", "assistantType": "sales-coach"}}, HTTP_ORIGIN=OWN_ORIGIN
    )

    assert_refused(
        response,
        fake_vapi,
        HTTPStatus.FORBIDDEN,
        "user_mismatch",
        USER_MISMATCH,
        user_id="sam",
        assistant_type="sales-coach",
    )


@pytest.mark.usefixtures("session_mode")
@pytest.mark.parametrize(
    ("origin", "message"),
    [
        pytest.param(None, SESSION_ORIGIN, id="no-origin"),
        pytest.param("https://app.example.com", SESSION_ORIGIN, id="listed-frontend-on-another-origin"),
        pytest.param(
            "https://evil.example",
            "Calls from https://evil.example are not allowed; the operator lists frontends in CORS_ALLOWED_ORIGINS.",
            id="foreign-origin",
        ),
    ],
)
def test_session_a_request_not_from_the_same_origin_is_403(csrf_client, sam, sales_coach, fake_vapi, origin, message):
    csrf_client.force_login(sam)
    headers = {"HTTP_ORIGIN": origin} if origin else {}

    response = post_call(csrf_client, START, **headers)

    assert_refused(response, fake_vapi, HTTPStatus.FORBIDDEN, "origin_not_allowed", message)


@pytest.mark.usefixtures("session_mode")
def test_session_without_a_login_is_401_not_logged_in(csrf_client, sales_coach, fake_vapi):
    response = post_call(csrf_client, START, HTTP_ORIGIN=OWN_ORIGIN)

    assert_refused(response, fake_vapi, HTTPStatus.UNAUTHORIZED, "not_logged_in", NOT_LOGGED_IN)


@pytest.mark.usefixtures("session_mode")
def test_session_a_deactivated_users_session_no_longer_starts_calls(csrf_client, sam, sales_coach, fake_vapi):
    csrf_client.force_login(sam)
    sam.is_active = False
    sam.save()

    response = post_call(csrf_client, START, HTTP_ORIGIN=OWN_ORIGIN)

    assert_refused(response, fake_vapi, HTTPStatus.UNAUTHORIZED, "not_logged_in", NOT_LOGGED_IN)


@pytest.mark.usefixtures("session_mode")
def test_session_a_bearer_token_does_not_stand_in_for_a_login(csrf_client, sales_coach, fake_vapi):
    response = post_call(csrf_client, START, HTTP_ORIGIN=OWN_ORIGIN, **bearer(mint(secret=SECRET)))

    assert_refused(response, fake_vapi, HTTPStatus.UNAUTHORIZED, "not_logged_in", NOT_LOGGED_IN)


@pytest.mark.usefixtures("session_mode")
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_session_a_body_that_is_not_json_is_still_415(csrf_client, sam, sales_coach, fake_vapi, content_type):
    csrf_client.force_login(sam)

    response = post_call(csrf_client, json.dumps(START), content_type=content_type, HTTP_ORIGIN=OWN_ORIGIN)

    assert_refused(
        response,
        fake_vapi,
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        f"Send the body as JSON with Content-Type: application/json (got {content_type!r}).",
        user_id="sam",
    )


# --- open mode ----------------------------------------------------------------------------------


def test_open_the_bodys_userid_is_used(client, settings, sales_coach, fake_vapi):
    settings.PROXY_IDENTITY = "open"

    response = post_call(client, {"assistant": {"userId": "carol", "assistantType": "sales-coach"}})

    assert_started(response, fake_vapi, sales_coach, user_id="carol")


def test_open_an_app_token_is_ignored_and_not_forwarded(client, settings, sales_coach, fake_vapi):
    settings.PROXY_IDENTITY = "open"
    token = mint(sub="someone-else")

    response = post_call(client, {"assistant": {"userId": "carol", "assistantType": "sales-coach"}}, **bearer(token))

    assert_started(response, fake_vapi, sales_coach, user_id="carol")
    sent = fake_vapi.requests[0]
    assert token not in sent.content.decode() + repr(list(sent.headers.items()))


def test_open_without_a_userid_is_400(client, settings, sales_coach, fake_vapi):
    settings.PROXY_IDENTITY = "open"

    response = post_call(client, START)

    assert_refused(
        response,
        fake_vapi,
        HTTPStatus.BAD_REQUEST,
        "missing_field",
        "userId is required.",
        assistant_type="sales-coach",
    )


# --- start-up and system checks -----------------------------------------------------------------

SHOW_IDENTITY = """
import django
django.setup()
from django.conf import settings
print(settings.PROXY_IDENTITY, len(settings.PROXY_JWT_SECRETS))
"""
PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "identity-start-up-test-key",
    "DJANGO_ALLOWED_HOSTS": "proxy.example.com",
}
OPEN_REFUSED = (
    "django.core.exceptions.ImproperlyConfigured: PROXY_IDENTITY=open trusts any userId a browser sends; "
    "with DJANGO_DEBUG off it needs PROXY_ALLOW_OPEN_IDENTITY=true as well. Use PROXY_IDENTITY=jwt in production."
)
W005 = (
    "?: (vapi_proxy.W005) PROXY_IDENTITY=open in production: anyone who can reach the proxy can start calls "
    "as any user."
)


def run_django(*args: str, **variables) -> subprocess.CompletedProcess:
    """`manage.py <args>` (or SHOW_IDENTITY without args) in a new interpreter, with only these settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "PROXY_", "VAPI_", "DATABASE_"))
    }
    env.update(DJANGO_SETTINGS_MODULE="proxy_site.settings", DJANGO_ENV_FILE="", **variables)
    command = [sys.executable, "manage.py", *args] if args else [sys.executable, "-c", SHOW_IDENTITY]
    return subprocess.run(command, env=env, cwd=django_settings.BASE_DIR, capture_output=True, text=True, timeout=60)


def test_start_up_the_default_mode_is_jwt():
    result = run_django(**PRODUCTION)

    assert (result.returncode, result.stdout) == (0, "jwt 0\n"), result.stderr


@pytest.mark.parametrize("opt_in", [None, "false"])
def test_start_up_open_mode_in_production_without_the_opt_in_fails_naming_both_variables(opt_in):
    variables = {**PRODUCTION, "PROXY_IDENTITY": "open"}
    if opt_in is not None:
        variables["PROXY_ALLOW_OPEN_IDENTITY"] = opt_in

    result = run_django(**variables)

    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == OPEN_REFUSED


def test_start_up_open_mode_in_production_with_the_opt_in_starts_and_the_check_warns():
    result = run_django("check", **PRODUCTION, PROXY_IDENTITY="open", PROXY_ALLOW_OPEN_IDENTITY="true")

    assert result.returncode == 0, result.stderr
    assert W005 in (result.stdout + result.stderr).splitlines()


def test_start_up_open_mode_in_debug_needs_no_opt_in_and_gets_no_warning():
    result = run_django("check", DJANGO_DEBUG="true", PROXY_IDENTITY="open")

    assert result.returncode == 0, result.stderr
    assert "vapi_proxy.W005" not in result.stdout + result.stderr


def test_start_up_a_short_secret_is_warned_about_without_showing_it():
    result = run_django("check", **PRODUCTION, PROXY_JWT_SECRETS=f"{SECRET}, short-identity-secret")

    output = result.stdout + result.stderr
    assert result.returncode == 0, result.stderr
    assert "vapi_proxy.W004" in output
    assert "short-identity-secret" not in output and SECRET not in output


def identity_checks() -> list[tuple[str, str]]:
    return [
        (problem.id, problem.msg)
        for problem in check_vapi_settings(None)
        if problem.id in ("vapi_proxy.W003", "vapi_proxy.W004", "vapi_proxy.W005", "vapi_proxy.E004")
    ]


def test_check_jwt_without_secrets_warns_w003(jwt_mode):
    jwt_mode.PROXY_JWT_SECRETS = []

    assert identity_checks() == [
        ("vapi_proxy.W003", "PROXY_IDENTITY=jwt but PROXY_JWT_SECRETS is empty: every call start answers 401.")
    ]


def test_check_a_secret_shorter_than_32_characters_warns_w004(jwt_mode):
    jwt_mode.PROXY_JWT_SECRETS = [SECRET, "x" * 31]

    assert identity_checks() == [
        (
            "vapi_proxy.W004",
            "A PROXY_JWT_SECRETS secret is shorter than 32 characters; HS256 wants at least 32 bytes.",
        )
    ]


def test_check_jwt_with_long_secrets_is_quiet(jwt_mode):
    jwt_mode.PROXY_JWT_SECRETS = [SECRET, "x" * 32]

    assert identity_checks() == []


def test_check_an_unknown_mode_is_an_error(settings):
    settings.PROXY_IDENTITY = "trust-me"

    assert identity_checks() == [("vapi_proxy.E004", "PROXY_IDENTITY is 'trust-me'; use jwt, session or open.")]


# --- Origin -------------------------------------------------------------------------------------

OPEN_START = {"assistant": {"userId": "carol", "assistantType": "sales-coach"}}


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "https://app.example.com.evil.example"])
def test_origin_not_listed_is_403_and_nothing_reaches_vapi(client, sales_coach, fake_vapi, origin):
    response = post_call(client, OPEN_START, HTTP_ORIGIN=origin)

    log = assert_refused(
        response,
        fake_vapi,
        HTTPStatus.FORBIDDEN,
        "origin_not_allowed",
        f"Calls from {origin} are not allowed; the operator lists frontends in CORS_ALLOWED_ORIGINS.",
    )
    assert log.origin == origin


def test_origin_not_listed_is_refused_before_the_token_is_looked_at(client, jwt_mode, sales_coach, fake_vapi):
    response = post_call(client, START, HTTP_ORIGIN="https://evil.example", **bearer(mint()))

    assert_refused(
        response,
        fake_vapi,
        HTTPStatus.FORBIDDEN,
        "origin_not_allowed",
        "Calls from https://evil.example are not allowed; the operator lists frontends in CORS_ALLOWED_ORIGINS.",
    )


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param(None, id="server-side-fetch-without-origin"),
        pytest.param(OWN_ORIGIN, id="the-proxys-own-origin"),
        pytest.param("https://app.example.com", id="a-listed-frontend"),
    ],
)
def test_origin_absent_own_or_listed_is_allowed(client, sales_coach, fake_vapi, origin):
    headers = {"HTTP_ORIGIN": origin} if origin else {}

    response = post_call(client, OPEN_START, **headers)

    log = assert_started(response, fake_vapi, sales_coach, user_id="carol")
    assert log.origin == (origin or "")


# --- client IP behind a load balancer -----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "count", "forwarded", "expected"),
    [
        pytest.param("X-Forwarded-For", 1, "203.0.113.7", "203.0.113.7", id="one-proxy"),
        pytest.param("X-Forwarded-For", 1, "6.6.6.6, 203.0.113.7", "203.0.113.7", id="spoofed-left-entry-ignored"),
        pytest.param("X-Forwarded-For", 2, "6.6.6.6, 198.51.100.4, 10.0.0.9", "198.51.100.4", id="two-proxies"),
        pytest.param("X-Forwarded-For", 1, "2001:DB8::1", "2001:db8::1", id="ipv6"),
        pytest.param("X-Real-IP", 1, "203.0.113.8", "203.0.113.8", id="another-header"),
        pytest.param("", 1, "203.0.113.7", "192.0.2.10", id="no-setting-header-ignored"),
        pytest.param("X-Forwarded-For", 1, "not-an-address", "192.0.2.10", id="garbage"),
        pytest.param("X-Forwarded-For", 1, "203.0.113.7:4711", "192.0.2.10", id="with-port"),
        pytest.param("X-Forwarded-For", 1, " , ", "192.0.2.10", id="empty-entries"),
        pytest.param("X-Forwarded-For", 2, "203.0.113.7", "192.0.2.10", id="fewer-entries-than-proxies"),
        pytest.param("X-Forwarded-For", 0, "6.6.6.6, 203.0.113.7", "192.0.2.10", id="count-zero-trusts-no-entry"),
    ],
)
def test_client_ip_comes_from_the_trusted_header_only(client, settings, sales_coach, fake_vapi, header, count, forwarded, expected):
    settings.TRUSTED_PROXY_HEADER = header
    settings.TRUSTED_PROXY_COUNT = count
    meta = {"HTTP_" + (header or "X-Forwarded-For").upper().replace("-", "_"): forwarded}

    response = post_call(client, OPEN_START, REMOTE_ADDR="192.0.2.10", **meta)

    log = assert_started(response, fake_vapi, sales_coach, user_id="carol")
    assert log.client_ip == expected


def test_client_ip_without_a_header_falls_back_to_the_peer(client, settings, sales_coach, fake_vapi):
    settings.TRUSTED_PROXY_HEADER = "X-Forwarded-For"

    response = post_call(client, OPEN_START, REMOTE_ADDR="192.0.2.10")

    assert assert_started(response, fake_vapi, sales_coach, user_id="carol").client_ip == "192.0.2.10"


def test_client_ip_spoofed_entries_do_not_escape_the_refusal_throttle(client, jwt_mode, sales_coach, fake_vapi):
    jwt_mode.TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    jwt_mode.REFUSAL_THROTTLE_PER_MINUTE = 1
    bad = bearer("not-a-jwt")

    first = post_call(client, START, HTTP_X_FORWARDED_FOR="6.6.6.1, 203.0.113.7", **bad)
    second = post_call(client, START, HTTP_X_FORWARDED_FOR="6.6.6.2, 203.0.113.7", **bad)
    elsewhere = post_call(client, START, HTTP_X_FORWARDED_FOR="6.6.6.2, 203.0.113.99", **bad)

    assert [first.status_code, second.status_code, elsewhere.status_code] == [401, 429, 401]
    assert second.json()["code"] == "too_many_refusals"
    assert list(CallLog.objects.order_by("pk").values_list("client_ip", "error_code")) == [
        ("203.0.113.7", "token_invalid"),
        ("203.0.113.99", "token_invalid"),
    ]


# --- mint_token ---------------------------------------------------------------------------------


def mint_token(*args: str) -> str:
    out = io.StringIO()
    call_command("mint_token", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


def claims_of(token: str) -> dict:
    return jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_aud": False})


def test_mint_token_makes_a_token_the_proxy_accepts(client, jwt_mode, sales_coach, fake_vapi):
    token = mint_token("bob")

    response = post_call(client, START, **bearer(token))

    assert_started(response, fake_vapi, sales_coach, user_id="bob")
    claims = claims_of(token)
    assert set(claims) == {"sub", "iat", "exp"}
    assert (claims["sub"], claims["exp"] - claims["iat"]) == ("bob", 3600)


def test_mint_token_signs_with_the_first_secret(client, jwt_mode):
    jwt_mode.PROXY_JWT_SECRETS = [SECRET, NEXT_SECRET]

    assert claims_of(mint_token("bob"))["sub"] == "bob"


def test_mint_token_ttl_minutes_sets_the_lifetime(jwt_mode):
    claims = claims_of(mint_token("bob", "--ttl-minutes", "5"))

    assert claims["exp"] - claims["iat"] == 300


def test_mint_token_expired_makes_a_token_the_proxy_refuses_as_expired(client, jwt_mode, sales_coach, fake_vapi):
    token = mint_token("bob", "--expired")

    response = post_call(client, START, **bearer(token))

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["code"] == "token_expired"
    assert fake_vapi.requests == []
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert (claims["sub"], claims["exp"] - claims["iat"]) == ("bob", 3600)
    assert abs(claims["exp"] - (time.time() - 3600)) < 60


def test_mint_token_types_limit_the_types(client, jwt_mode, sales_coach, fake_vapi):
    allowed = mint_token("bob", "--types", "sales-coach, support")
    other = mint_token("bob", "--types", "support")

    refused = post_call(client, START, **bearer(other))
    assert refused.status_code == HTTPStatus.FORBIDDEN
    assert refused.json()["code"] == "assistant_type_not_allowed"
    CallLog.objects.all().delete()
    response = post_call(client, START, **bearer(allowed))

    assert_started(response, fake_vapi, sales_coach, user_id="bob")
    assert claims_of(allowed)["assistantTypes"] == ["sales-coach", "support"]


def test_mint_token_adds_audience_and_issuer_when_set(client, jwt_mode, sales_coach, fake_vapi):
    jwt_mode.PROXY_JWT_AUDIENCE = "vapi-proxy"
    jwt_mode.PROXY_JWT_ISSUER = "https://backend.example.com"
    token = mint_token("bob")

    response = post_call(client, START, **bearer(token))

    assert_started(response, fake_vapi, sales_coach, user_id="bob")
    claims = claims_of(token)
    assert (claims["aud"], claims["iss"]) == ("vapi-proxy", "https://backend.example.com")


def test_mint_token_without_a_secret_is_a_clear_error(jwt_mode):
    jwt_mode.PROXY_JWT_SECRETS = []

    with pytest.raises(CommandError) as refused:
        mint_token("bob")

    assert str(refused.value) == (
        "PROXY_JWT_SECRETS is not set: put a secret of 32 or more characters in it (in .env), "
        "the same one your backend will sign tokens with, and run this again."
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["  "], "USER_ID must be 1 to 255 characters."),
        (["u" * 256], "USER_ID must be 1 to 255 characters."),
        (["bob", "--ttl-minutes", "0"], "--ttl-minutes must be at least 1."),
        (["bob", "--types", " , "], "--types names no assistant type; leave it out to allow any type."),
    ],
)
def test_mint_token_refuses_arguments_that_make_no_usable_token(jwt_mode, args, message):
    with pytest.raises(CommandError) as refused:
        mint_token(*args)

    assert str(refused.value) == message


def test_mint_token_says_so_when_the_proxy_is_not_in_jwt_mode(jwt_mode):
    jwt_mode.PROXY_IDENTITY = "open"
    out, err = io.StringIO(), io.StringIO()

    call_command("mint_token", "bob", stdout=out, stderr=err)

    assert claims_of(out.getvalue().strip())["sub"] == "bob"
    assert err.getvalue() == (
        "Note: PROXY_IDENTITY is 'open', so the proxy does not read tokens; set PROXY_IDENTITY=jwt to use this one.\n"
    )


def test_mint_token_says_so_when_the_secret_is_short(jwt_mode):
    jwt_mode.PROXY_JWT_SECRETS = ["short-local-secret"]
    err = io.StringIO()

    call_command("mint_token", "bob", stdout=io.StringIO(), stderr=err)

    assert err.getvalue() == "Note: the secret is shorter than 32 characters; use a longer one outside local tests.\n"
    assert "short-local-secret" not in err.getvalue()


def test_mint_token_help_says_it_is_for_local_testing_only():
    help_text = MintToken().create_parser("manage.py", "mint_token").format_help()

    assert "FOR LOCAL TESTING ONLY" in help_text
    assert "your own backend mints these tokens" in " ".join(help_text.split())


def test_mint_token_from_the_shell_prints_only_the_token(client, jwt_mode, sales_coach, fake_vapi):
    result = run_django(
        "mint_token", "customer123", "--types", "sales-coach", DJANGO_DEBUG="true", PROXY_IDENTITY="jwt", PROXY_JWT_SECRETS=SECRET
    )

    assert (result.returncode, result.stderr) == (0, "")
    assert len(result.stdout.splitlines()) == 1
    response = post_call(client, START, **bearer(result.stdout.strip()))
    assert_started(response, fake_vapi, sales_coach, user_id="customer123")


# --- the README's backend examples --------------------------------------------------------------

# The README's Python example, verbatim: keep the two in step.
README_PYTHON_MINT = """
import os, time, jwt  # pip install PyJWT

def vapi_proxy_token(user_id: str) -> str:
    return jwt.encode({"sub": user_id, "exp": int(time.time()) + 600}, os.environ["PROXY_JWT_SECRET"], algorithm="HS256")
"""


def test_the_readme_python_mint_makes_a_token_the_proxy_accepts(client, jwt_mode, sales_coach, fake_vapi, monkeypatch):
    monkeypatch.setenv("PROXY_JWT_SECRET", SECRET)
    namespace = {}
    exec(README_PYTHON_MINT, namespace)

    response = post_call(client, START, **bearer(namespace["vapi_proxy_token"]("customer123")))

    assert_started(response, fake_vapi, sales_coach, user_id="customer123")
