"""How the proxy proves a server-URL message came from Vapi: the legacy X-Vapi-Secret, a bearer token
or an HMAC signature over the raw bytes, with rotation; what it does when nothing is configured;
and the route's HTTP surface (no CSRF, no CORS, a size limit). A refused message stores nothing."""

import base64
import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
import time
from http import HTTPStatus

import pytest
from django.conf import settings as django_settings
from django.core import checks
from django.core.management import call_command
from django.test import Client

from calls.apps import check_vapi_settings
from calls.models import CallLog, WebhookMessage
from calls.webhook_auth import WebhookAuthConfig, WebhookAuthError, verify_webhook
from tests.conftest import TEST_VAPI_KEY

pytestmark = pytest.mark.django_db

URL = "/webhooks/vapi"
SECRET = "test-webhook-secret-0001"
NEXT_SECRET = "test-webhook-secret-0002"
RETIRED_SECRET = "test-webhook-secret-0003"
BACKEND_SECRET = "test-backend-secret-0004"
NOW = 1764756000  # 2025-12-03 10:00:00 UTC, for verify_webhook(now=...)

NO_CREDENTIAL = "The proxy has no usable webhook credential configured, so it refuses every message."


def message_body(timestamp: int = 1764756000000, status: str = "in-progress") -> bytes:
    message = {"type": "status-update", "status": status, "timestamp": timestamp, "call": {"id": "call-1"}}
    return json.dumps({"message": message}).encode()


BODY = message_body()


def sign(
    body: bytes,
    secret: str = SECRET,
    *,
    timestamp: str = "",
    algorithm: str = "sha256",
    encoding: str = "hex",
    payload: str = "{timestamp}.{body}",
    method: str = "POST",
    url: str = "http://testserver/webhooks/vapi",
) -> str:
    signed = (
        payload.encode()
        .replace(b"{timestamp}", timestamp.encode())
        .replace(b"{method}", method.encode())
        .replace(b"{url}", url.encode())
        .replace(b"{body}", body)
    )
    digest = hmac.new(secret.encode(), signed, getattr(hashlib, algorithm)).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


def deliver(client, body: bytes = BODY, **headers):
    return client.generic("POST", URL, data=body, content_type="application/json", headers=headers)


def signed_headers(body: bytes = BODY, secret: str = SECRET, *, timestamp: str | None = None, **options) -> dict:
    timestamp = str(int(time.time())) if timestamp is None else timestamp
    return {"x-signature": sign(body, secret, timestamp=timestamp, **options), "x-timestamp": timestamp}


def credentials(kind: str, secret: str, body: bytes = BODY) -> dict:
    """The headers Vapi sends for each credential kind, with the default settings."""
    if kind == "secret":
        return {"X-Vapi-Secret": secret}
    if kind == "bearer":
        return {"Authorization": f"Bearer {secret}"}
    return signed_headers(body, secret)


def assert_refused(response, message: str):
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json() == {
        "statusCode": 401,
        "error": "Unauthorized",
        "message": message,
        "code": "webhook_unauthorized",
        "requestId": response["X-Request-ID"],
    }
    assert WebhookMessage.objects.count() == 0
    assert CallLog.objects.count() == 0


def assert_accepted(response):
    assert response.status_code == HTTPStatus.OK
    assert response.json() == {}
    stored = WebhookMessage.objects.get()
    assert (stored.message_type, stored.vapi_call_id, stored.payload) == ("status-update", "call-1", json.loads(BODY))
    assert CallLog.objects.get().call_status == "in-progress"


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    """The legacy secret; every other webhook setting at its default, whatever the environment says."""
    settings.VAPI_WEBHOOK_AUTH = "secret"
    settings.VAPI_WEBHOOK_SECRETS = [SECRET]
    settings.VAPI_WEBHOOK_BEARER_HEADER = "Authorization"
    settings.VAPI_WEBHOOK_BEARER_PREFIX = "Bearer "
    settings.VAPI_WEBHOOK_HMAC_ALGORITHM = "sha256"
    settings.VAPI_WEBHOOK_SIGNATURE_HEADER = "x-signature"
    settings.VAPI_WEBHOOK_TIMESTAMP_HEADER = "x-timestamp"
    settings.VAPI_WEBHOOK_SIGNED_PAYLOAD = "{timestamp}.{body}"
    settings.VAPI_WEBHOOK_SIGNATURE_ENCODING = "hex"
    settings.VAPI_WEBHOOK_SIGNATURE_PREFIX = ""
    settings.VAPI_WEBHOOK_TOLERANCE_SECONDS = 300
    settings.WEBHOOK_MAX_BODY_BYTES = 20 * 1024 * 1024
    settings.CUSTOMER_BACKEND_URL = ""
    settings.CUSTOMER_BACKEND_SECRET = BACKEND_SECRET
    return settings


