"""The /demo/ page's routes without a browser: DJANGO_DEBUG only, the bundle, the jwt-mode token.
tests/browser/test_demo.py drives the page itself."""

import time

import jwt
import pytest

from assistants.models import AssistantType
from calls import demo

JWT_SECRET = "demo-route-test-secret-long-enough-51ac0e"


@pytest.mark.parametrize("path", ["/demo/", "/demo", "/demo/vapi.js", "/demo/token?userId=c1"])
def test_without_debug_the_demo_routes_do_not_exist(client, settings, path):
    settings.DEBUG = False

    response = client.get(path)

    assert response.status_code == 404
    body = response.json()
    assert body == {
        "statusCode": 404,
        "error": "Not Found",
        "message": f"There is nothing at {path.split('?')[0]}. Calls start with POST /call/web.",
        "code": "not_found",
        "requestId": body["requestId"],
    }


def test_the_page_lists_the_active_types_and_loads_the_local_bundle(client, settings, sales_coach, tmp_path, monkeypatch):
    settings.DEBUG = True
    monkeypatch.setattr(demo, "BUNDLE", tmp_path / "vapi.js")
    (tmp_path / "vapi.js").write_text("window.Vapi = class {};")
    AssistantType.objects.create(slug="retired", default_assistant=sales_coach.default_assistant, is_active=False)

    page = client.get("/demo/").content.decode()

    assert '<option value="sales-coach">sales-coach</option>' in page
    assert "retired" not in page
    assert '<script src="/demo/vapi.js"></script>' in page
    assert "bin/frontend" not in page


def test_without_the_bundle_the_page_names_the_command_that_builds_it(client, settings, sales_coach, tmp_path, monkeypatch):
    settings.DEBUG = True
    monkeypatch.setattr(demo, "BUNDLE", tmp_path / "missing.js")

    page = client.get("/demo/").content.decode()

    assert "The SDK bundle is not built yet" in page and "<code>bin/frontend</code>" in page
    assert "/demo/vapi.js" not in page
    response = client.get("/demo/vapi.js")
    assert (response.status_code, response.json()["code"]) == (404, "bundle_not_built")


def test_the_bundle_is_served_as_javascript(client, settings, tmp_path, monkeypatch):
    settings.DEBUG = True
    monkeypatch.setattr(demo, "BUNDLE", tmp_path / "vapi.js")
    (tmp_path / "vapi.js").write_text("window.Vapi = class {};")

    response = client.get("/demo/vapi.js")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/javascript; charset=utf-8"
    assert b"".join(response.streaming_content) == b"window.Vapi = class {};"


def test_in_jwt_mode_the_page_gets_a_ten_minute_token_for_the_user(client, settings):
    settings.DEBUG = True
    settings.PROXY_IDENTITY = "jwt"
    settings.PROXY_JWT_SECRETS = [JWT_SECRET]

    response = client.get("/demo/token", {"userId": "customer123"})

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    claims = jwt.decode(response.json()["token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "customer123"
    assert claims["exp"] - claims["iat"] == 600
    assert abs(claims["iat"] - time.time()) < 5


@pytest.mark.parametrize(
    "identity, secrets, query, status, code",
    [
        ("open", [], {"userId": "c1"}, 409, "not_jwt_mode"),
        ("jwt", [], {"userId": "c1"}, 409, "jwt_not_configured"),
        ("jwt", [JWT_SECRET], {}, 400, "invalid_field"),
        ("jwt", [JWT_SECRET], {"userId": "x" * 256}, 400, "invalid_field"),
    ],
)
def test_the_token_route_refuses_when_it_cannot_help(client, settings, identity, secrets, query, status, code):
    settings.DEBUG = True
    settings.PROXY_IDENTITY = identity
    settings.PROXY_JWT_SECRETS = secrets

    response = client.get("/demo/token", query)

    assert (response.status_code, response.json()["code"]) == (status, code)
    assert "token" not in response.json()
