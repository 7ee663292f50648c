"""The API contract at /api/schema/: valid OpenAPI 3, exactly the public routes, and true to the code."""

import ast
import json
import os
import subprocess
import sys
import time
from http import HTTPStatus
from pathlib import Path

import jwt
import pytest
import yaml
from django.contrib.staticfiles import finders
from openapi_spec_validator import validate

from calls import bodies, phone
from calls.api_keys import issue_api_key
from calls.api_schema import CALL_WEB_REQUEST_EXAMPLES, PHONE_REQUEST_EXAMPLE, WEBHOOK_REQUEST_EXAMPLES
from calls.models import CallLog, WebhookMessage
from tests.conftest import post_call

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_OPERATIONS = {
    ("/call/web", "post"): "startWebCall",
    ("/call", "post"): "startPhoneCall",
    ("/webhooks/vapi", "post"): "receiveVapiMessage",
    ("/healthz", "get"): "health",
}
ERROR_FIELDS = ["statusCode", "error", "message", "code", "requestId"]
JWT_SECRET = "a-test-secret-that-is-long-enough-for-hs256"
WEBHOOK_SECRET = "webhook-secret-for-the-schema-tests"


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == HTTPStatus.OK
    return json.loads(response.content)


def operations(schema):
    return {(path, method): op for path, item in schema["paths"].items() for method, op in item.items()}


def response_examples(operation) -> dict[str, list[dict]]:
    """status -> the example bodies documented for it."""
    return {
        status: [example["value"] for example in answer["content"]["application/json"].get("examples", {}).values()]
        for status, answer in operation["responses"].items()
        if "content" in answer
    }


def error_examples(operation) -> set[tuple[str, str]]:
    return {
        (status, body["code"])
        for status, examples in response_examples(operation).items()
        for body in examples
        if "code" in body
    }


# --- serving --------------------------------------------------------------------------------


def test_the_schema_is_served_as_yaml_with_debug_off(client, settings):
    assert settings.DEBUG is False

    response = client.get("/api/schema/")

    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    document = yaml.safe_load(response.content)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "vapi-proxy"


@pytest.mark.parametrize(
    "query, headers",
    [("?format=json", {}), ("", {"HTTP_ACCEPT": "application/json"}), ("", {"HTTP_ACCEPT": "application/vnd.oai.openapi+json"})],
)
def test_the_schema_is_served_as_json_when_asked(client, query, headers):
    response = client.get(f"/api/schema/{query}", **headers)

    assert response.status_code == HTTPStatus.OK
    assert "json" in response["Content-Type"]
    assert json.loads(response.content)["openapi"].startswith("3.")


@pytest.mark.parametrize("query, headers", [("?format=xml", {}), ("", {"HTTP_ACCEPT": "text/csv"})])
def test_an_unknown_schema_format_falls_back_to_yaml(client, query, headers):
    response = client.get(f"/api/schema/{query}", **headers)

    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert yaml.safe_load(response.content)["openapi"].startswith("3.")


def test_the_schema_route_leaves_unknown_api_paths_a_json_404(client):
    for path in ("/api/", "/api/schema/extra", "/api/schemas/", "/api/docs/x"):
        response = client.get(path)

        assert response.status_code == HTTPStatus.NOT_FOUND, path
        assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_the_contract_routes_refuse_other_methods_with_a_json_405(client, path, method):
    # OPTIONS on the docs page used to answer 500: REST framework's description cannot be rendered as HTML.
    response = client.generic(method, path, data="{}", content_type="application/json")

    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED
    assert response.json() == {
        "statusCode": 405,
        "error": "Method Not Allowed",
        "message": "This method is not allowed here.",
        "code": "method_not_allowed",
        "requestId": response["X-Request-ID"],
    }
    assert response["Allow"] == "GET, HEAD"


def test_the_docs_page_loads_swagger_ui_from_the_proxy_itself(client):
    response = client.get("/api/docs/")

    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert 'url: "/api/schema"' in page
    assert "cdn" not in page.lower() and "unpkg" not in page.lower()
    for name in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        assert finders.find(f"drf_spectacular_sidecar/swagger-ui-dist/{name}"), name


# --- what it says ---------------------------------------------------------------------------


def test_the_schema_is_valid_openapi(schema):
    validate(schema)  # raises on any violation of the OpenAPI 3 specification