@pytest.fixture
def bearer(webhook_settings):
    webhook_settings.VAPI_WEBHOOK_AUTH = "bearer"
    return webhook_settings


@pytest.fixture
def signed(webhook_settings):
    webhook_settings.VAPI_WEBHOOK_AUTH = "hmac"
    return webhook_settings


def hmac_config(**options) -> WebhookAuthConfig:
    return WebhookAuthConfig(kind="hmac", secrets=(SECRET,), **options)


# --- The legacy secret (X-Vapi-Secret) ---------------------------------------------------------


def test_the_right_secret_in_x_vapi_secret_is_accepted_and_stored(client):
    assert_accepted(deliver(client, **{"X-Vapi-Secret": SECRET}))


@pytest.mark.parametrize(
    "headers, message",
    [
        ({"X-Vapi-Secret": "test-webhook-secret-9999"}, "X-Vapi-Secret does not match the configured secret."),
        ({"X-Vapi-Secret": SECRET[:-1]}, "X-Vapi-Secret does not match the configured secret."),
        ({"X-Vapi-Secret": SECRET + " extra"}, "X-Vapi-Secret does not match the configured secret."),
        ({}, "X-Vapi-Secret is missing or empty."),
        ({"X-Vapi-Secret": ""}, "X-Vapi-Secret is missing or empty."),
        ({"Authorization": f"Bearer {SECRET}"}, "X-Vapi-Secret is missing or empty."),
    ],
    ids=["wrong", "prefix-of-the-secret", "secret-and-more", "missing", "empty", "in-another-header"],
)
def test_a_wrong_missing_or_empty_secret_is_refused_and_nothing_is_stored(client, headers, message):
    assert_refused(deliver(client, **headers), message)


@pytest.mark.parametrize("configured", [[""], ["", "  "], []])
def test_an_empty_secret_setting_means_none_and_an_empty_header_matches_nothing(client, settings, configured):
    settings.VAPI_WEBHOOK_SECRETS = configured

    assert_refused(deliver(client, **{"X-Vapi-Secret": ""}), NO_CREDENTIAL)
    assert_refused(deliver(client), NO_CREDENTIAL)


@pytest.mark.parametrize("presented", ["", " "])
def test_verify_webhook_never_matches_a_blank_header_to_a_blank_secret(presented):
    config = WebhookAuthConfig(kind="secret", secrets=("", " "))

    with pytest.raises(WebhookAuthError, match="^X-Vapi-Secret is missing or empty.$"):
        verify_webhook(config, headers={"X-Vapi-Secret": presented}, body=BODY)


def test_the_secret_is_checked_before_the_body_is_read_as_json(client):
    response = deliver(client, b"not json", **{"X-Vapi-Secret": "wrong"})

    assert_refused(response, "X-Vapi-Secret does not match the configured secret.")


@pytest.mark.parametrize("name", ["X-Vapi-Secret", "x-vapi-secret", "X-VAPI-SECRET"])
def test_verify_webhook_reads_header_names_without_case(name):
    verify_webhook(WebhookAuthConfig(kind="secret", secrets=(SECRET,)), headers={name: SECRET}, body=BODY)


# --- Bearer tokens --------------------------------------------------------------------------------


def test_a_bearer_token_is_accepted(client, bearer):
    assert_accepted(deliver(client, Authorization=f"Bearer {SECRET}"))


