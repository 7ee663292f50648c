"""Shared fixtures.

Every test runs with a fake Vapi behind the shared client's transport (httpx.MockTransport), so
no test can reach the real Vapi by accident. `fake_vapi.requests` holds what Vapi received;
`fake_vapi.reply(...)` sets what it answers.
"""

import json
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest

from assistants.models import Assistant, AssistantType, ClientVariable, UserMapping
from calls.vapi import use_vapi_transport
from tests.vapi_standin import standin_vapi  # noqa: F401  (a fixture for every test module)

FIXTURES = Path(__file__).parent / "fixtures"
TEST_VAPI_KEY = "test-private-key-5d2c9e"
TEST_VAPI_BASE_URL = "https://vapi.test"
PERMANENT_ID = "6f2b7c1e-4d3a-4b5c-8e9f-0a1b2c3d4e5f"


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


class FakeVapi:
    """Stands in for Vapi at the httpx transport: records requests, answers what the test says."""

    def __init__(self):
        self.requests: list[httpx.Request] = []
        self._answer = None
        self.reply(201, load_fixture("vapi_call_web_201.json"))

    def reply(self, status: int = 201, json_body=None, *, headers: dict | None = None, content: bytes | None = None):
        def answer(request):
            if content is not None:
                return httpx.Response(status, content=content, headers=headers)
            return httpx.Response(status, json=json_body, headers=headers)

        self._answer = answer

    def raise_error(self, exc_type: type[Exception]):
        def answer(request):
            raise exc_type("simulated", request=request)

        self._answer = answer

    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self._answer(request)

    @property
    def last_json(self) -> dict:
        return json.loads(self.requests[-1].content)


@pytest.fixture(autouse=True)
def vapi_settings(settings):
    settings.VAPI_API_KEY = TEST_VAPI_KEY
    settings.VAPI_BASE_URL = TEST_VAPI_BASE_URL
    settings.VAPI_UPSTREAM_AUTH = "private_key"
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    # Most tests are about something else: trust the body's userId and set no limits.
    # Tests of identity and limits set their own.
    settings.PROXY_IDENTITY = "open"
    for name in (
        "LIMIT_USER_CALLS_PER_MINUTE",
        "LIMIT_USER_CALLS_PER_DAY",
        "LIMIT_USER_CONCURRENT_CALLS",
        "LIMIT_TYPE_CONCURRENT_CALLS",
        "LIMIT_DEPLOYMENT_CONCURRENT_CALLS",
        "LIMIT_USER_DAILY_SPEND",
        "LIMIT_DEPLOYMENT_DAILY_SPEND",
    ):
        setattr(settings, name, None)
    settings.REFUSAL_THROTTLE_PER_MINUTE = None
    # Production serves hashed files collectstatic made; tests render admin pages without them.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return settings


@pytest.fixture(autouse=True)
def _empty_cache():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def fake_vapi(vapi_settings):
    fake = FakeVapi()
    use_vapi_transport(httpx.MockTransport(fake.handle))
    yield fake
    use_vapi_transport(None)


@pytest.fixture
def sales_coach(db):
    """A transient assistant for `sales-coach`, open to unmapped users, with one client variable."""
    assistant = Assistant.objects.create(
        name="Sales coach",
        kind=Assistant.Kind.TRANSIENT,
        config={
            "firstMessage": "Hi {{customerName}}!",
            "model": {
                "provider": "openai",
                "model": "gpt-4o-mini",
                "messages": [{"role": "system", "content": "SECRET SYSTEM PROMPT: you coach sales for {{companyName}}."}],
            },
            "voice": {"provider": "vapi", "voiceId": "Elliot"},
        },
        default_variables={"companyName": "Acme", "customerName": "there"},
    )
    ClientVariable.objects.create(assistant=assistant, name="topic", max_length=20)
    return AssistantType.objects.create(slug="sales-coach", default_assistant=assistant)


@pytest.fixture
def alice(sales_coach):
    """Alice has her own mapping for sales-coach, to a permanent assistant, with her own values."""
    premium = Assistant.objects.create(
        name="Premium coach",
        kind=Assistant.Kind.PERMANENT,
        vapi_assistant_id=PERMANENT_ID,
        default_variables={"companyName": "Acme"},
    )
    ClientVariable.objects.create(assistant=premium, name="topic", max_length=20)
    ClientVariable.objects.create(assistant=premium, name="customerName", max_length=50)
    return UserMapping.objects.create(
        user_id="alice",
        assistant_type=sales_coach,
        assistant=premium,
        variable_values={"customerName": "Alice A."},
    )


def post_call(client, body, *, path="/call/web", content_type="application/json", **headers):
    """POSTs like the browser SDK: JSON body, optional Origin/Authorization headers."""
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.generic("POST", path, data=data, content_type=content_type, **headers)



def error_body(response, status, code, message) -> dict:
    """The proxy's one error shape, as `response` should carry it."""
    return {
        "statusCode": status,
        "error": HTTPStatus(status).phrase,
        "message": message,
        "code": code,
        "requestId": response["X-Request-ID"],
    }