def test_the_schema_lists_exactly_the_public_routes(schema):
    assert {key: op["operationId"] for key, op in operations(schema).items()} == PUBLIC_OPERATIONS


def test_manage_py_spectacular_validates_without_warnings(tmp_path):
    env = {**os.environ, "DJANGO_ENV_FILE": "", "DJANGO_DEBUG": "false", "PROXY_IDENTITY": "jwt"}
    env.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-not-for-production")
    env.setdefault("DJANGO_ALLOWED_HOSTS", "localhost")
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--skip-checks",
         "--file", str(tmp_path / "schema.yaml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    document = yaml.safe_load((tmp_path / "schema.yaml").read_text())
    assert set(document["paths"]) == {"/call/web", "/call", "/webhooks/vapi", "/healthz"}


def test_the_security_schemes_are_the_credentials_each_route_takes(schema):
    schemes = schema["components"]["securitySchemes"]
    ops = operations(schema)

    assert ops[("/call/web", "post")]["security"] == [{"sdkToken": []}, {"sessionCookie": []}, {}]
    assert schemes["sdkToken"]["scheme"] == "bearer" and schemes["sdkToken"]["bearerFormat"] == "JWT"
    assert schemes["sessionCookie"] == {**schemes["sessionCookie"], "in": "cookie", "name": "sessionid"}
    assert ops[("/call", "post")]["security"] == [{"serverApiKey": []}]
    assert schemes["serverApiKey"]["scheme"] == "bearer"
    assert ops[("/webhooks/vapi", "post")]["security"] == [
        {"vapiSecret": []},
        {"vapiBearer": []},
        {"vapiHmac": [], "vapiHmacTimestamp": []},
    ]
    assert schemes["vapiSecret"] == {**schemes["vapiSecret"], "in": "header", "name": "X-Vapi-Secret"}
    assert schemes["vapiBearer"]["scheme"] == "bearer"
    assert schemes["vapiHmac"]["name"] == "x-signature"
    assert schemes["vapiHmacTimestamp"]["name"] == "x-timestamp"


def test_the_webhook_credential_headers_follow_the_settings(client, settings):
    settings.VAPI_WEBHOOK_BEARER_HEADER = "X-Webhook-Token"
    settings.VAPI_WEBHOOK_BEARER_PREFIX = ""
    settings.VAPI_WEBHOOK_SIGNATURE_HEADER = "x-vapi-signature"

    schemes = json.loads(client.get("/api/schema/?format=json").content)["components"]["securitySchemes"]

    assert schemes["vapiBearer"] == {**schemes["vapiBearer"], "type": "apiKey", "in": "header", "name": "X-Webhook-Token"}
    assert schemes["vapiHmac"]["name"] == "x-vapi-signature"


def test_the_schema_reveals_no_secret(client, settings):
    settings.VAPI_WEBHOOK_SECRETS = ["webhook-secret-7f3a"]
    settings.PROXY_JWT_SECRETS = ["jwt-secret-9c1d-long-enough-for-anything"]
    settings.CUSTOMER_BACKEND_SECRET = "backend-secret-2b8e"

    document = client.get("/api/schema/").content.decode()

    for secret in ("webhook-secret-7f3a", "jwt-secret-9c1d", "backend-secret-2b8e", settings.VAPI_API_KEY, settings.SECRET_KEY):
        assert secret not in document


def test_the_request_shapes_have_the_fields_the_parsers_accept(schema):
    components = schema["components"]["schemas"]

    def fields(name):
        assert components[name]["additionalProperties"] is False
        return set(components[name]["properties"])

    assert fields("CallWebRequest") == bodies._TOP_LEVEL
    assert fields("AssistantSelection") == bodies._IN_ASSISTANT
    assert fields("CallOverrides") == bodies._IN_OVERRIDES
    assert fields("CallMetadata") == bodies._IN_METADATA
    assert fields("PhoneCallRequest") == set(phone._FIELDS + phone._OPTIONAL_FIELDS)
    assert set(components["PhoneCallRequest"]["required"]) == set(phone._FIELDS)
    assert fields("Customer") == set(phone._CUSTOMER_FIELDS)


def test_the_success_shapes_have_the_fields_the_routes_answer(schema):
    from calls import services

    components = schema["components"]["schemas"]

    assert set(components["WebCall"]["properties"]) == {*services._CALL_FIELDS, "assistant"}
    assert set(components["PhoneCall"]["properties"]) == {*phone._CALL_FIELDS, "customer"}
    assert sorted(components["Error"]["required"]) == sorted(ERROR_FIELDS)


def test_every_body_shape_is_a_request_example(schema):
    examples = operations(schema)[("/call/web", "post")]["requestBody"]["content"]["application/json"]["examples"]
    bodies_shown = [example["value"] for example in examples.values()]

    shapes = {
        "assistant.userId/assistantType": lambda b: {"userId", "assistantType"} <= set(b.get("assistant", {})),
        "assistant.variableValues": lambda b: "variableValues" in b.get("assistant", {}),
        "assistant.metadata": lambda b: "metadata" in b.get("assistant", {}),
        "assistantId + assistantOverrides.metadata": lambda b: "assistantId" in b
        and "metadata" in b.get("assistantOverrides", {}),
        "assistant + assistantOverrides": lambda b: "assistant" in b and "assistantOverrides" in b,
        "top-level userId/assistantType/variableValues": lambda b: {"userId", "assistantType", "variableValues"} <= set(b),
        "no userId": lambda b: "userId" not in json.dumps(b),
        "roomDeleteOnUserLeaveEnabled": lambda b: "roomDeleteOnUserLeaveEnabled" in b,
    }
    for shape, shown in shapes.items():
        assert any(shown(body) for body in bodies_shown), shape
    assert len(bodies_shown) == len(CALL_WEB_REQUEST_EXAMPLES)


def test_every_call_web_request_example_starts_a_call(client, settings, sales_coach, fake_vapi):
    for number, (name, (_, body)) in enumerate(CALL_WEB_REQUEST_EXAMPLES.items()):
        fake_vapi.reply(201, {"id": f"call-{number}", "webCallUrl": "https://vapi.daily.co/room"})
        headers = {}
        if "userId" not in json.dumps(body):  # the user comes from the token
            settings.PROXY_IDENTITY, settings.PROXY_JWT_SECRETS = "jwt", [JWT_SECRET]
            token = jwt.encode({"sub": "customer123", "exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256")
            headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        else:
            settings.PROXY_IDENTITY = "open"

        response = post_call(client, body, **headers)

        assert response.status_code == HTTPStatus.CREATED, (name, response.json())
        sent = fake_vapi.last_json["assistantOverrides"]
        expected_user = "12345" if body.get("userId") == 12345 else "customer123"
        assert sent["metadata"]["userId"] == expected_user, name
        if "renewals" in json.dumps(body):
            assert sent["variableValues"]["topic"] == "renewals", name
        if "roomDeleteOnUserLeaveEnabled" in body:
            assert fake_vapi.last_json["roomDeleteOnUserLeaveEnabled"] is True


def test_the_phone_request_example_places_a_call(client, settings, sales_coach, fake_vapi):
    settings.PHONE_ALLOWED_COUNTRY_PREFIXES = ["+1"]
    _, key = issue_api_key(
        name="CRM", assistant_types=[sales_coach], phone_number_ids=[PHONE_REQUEST_EXAMPLE["phoneNumberId"]]
    )
    fake_vapi.reply(201, {"id": "7a3e5b1c-2d4f-4a6b-8c0d-1e2f3a4b5c6d", "status": "queued"})

    response = post_call(client, PHONE_REQUEST_EXAMPLE, path="/call", HTTP_AUTHORIZATION=f"Bearer {key}")

    assert response.status_code == HTTPStatus.CREATED, response.json()
    assert fake_vapi.last_json["customer"] == {"number": "+14155550100"}


def test_every_webhook_request_example_is_accepted(client, settings, db):
    settings.VAPI_WEBHOOK_AUTH, settings.VAPI_WEBHOOK_SECRETS = "secret", [WEBHOOK_SECRET]

    for name, body in WEBHOOK_REQUEST_EXAMPLES.items():
        response = post_call(client, body, path="/webhooks/vapi", HTTP_X_VAPI_SECRET=WEBHOOK_SECRET)

        assert response.status_code == HTTPStatus.OK, (name, response.json())
    assert sorted(WebhookMessage.objects.values_list("message_type", flat=True)) == sorted(WEBHOOK_REQUEST_EXAMPLES)


# --- every error the code can answer is documented --------------------------------------------


def _limit_names() -> set[str]:
    """The first item of each tuple in limits.py's `checks` list: the codes are limit_<name>."""
    tree = ast.parse((ROOT / "calls" / "limits.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "checks" for t in node.targets):
            return {item.elts[0].value for item in node.value.elts}
    raise AssertionError("limits.py has no `checks` list")


def errors_in_the_code() -> set[tuple[str, str]]:
    """(status, code) of every ProxyError(...) and error_response(...) in calls/ and assistants/.

    A status computed at run time is Vapi's own 4xx (upstream_rejected): documented as 4XX.
    """
    found = set()
    # /demo/ is a page for local development (DEBUG only), not part of the public contract.
    debug_only = {ROOT / "calls" / "demo.py"}
    for path in sorted({*(ROOT / "calls").glob("*.py"), *(ROOT / "assistants").glob("*.py")} - debug_only):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("ProxyError", "error_response")):
                continue
            if len(node.args) < 2:
                continue
            status_node, code_node = node.args[:2]
            status = str(status_node.value) if isinstance(status_node, ast.Constant) else "4XX"
            if isinstance(code_node, ast.Constant):
                found.add((status, code_node.value))
            elif isinstance(code_node, ast.JoinedStr):
                found |= {(status, f"limit_{name}") for name in _limit_names()}
    return found


def test_every_error_the_code_answers_has_an_example(schema):
    documented = set().union(*(error_examples(op) for op in operations(schema).values()))
    assert len(errors_in_the_code()) > 50  # the scan found the codes, not nothing
    # Not an operation: unknown URLs (the catch-all) and other methods are described in prose.
    undocumented = {
        (status, code) for status, code in errors_in_the_code() if code not in ("not_found", "method_not_allowed")
    } - documented

    assert undocumented == set()


@pytest.mark.parametrize(
    "operation, codes",
    [
        (("/call/web", "post"), {"token_missing", "token_invalid", "token_expired", "not_logged_in",
                                 "origin_not_allowed", "user_mismatch", "override_not_allowed", "conflicting_field",
                                 "limit_user_calls_per_minute", "limit_mapping_concurrent_calls", "upstream_timeout"}),
        (("/call", "post"), {"api_key_missing", "api_key_invalid", "idempotency_key_reused", "idempotency_in_progress",
                             "invalid_phone_number", "destination_not_allowed", "phone_calls_not_configured",
                             "limit_key_calls_per_day", "limit_user_calls_per_day", "upstream_timeout",
                             "upstream_outcome_unknown"}),
        (("/webhooks/vapi", "post"), {"webhook_unauthorized", "invalid_message", "body_too_large"}),
        (("/healthz", "get"), {"database_unavailable"}),
    ],
)
def test_each_route_documents_its_own_errors(schema, operation, codes):
    documented = {code for _, code in error_examples(operations(schema)[operation])}

    assert codes <= documented


def test_the_web_route_documents_no_api_key_limits(schema):
    documented = {code for _, code in error_examples(operations(schema)[("/call/web", "post")])}

    assert {code for code in documented if code.startswith("limit_key_")} == set()
    assert {f"limit_{name}" for name in _limit_names() if not name.startswith("key_")} <= documented


def test_error_examples_have_the_error_shape_and_their_status(schema):
    for key, operation in operations(schema).items():
        for status, examples in response_examples(operation).items():
            if status.startswith("2"):
                continue
            assert operation["responses"][status]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }
            for body in examples:
                assert list(body) == ERROR_FIELDS, (key, status)
                if status == "4XX":
                    assert 400 <= body["statusCode"] < 500
                else:
                    assert body["statusCode"] == int(status), (key, body)
                assert body["error"] == HTTPStatus(body["statusCode"]).phrase


def test_retry_after_is_documented_on_429(schema):
    for key in (("/call/web", "post"), ("/call", "post")):
        headers = operations(schema)[key]["responses"]["429"]["headers"]
        assert {"Retry-After", "X-Request-ID"} <= set(headers), key


def test_the_success_examples_are_what_the_routes_answer(schema, client, sales_coach, fake_vapi):
    example = response_examples(operations(schema)[("/call/web", "post")])["201"][0]

    response = post_call(client, {"assistant": {"userId": "customer123", "assistantType": "sales-coach"}})

    assert response.json() == example  # the fake Vapi answers the fixture the example was taken from
    assert CallLog.objects.get().outcome == CallLog.Outcome.CREATED