@pytest.mark.parametrize(
    "headers, message",
    [
        ({"Authorization": "Bearer test-webhook-secret-9999"}, "Authorization does not match the configured secret."),
        ({"Authorization": f"Token {SECRET}"}, "Authorization is missing or does not start with the expected prefix."),
        ({"Authorization": SECRET}, "Authorization is missing or does not start with the expected prefix."),
        ({"Authorization": "Bearer "}, "Authorization is missing or empty."),
        ({}, "Authorization is missing or does not start with the expected prefix."),
        ({"X-Vapi-Secret": SECRET}, "Authorization is missing or does not start with the expected prefix."),
    ],
    ids=["wrong-token", "wrong-prefix", "no-prefix", "prefix-only", "missing", "legacy-header"],
)
def test_a_wrong_or_missing_bearer_token_is_refused(client, bearer, headers, message):
    assert_refused(deliver(client, **headers), message)


def test_a_bearer_token_in_a_custom_header_without_a_prefix_is_accepted(client, bearer):
    bearer.VAPI_WEBHOOK_BEARER_HEADER = "X-Webhook-Token"
    bearer.VAPI_WEBHOOK_BEARER_PREFIX = ""

    assert_accepted(deliver(client, **{"X-Webhook-Token": SECRET}))


@pytest.mark.parametrize(
    "headers, message",
    [
        ({"Authorization": f"Bearer {SECRET}"}, "X-Webhook-Token is missing or empty."),
        ({"X-Webhook-Token": f"Bearer {SECRET}"}, "X-Webhook-Token does not match the configured secret."),
    ],
    ids=["standard-header", "with-a-prefix-not-configured"],
)
def test_a_custom_bearer_header_is_the_only_one_read(client, bearer, headers, message):
    bearer.VAPI_WEBHOOK_BEARER_HEADER = "X-Webhook-Token"
    bearer.VAPI_WEBHOOK_BEARER_PREFIX = ""

    assert_refused(deliver(client, **headers), message)


def test_a_custom_bearer_prefix_is_required(client, bearer):
    bearer.VAPI_WEBHOOK_BEARER_PREFIX = "Token "

    assert_refused(
        deliver(client, Authorization=f"Bearer {SECRET}"),
        "Authorization is missing or does not start with the expected prefix.",
    )
    assert_accepted(deliver(client, Authorization=f"Token {SECRET}"))


# --- HMAC signatures ------------------------------------------------------------------------------


def test_a_hex_sha256_signature_over_timestamp_and_body_is_accepted(client, signed):
    assert_accepted(deliver(client, **signed_headers()))


def test_a_timestamp_in_milliseconds_is_accepted(client, signed):
    assert_accepted(deliver(client, **signed_headers(timestamp=str(int(time.time() * 1000)))))


def test_a_base64_signature_is_accepted(client, signed):
    signed.VAPI_WEBHOOK_SIGNATURE_ENCODING = "base64"

    assert_accepted(deliver(client, **signed_headers(encoding="base64")))


def test_a_signature_with_a_sha256_prefix_is_accepted(client, signed):
    signed.VAPI_WEBHOOK_SIGNATURE_PREFIX = "sha256="
    headers = signed_headers()

    assert_refused(deliver(client, **headers), "x-signature is missing or lacks the 'sha256=' prefix.")
    assert_accepted(deliver(client, **{**headers, "x-signature": "sha256=" + headers["x-signature"]}))


def test_a_sha512_signature_is_accepted(client, signed):
    signed.VAPI_WEBHOOK_HMAC_ALGORITHM = "sha512"

    assert_refused(deliver(client, **signed_headers()), "x-signature does not match the body.")
    assert_accepted(deliver(client, **signed_headers(algorithm="sha512")))


def test_a_signature_over_the_body_alone_in_x_vapi_signature_is_accepted(client, signed):
    signed.VAPI_WEBHOOK_SIGNED_PAYLOAD = "{body}"
    signed.VAPI_WEBHOOK_SIGNATURE_HEADER = "x-vapi-signature"

    assert_accepted(deliver(client, **{"x-vapi-signature": sign(BODY, payload="{body}")}))


