"""Property-based run of the API contract against the running proxy (schemathesis, Hypothesis).

For every operation in /api/schema/, schemathesis generates requests that fit the schema and
requests that do not, sends them to the live server (pytest-django's `live_server`, a real HTTP
server in a thread of this process) and checks each answer: no 5xx, every status and header
documented, every body of the documented shape, and every error JSON. Vapi is the in-process
fake (an httpx MockTransport on the shared client, which the server thread uses too), so nothing
leaves the machine. Derandomized with a fixed number of examples: the same requests every run.
"""

import itertools
import json
import os

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis import openapi as schemathesis_openapi
from schemathesis.checks import CHECKS, load_all_checks

from calls.api_keys import issue_api_key
from calls.vapi import use_vapi_transport

pytestmark = pytest.mark.usefixtures("transactional_db")

# CI's bounded run; API_FUZZ_EXAMPLES=500 bin/test tests/test_api_fuzz.py digs deeper (still derandomized).
EXAMPLES_PER_OPERATION_AND_MODE = int(os.environ.get("API_FUZZ_EXAMPLES", "40"))
WEBHOOK_SECRET = "fuzz-webhook-secret"
PHONE_NUMBER_ID = "5f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
CHECK_NAMES = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
]


class NewCallEachTime:
    """Vapi answering each call start with a call of its own id, as the real one does."""

    def __init__(self):
        self.count = itertools.count(1)
        self.requests = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        number = next(self.count)
        call = {"id": f"fuzz-call-{number}", "status": "queued", "createdAt": "2026-12-03T10:15:00.000Z"}
        if request.url.path == "/call/web":
            call.update(type="webCall", webCallUrl=f"https://vapi.daily.co/room{number}")
        else:
            call.update(type="outboundPhoneCall", phoneNumberId=PHONE_NUMBER_ID, customer={"number": "+14155550100"})
        return httpx.Response(201, json=call)


@pytest.fixture
def running_proxy(live_server, settings, sales_coach, fake_vapi):
    """The live proxy with an assistant type, a server API key, a webhook secret and a fake Vapi."""
    settings.VAPI_WEBHOOK_AUTH = "secret"
    settings.VAPI_WEBHOOK_SECRETS = [WEBHOOK_SECRET]
    settings.PHONE_ALLOWED_COUNTRY_PREFIXES = ["+1", "+44"]
    settings.CUSTOMER_BACKEND_URL = ""  # tool calls get error results, no request leaves the process
    _, api_key = issue_api_key(name="fuzz", assistant_types=[sales_coach], phone_number_ids=[PHONE_NUMBER_ID])
    vapi = NewCallEachTime()
    use_vapi_transport(httpx.MockTransport(vapi.handle))  # the conftest fixture puts its own back after
    schema = schemathesis_openapi.from_url(f"{live_server.url}/api/schema/?format=json")
    # The credentials each operation needs to get past its first check, so the bodies are exercised.
    credentials = {
        "startPhoneCall": {"Authorization": f"Bearer {api_key}"},
        "receiveVapiMessage": {"X-Vapi-Secret": WEBHOOK_SECRET},
    }
    return live_server.url, schema, credentials, vapi


def header(response, name: str) -> str:
    return (response.headers.get(name.lower()) or [""])[0]


def error_is_json(response, where: str) -> None:
    if response.status_code >= 400:
        assert header(response, "Content-Type").startswith("application/json"), where
        body = json.loads(response.content)
        assert set(body) == {"statusCode", "error", "message", "code", "requestId"}, where
        assert body["statusCode"] == response.status_code, where
        if header(response, "Idempotent-Replayed") != "true":  # a replay keeps the first request's id
            assert body["requestId"] == header(response, "X-Request-ID"), where


def test_every_operation_answers_as_its_schema_says(running_proxy):
    base_url, schema, credentials, vapi = running_proxy
    load_all_checks()
    checks = CHECKS.get_by_names(CHECK_NAMES)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted(op.definition.raw["operationId"] for op in operations) == [
        "health",
        "receiveVapiMessage",
        "startPhoneCall",
        "startWebCall",
    ]
    statuses = {}

    def send(case, where: str):
        response = case.call(base_url=base_url, timeout=20)
        where = f"{case.method} {case.path} {where}: {response.status_code} {response.text[:300]}"
        case.validate_response(response, checks=checks)
        error_is_json(response, where)
        statuses.setdefault(case.operation.definition.raw["operationId"], set()).add(response.status_code)

    for operation in operations:
        operation_id = operation.definition.raw["operationId"]
        # First the schema's own request examples, as they are.
        examples = operation.definition.raw.get("requestBody", {}).get("content", {}).get("application/json", {})
        for name, example in examples.get("examples", {}).items():
            case = operation.Case(
                body=example["value"], media_type="application/json", headers=credentials.get(operation_id)
            )
            send(case, f"example {name}")

        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE and operation.method == "get":
                continue  # /healthz takes nothing that could be wrong

            @hypothesis_settings(
                max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode, headers=credentials.get(operation_id)))
            def run(case):
                send(case, mode.value)

            run()

    # The run reached past the first checks: calls were started and webhooks applied.
    assert 201 in statuses["startWebCall"], statuses
    assert 400 in statuses["startWebCall"], statuses
    assert statuses["receiveVapiMessage"] & {200}, statuses
    assert vapi.requests > 0