def test_a_signature_over_method_url_timestamp_and_body_is_accepted(client, signed):
    signed.VAPI_WEBHOOK_SIGNED_PAYLOAD = "{method} {url}\n{timestamp}\n{body}"

    headers = signed_headers(payload="{method} {url}\n{timestamp}\n{body}")

    assert_accepted(deliver(client, **headers))


@pytest.mark.parametrize("offset", [-600, 600], ids=["past", "future"])
@pytest.mark.parametrize("unit", [1, 1000], ids=["seconds", "milliseconds"])
def test_a_timestamp_outside_the_tolerance_window_is_refused(client, signed, offset, unit):
    timestamp = str(int((time.time() + offset) * unit))

    assert_refused(deliver(client, **signed_headers(timestamp=timestamp)), "x-timestamp is outside the 300s window.")


@pytest.mark.parametrize("offset", [-300, 300])
@pytest.mark.parametrize("unit", [1, 1000], ids=["seconds", "milliseconds"])
def test_verify_webhook_accepts_a_timestamp_at_the_edge_of_the_window(offset, unit):
    timestamp = str((NOW + offset) * unit)

    verify_webhook(hmac_config(), headers=signed_headers(timestamp=timestamp), body=BODY, now=NOW)


@pytest.mark.parametrize("offset", [-301, 301])
@pytest.mark.parametrize("unit", [1, 1000], ids=["seconds", "milliseconds"])
def test_verify_webhook_refuses_a_timestamp_just_outside_the_window(offset, unit):
    timestamp = str((NOW + offset) * unit)

    with pytest.raises(WebhookAuthError, match=r"^x-timestamp is outside the 300s window\.$"):
        verify_webhook(hmac_config(), headers=signed_headers(timestamp=timestamp), body=BODY, now=NOW)


def test_verify_webhook_uses_the_configured_tolerance():
    headers = signed_headers(timestamp=str(NOW - 30))

    verify_webhook(hmac_config(tolerance_seconds=30), headers=headers, body=BODY, now=NOW)
    with pytest.raises(WebhookAuthError, match=r"^x-timestamp is outside the 29s window\.$"):
        verify_webhook(hmac_config(tolerance_seconds=29), headers=headers, body=BODY, now=NOW)


@pytest.mark.parametrize("timestamp", ["nan", "NaN", "inf", "-1764756000", "1764756000s", "1e9", "0x6930"])
def test_verify_webhook_refuses_a_timestamp_that_is_not_a_plain_number_even_when_signed(timestamp):
    with pytest.raises(WebhookAuthError, match=r"^x-timestamp is not a number\.$"):
        verify_webhook(hmac_config(), headers=signed_headers(timestamp=timestamp), body=BODY, now=NOW)


def test_a_body_changed_by_one_byte_is_refused(client, signed):
    headers = signed_headers()
    changed = BODY.replace(b"in-progress", b"in-progresS")
    assert len(changed) == len(BODY)

    assert_refused(deliver(client, changed, **headers), "x-signature does not match the body.")


def test_a_signature_over_the_same_json_serialized_differently_is_refused(client, signed):
    headers = signed_headers(json.dumps(json.loads(BODY), separators=(",", ":")).encode())

    assert_refused(deliver(client, **headers), "x-signature does not match the body.")


def test_a_signature_made_with_another_secret_is_refused(client, signed):
    assert_refused(deliver(client, **signed_headers(secret=RETIRED_SECRET)), "x-signature does not match the body.")


def test_a_signature_over_another_timestamp_is_refused(client, signed):
    headers = signed_headers()
    headers["x-timestamp"] = str(int(headers["x-timestamp"]) - 1)

    assert_refused(deliver(client, **headers), "x-signature does not match the body.")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda headers: headers.pop("x-timestamp"), "x-timestamp is missing."),
        (lambda headers: headers.update({"x-timestamp": ""}), "x-timestamp is missing."),
        (lambda headers: headers.update({"x-timestamp": "yesterday"}), "x-timestamp is not a number."),
        (lambda headers: headers.pop("x-signature"), "x-signature is missing or empty."),
        (lambda headers: headers.update({"x-signature": ""}), "x-signature is missing or empty."),
        (lambda headers: headers.update({"x-signature": "zz" * 32}), "x-signature is not valid hex."),
        (lambda headers: headers.update({"x-signature": headers["x-signature"][:-1]}), "x-signature is not valid hex."),
        (
            lambda headers: headers.update({"x-signature": headers["x-signature"][:-2]}),
            "x-signature does not match the body.",
        ),
    ],
    ids=[
        "no-timestamp",
        "empty-timestamp",
        "word-timestamp",
        "no-signature",
        "empty-signature",
        "not-hex",
        "odd-length",
        "truncated",
    ],
)
def test_a_missing_or_malformed_signature_or_timestamp_is_refused(client, signed, change, message):
    headers = signed_headers()
    change(headers)

    assert_refused(deliver(client, **headers), message)


def test_a_base64_signature_that_is_not_base64_is_refused(client, signed):
    signed.VAPI_WEBHOOK_SIGNATURE_ENCODING = "base64"

    headers = {**signed_headers(encoding="base64"), "x-signature": "not base64!"}

    assert_refused(deliver(client, **headers), "x-signature is not valid base64.")


def test_a_hex_signature_is_refused_when_base64_is_configured(client, signed):
    signed.VAPI_WEBHOOK_SIGNATURE_ENCODING = "base64"

    assert_refused(deliver(client, **signed_headers()), "x-signature does not match the body.")


def test_the_legacy_secret_alone_is_refused_when_hmac_is_configured(client, signed):
    assert_refused(deliver(client, **{"X-Vapi-Secret": SECRET}), "x-signature is missing or empty.")


def test_an_hmac_delivery_with_an_empty_x_vapi_secret_is_accepted(client, signed):
    assert_accepted(deliver(client, **signed_headers(), **{"X-Vapi-Secret": ""}))


# --- Rotation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["secret", "bearer", "hmac"])
def test_while_rotating_either_secret_is_accepted_and_a_third_is_not(client, settings, kind):
    settings.VAPI_WEBHOOK_AUTH = kind
    settings.VAPI_WEBHOOK_SECRETS = [SECRET, NEXT_SECRET]
    old, new, retired = (message_body(timestamp=1764756000000 + n) for n in range(3))

    assert deliver(client, old, **credentials(kind, SECRET, old)).status_code == HTTPStatus.OK
    assert deliver(client, new, **credentials(kind, NEXT_SECRET, new)).status_code == HTTPStatus.OK
    refused = deliver(client, retired, **credentials(kind, RETIRED_SECRET, retired))

    assert refused.status_code == HTTPStatus.UNAUTHORIZED
    assert sorted(WebhookMessage.objects.values_list("payload__message__timestamp", flat=True)) == [
        1764756000000,
        1764756000001,
    ]


# --- Replay -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["secret", "bearer", "hmac"])
def test_the_same_delivery_twice_is_answered_200_and_applied_once(client, settings, kind):
    settings.VAPI_WEBHOOK_AUTH = kind
    headers = credentials(kind, SECRET)

    first = deliver(client, **headers)
    CallLog.objects.update(call_status="queued")  # so that applying it again would show
    again = deliver(client, **headers)

    assert (first.status_code, first.json()) == (HTTPStatus.OK, {})
    assert (again.status_code, again.json()) == (HTTPStatus.OK, {})
    assert WebhookMessage.objects.count() == 1
    assert CallLog.objects.get().call_status == "queued"


# --- Nothing configured: fail closed ---------------------------------------------------------------

UNUSABLE = {
    "no kind": {"VAPI_WEBHOOK_AUTH": ""},
    "unknown kind": {"VAPI_WEBHOOK_AUTH": "oauth2"},
    "no secrets": {"VAPI_WEBHOOK_SECRETS": []},
    "an empty secret": {"VAPI_WEBHOOK_SECRETS": [""]},
    "unknown algorithm": {"VAPI_WEBHOOK_AUTH": "hmac", "VAPI_WEBHOOK_HMAC_ALGORITHM": "md5"},
    "unknown encoding": {"VAPI_WEBHOOK_AUTH": "hmac", "VAPI_WEBHOOK_SIGNATURE_ENCODING": "base32"},
    "payload without the body": {"VAPI_WEBHOOK_AUTH": "hmac", "VAPI_WEBHOOK_SIGNED_PAYLOAD": "{timestamp}"},
}


@pytest.mark.parametrize("changes", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_without_a_usable_credential_every_message_is_refused(client, settings, changes):
    for name, value in changes.items():
        setattr(settings, name, value)

    for headers in (
        {"X-Vapi-Secret": SECRET},
        {"Authorization": f"Bearer {SECRET}"},
        signed_headers(),
        signed_headers(algorithm="md5"),
        signed_headers(payload="{timestamp}"),
        {},
    ):
        assert_refused(deliver(client, **headers), NO_CREDENTIAL)


NO_SECRETS_WARNING = (
    "Webhooks from Vapi are refused: VAPI_WEBHOOK_SECRETS is empty; set the secret(s) Vapi signs or sends with."
)


def webhook_warnings() -> list[str]:
    problems = [problem for problem in check_vapi_settings(None) if problem.id == "vapi_proxy.W002"]
    assert all(problem.level == checks.WARNING for problem in problems)
    return [problem.msg for problem in problems]


@pytest.mark.parametrize(
    "changes, warnings",
    [
        (
            {"VAPI_WEBHOOK_AUTH": "", "VAPI_WEBHOOK_SECRETS": []},
            [
                "Webhooks from Vapi are refused: VAPI_WEBHOOK_AUTH is ''; set it to one of secret, bearer, hmac "
                "to match the credential on your Vapi server URL.",
                NO_SECRETS_WARNING,
            ],
        ),
        (
            {"VAPI_WEBHOOK_SECRETS": [""]},
            [NO_SECRETS_WARNING],
        ),
        (
            {
                "VAPI_WEBHOOK_AUTH": "hmac",
                "VAPI_WEBHOOK_HMAC_ALGORITHM": "md5",
                "VAPI_WEBHOOK_SIGNATURE_ENCODING": "base32",
            },
            [
                "Webhooks from Vapi are refused: VAPI_WEBHOOK_HMAC_ALGORITHM 'md5' is not sha256, sha512 or sha1.",
                "Webhooks from Vapi are refused: VAPI_WEBHOOK_SIGNATURE_ENCODING 'base32' is not hex or base64.",
            ],
        ),
        (
            {"VAPI_WEBHOOK_AUTH": "hmac", "VAPI_WEBHOOK_SIGNED_PAYLOAD": "{timestamp}"},
            ["Webhooks from Vapi are refused: VAPI_WEBHOOK_SIGNED_PAYLOAD must contain {body}."],
        ),
    ],
    ids=["nothing", "empty-secret", "bad-algorithm-and-encoding", "payload-without-body"],
)
def test_the_system_check_warns_about_an_unusable_webhook_credential(settings, changes, warnings):
    for name, value in changes.items():
        setattr(settings, name, value)

    assert webhook_warnings() == warnings


def test_manage_py_check_reports_w002_without_failing(settings, capsys):
    settings.VAPI_WEBHOOK_AUTH = ""

    call_command("check")

    err = capsys.readouterr().err
    assert "vapi_proxy.W002" in err
    assert "VAPI_WEBHOOK_AUTH is ''" in err


@pytest.mark.parametrize("kind", ["secret", "bearer", "hmac"])
def test_the_system_check_is_silent_about_a_usable_webhook_credential(settings, kind):
    settings.VAPI_WEBHOOK_AUTH = kind

    assert webhook_warnings() == []


# --- The route: no CSRF, no CORS, a size limit ----------------------------------------------------


def test_the_route_needs_no_csrf_token():
    client = Client(enforce_csrf_checks=True)

    assert_accepted(deliver(client, **{"X-Vapi-Secret": SECRET}))


def test_the_route_answers_no_cors_headers_to_a_browser(client):
    origin = "https://app.example.com"  # allowed on /call/web
    response = deliver(client, Origin=origin, **{"X-Vapi-Secret": SECRET})
    preflight = client.options(
        URL,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-vapi-secret",
        },
    )

    assert response.status_code == HTTPStatus.OK
    assert [name for name in response.headers if name.lower().startswith("access-control-")] == []
    assert [name for name in preflight.headers if name.lower().startswith("access-control-")] == []


def test_a_refusal_to_a_browser_carries_no_cors_headers(client):
    response = deliver(client, Origin="https://app.example.com")

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert [name for name in response.headers if name.lower().startswith("access-control-")] == []


def test_a_body_over_the_size_limit_is_413_and_stores_nothing(client, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = len(BODY) - 1

    response = deliver(client, **{"X-Vapi-Secret": SECRET})

    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert response.json() == {
        "statusCode": 413,
        "error": HTTPStatus.REQUEST_ENTITY_TOO_LARGE.phrase,
        "message": f"The message is larger than {len(BODY) - 1} bytes.",
        "code": "body_too_large",
        "requestId": response["X-Request-ID"],
    }
    assert WebhookMessage.objects.count() == 0
    assert CallLog.objects.count() == 0


def test_a_body_exactly_at_the_size_limit_is_accepted(client, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = len(BODY)

    assert_accepted(deliver(client, **{"X-Vapi-Secret": SECRET}))


def test_a_five_megabyte_transcript_is_accepted_under_the_default_limit(client, signed):
    transcript = "AI: Hello, how can I help?\nUser: I'd like to talk about pricing.\n" * 80_000
    body = json.dumps(
        {
            "message": {
                "type": "end-of-call-report",
                "timestamp": 1764756000000,
                "endedReason": "customer-ended-call",
                "artifact": {"transcript": transcript},
                "call": {"id": "call-1"},
            }
        }
    ).encode()
    assert 5_000_000 < len(body) < django_settings.WEBHOOK_MAX_BODY_BYTES

    response = deliver(client, body, **signed_headers(body))

    assert response.status_code == HTTPStatus.OK
    assert WebhookMessage.objects.get().payload["message"]["artifact"]["transcript"] == transcript
    assert CallLog.objects.get().transcript == transcript


def test_an_answer_is_json_whatever_the_sender_accepts(client):
    response = deliver(client, Accept="text/html", **{"X-Vapi-Secret": SECRET})

    assert response["Content-Type"] == "application/json"
    assert_accepted(response)


# --- Secrets read as written, and never shown -------------------------------------------------------

READ_SECRETS = """
import json, os, django
django.setup()
from calls.webhook_auth import WebhookAuthConfig, WebhookAuthError, verify_webhook
config = WebhookAuthConfig.from_settings()
def outcome(name):
    try:
        verify_webhook(config, headers={"X-Vapi-Secret": os.environ[name]}, body=b"{}")
    except WebhookAuthError as err:
        return "refused: " + str(err)
    return "accepted"
names = ("PRESENT_UNKNOWN_REF", "PRESENT_KNOWN_REF", "SECRET_REFERENCE_TARGET")
print(json.dumps({name: outcome(name) for name in names}))
"""


def run_python(script: str, *args: str, **variables) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("DJANGO_", "VAPI_", "CUSTOMER_"))}
    env.update(DJANGO_SETTINGS_MODULE="proxy_site.settings", DJANGO_ENV_FILE="", DJANGO_DEBUG="true", **variables)
    command = [sys.executable, "-c", script] if script else [sys.executable, "manage.py", *args]
    return subprocess.run(command, env=env, cwd=django_settings.BASE_DIR, capture_output=True, text=True, timeout=60)


DOLLAR_SECRETS = {
    # django-environ would look these up as the names of other variables: the first does not
    # exist (start-up fails naming it), the second would silently become SECRET_REFERENCE_TARGET.
    "VAPI_WEBHOOK_SECRETS": "$wh-test-secret-7f3a, $SECRET_REFERENCE_TARGET",
    "VAPI_WEBHOOK_AUTH": "secret",
    "SECRET_REFERENCE_TARGET": "not-the-secret-but-what-it-names",
    "PRESENT_UNKNOWN_REF": "$wh-test-secret-7f3a",
    "PRESENT_KNOWN_REF": "$SECRET_REFERENCE_TARGET",
}


def test_webhook_secrets_starting_with_a_dollar_are_read_as_written():
    result = run_python(READ_SECRETS, **DOLLAR_SECRETS)

    assert result.returncode == 0, "start-up failed"
    assert json.loads(result.stdout) == {
        "PRESENT_UNKNOWN_REF": "accepted",
        "PRESENT_KNOWN_REF": "accepted",
        "SECRET_REFERENCE_TARGET": "refused: X-Vapi-Secret does not match the configured secret.",
    }
    assert "wh-test-secret-7f3a" not in result.stdout + result.stderr


def test_manage_py_check_with_dollar_secrets_finds_them_and_shows_none_of_them():
    secrets = {
        "VAPI_API_KEY": "$vapi-key-test-2c8d",
        "CUSTOMER_BACKEND_SECRET": "$backend-test-secret-91ab",
    }

    result = run_python("", "check", **DOLLAR_SECRETS, **secrets)

    output = result.stdout + result.stderr
    assert result.returncode == 0
    assert "(0 silenced)" in output
    assert "vapi_proxy.W001" not in output  # the key was read
    assert "vapi_proxy.W002" not in output  # and the webhook secrets
    for secret in ("wh-test-secret-7f3a", "vapi-key-test-2c8d", "backend-test-secret-91ab"):
        assert secret not in output


@pytest.fixture
def captured(caplog):
    """Every record any logger writes, at DEBUG."""
    caplog.set_level(logging.DEBUG)
    for name in ("calls", "django", "django.request", "django.db.backends"):
        caplog.set_level(logging.DEBUG, logger=name)
    django_logger = logging.getLogger("django")  # does not propagate to the root logger caplog listens on
    django_logger.addHandler(caplog.handler)
    yield caplog
    django_logger.removeHandler(caplog.handler)


ALL_SECRETS = (SECRET, NEXT_SECRET, TEST_VAPI_KEY, BACKEND_SECRET)

REFUSED = {
    "secret: another secret": ("secret", lambda: {"X-Vapi-Secret": BACKEND_SECRET}),
    "secret: the vapi key": ("secret", lambda: {"X-Vapi-Secret": TEST_VAPI_KEY}),
    "secret: almost": ("secret", lambda: {"X-Vapi-Secret": SECRET[:-1]}),
    "bearer: the vapi key": ("bearer", lambda: {"Authorization": f"Bearer {TEST_VAPI_KEY}"}),
    "bearer: wrong prefix": ("bearer", lambda: {"Authorization": f"Token {SECRET}"}),
    "hmac: the secret as signature": ("hmac", lambda: {"x-signature": SECRET, "x-timestamp": str(int(time.time()))}),
    "hmac: signed with another secret": ("hmac", lambda: signed_headers(secret=BACKEND_SECRET)),
    "hmac: stale": ("hmac", lambda: signed_headers(timestamp=str(int(time.time()) - 3600))),
    "none configured": ("", lambda: {"X-Vapi-Secret": SECRET}),
}


@pytest.mark.parametrize("kind, make_headers", REFUSED.values(), ids=REFUSED.keys())
def test_no_secret_appears_in_a_refusal_or_its_log_records(client, settings, captured, kind, make_headers):
    settings.VAPI_WEBHOOK_AUTH = kind
    settings.VAPI_WEBHOOK_SECRETS = [SECRET, NEXT_SECRET]
    headers = make_headers()

    response = deliver(client, **headers)
    with pytest.raises(WebhookAuthError) as raised:
        verify_webhook(WebhookAuthConfig.from_settings(), headers=headers, body=BODY)

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["message"] == str(raised.value)
    assert any(record.levelno >= logging.WARNING for record in captured.records)
    logged = captured.text + "".join(repr(record.args) for record in captured.records)
    for secret in ALL_SECRETS:
        assert secret not in response.content.decode()
        assert secret not in logged
        assert secret not in str(raised.value)
