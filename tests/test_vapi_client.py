"""`calls.vapi.VapiClient` on its own, against an httpx.MockTransport."""

import gzip
import json

import httpx
import jwt
import pytest

from calls import vapi as vapi_module
from calls.vapi import (
    USER_AGENT,
    VapiClient,
    VapiInvalidResponse,
    VapiNotConfigured,
    VapiReply,
    VapiResponseError,
    VapiTimeout,
    VapiUnreachable,
    get_vapi_client,
)

KEY = "unit-test-vapi-private-key-not-a-real-one"
CALL = {"id": "call-1", "webCallUrl": "https://vapi.daily.co/room-1", "status": "queued"}


class Upstream:
    """Records what the client sends and answers with whatever `answer` returns."""

    def __init__(self, answer=None):
        self.requests: list[httpx.Request] = []
        self.answer = answer or (lambda request: httpx.Response(201, json=CALL))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.answer(request)


def make_client(answer=None, **options):
    upstream = Upstream(answer)
    options.setdefault("api_key", KEY)
    options.setdefault("base_url", "https://vapi.test")
    return VapiClient(transport=httpx.MockTransport(upstream), **options), upstream


def raising(exc_type):
    def answer(request):
        raise exc_type("simulated", request=request)

    return answer


def test_it_returns_vapis_status_and_json_object():
    client, upstream = make_client()

    reply = client.create_web_call({"assistantId": "a-uuid"})

    assert reply == VapiReply(status=201, data=CALL)
    assert len(upstream.requests) == 1


def test_it_posts_the_body_as_json_with_only_its_own_headers():
    client, upstream = make_client()

    client.create_web_call({"assistantId": "a-uuid", "assistantOverrides": {"metadata": {"userId": "u1"}}})

    sent = upstream.requests[0]
    assert sent.method == "POST"
    assert sent.url == "https://vapi.test/call/web"
    assert json.loads(sent.content) == {"assistantId": "a-uuid", "assistantOverrides": {"metadata": {"userId": "u1"}}}
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
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["accept"] == "application/json"
    assert sent.headers["host"] == "vapi.test"
    assert sent.headers["user-agent"] == USER_AGENT
    assert USER_AGENT.startswith("vapi-proxy")


def test_it_keeps_a_path_in_the_base_url():
    client, upstream = make_client(base_url="https://gateway.test/vapi")

    client.create_web_call({})

    assert upstream.requests[0].url == "https://gateway.test/vapi/call/web"


def test_it_sets_explicit_timeouts_on_every_request():
    client, upstream = make_client(timeout=12.5, connect_timeout=2.0)

    client.create_web_call({})

    assert upstream.requests[0].extensions["timeout"] == {"connect": 2.0, "read": 12.5, "write": 12.5, "pool": 12.5}


def test_it_never_sends_cookies_vapi_set_on_an_earlier_answer():
    client, upstream = make_client(
        lambda request: httpx.Response(201, json=CALL, headers={"Set-Cookie": "AWSALB=sticky-1; Path=/"})
    )

    client.create_web_call({})
    client.create_web_call({})

    assert [request.headers.get("cookie") for request in upstream.requests] == [None, None]


def test_it_sends_nothing_without_a_key():
    client, upstream = make_client(api_key="")

    assert client.configured is False
    with pytest.raises(VapiNotConfigured):
        client.create_web_call({})
    assert upstream.requests == []


def test_it_decodes_a_gzip_compressed_answer():
    client, _ = make_client(
        lambda request: httpx.Response(
            201, content=gzip.compress(json.dumps(CALL).encode()), headers={"Content-Encoding": "gzip"}
        )
    )

    assert client.create_web_call({}) == VapiReply(status=201, data=CALL)


def test_it_reports_a_connection_failure_as_unreachable_after_one_try():
    client, upstream = make_client(raising(httpx.ConnectError))

    with pytest.raises(VapiUnreachable, match=r"^Vapi could not be reached \(ConnectError\)\.$"):
        client.create_web_call({})
    assert len(upstream.requests) == 1


def test_it_reports_a_dropped_connection_as_unreachable():
    client, _ = make_client(raising(httpx.RemoteProtocolError))

    with pytest.raises(VapiUnreachable, match=r"\(RemoteProtocolError\)"):
        client.create_web_call({})


@pytest.mark.parametrize("exc_type", [httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout])
def test_it_reports_every_kind_of_timeout_as_a_timeout_after_one_try(exc_type):
    client, upstream = make_client(raising(exc_type))

    with pytest.raises(VapiTimeout, match=rf"^Vapi did not answer in time \({exc_type.__name__}\)\.$"):
        client.create_web_call({})
    assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (401, {"statusCode": 401, "message": "Invalid Key.", "error": "Unauthorized"}, "Invalid Key."),
        (
            400,
            {"statusCode": 400, "message": ["assistantId must be a UUID", "name too long"], "error": "Bad Request"},
            "assistantId must be a UUID; name too long",
        ),
        (404, {"statusCode": 404, "message": "Not Found"}, "Not Found"),
        (500, {"statusCode": 500, "message": "Internal server error"}, "Internal server error"),
        (422, {"message": {"nested": "object"}}, "{'nested': 'object'}"),
        (400, {"error": "Bad Request"}, ""),
        (400, ["not", "an", "object"], ""),
    ],
)
def test_it_raises_vapis_status_and_message_on_an_error_answer(status, body, message):
    client, upstream = make_client(lambda request: httpx.Response(status, json=body))

    with pytest.raises(VapiResponseError) as raised:
        client.create_web_call({})

    assert (raised.value.status, raised.value.message, raised.value.retry_after) == (status, message, None)
    assert len(upstream.requests) == 1


def test_it_gives_an_empty_message_for_an_error_answer_that_is_not_json():
    client, _ = make_client(lambda request: httpx.Response(502, text="<html>Bad Gateway</html>"))

    with pytest.raises(VapiResponseError) as raised:
        client.create_web_call({})

    assert (raised.value.status, raised.value.message) == (502, "")


def test_it_keeps_retry_after_from_a_rate_limit_answer():
    client, _ = make_client(
        lambda request: httpx.Response(429, json={"message": "Too Many Requests"}, headers={"Retry-After": "17"})
    )

    with pytest.raises(VapiResponseError) as raised:
        client.create_web_call({})

    assert (raised.value.status, raised.value.message, raised.value.retry_after) == (429, "Too Many Requests", "17")


def test_it_does_not_follow_redirects():
    client, upstream = make_client(
        lambda request: httpx.Response(307, headers={"Location": "https://elsewhere.test/call/web"})
    )

    with pytest.raises(VapiResponseError) as raised:
        client.create_web_call({})

    assert raised.value.status == 307
    assert [str(request.url) for request in upstream.requests] == ["https://vapi.test/call/web"]


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(201, text="<html>created</html>"), "Vapi's answer was not JSON."),
        (httpx.Response(201, content=b""), "Vapi's answer was not JSON."),
        (httpx.Response(204), "Vapi's answer was not JSON."),
        (httpx.Response(201, json=[CALL]), "Vapi's answer was not a JSON object."),
        (httpx.Response(200, json="queued"), "Vapi's answer was not a JSON object."),
    ],
)
def test_it_refuses_a_success_answer_that_is_not_a_json_object(response, message):
    client, _ = make_client(lambda request: response)

    with pytest.raises(VapiInvalidResponse) as raised:
        client.create_web_call({})

    assert (str(raised.value), raised.value.status) == (message, response.status_code)


def test_it_scrubs_its_key_from_vapis_error_message():
    client, _ = make_client(
        lambda request: httpx.Response(400, json={"message": [f"key {KEY} is not valid", f"Bearer {KEY}"]})
    )

    with pytest.raises(VapiResponseError) as raised:
        client.create_web_call({})

    assert raised.value.message == "key [redacted] is not valid; Bearer [redacted]"
    assert str(raised.value) == raised.value.message


def test_jwt_mode_sends_a_short_lived_token_signed_with_the_key_instead_of_the_key(monkeypatch):
    monkeypatch.setattr(vapi_module.time, "time", lambda: 1_700_000_000.0)
    client, upstream = make_client(upstream_auth="jwt", org_id="org-123", jwt_ttl_seconds=300)

    client.create_web_call({})

    authorization = upstream.requests[0].headers["authorization"]
    scheme, token = authorization.split(" ")
    assert scheme == "Bearer"
    assert jwt.decode(token, KEY, algorithms=["HS256"], options={"verify_exp": False}) == {
        "orgId": "org-123",
        "token": {"tag": "private"},
        "iat": 1_700_000_000,
        "exp": 1_700_000_300,
    }
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert KEY not in repr(upstream.requests[0].headers.raw)
    assert KEY.encode() not in upstream.requests[0].content


def test_jwt_mode_reuses_a_token_until_it_nears_expiry(monkeypatch):
    now = [1_700_000_000.0]
    monkeypatch.setattr(vapi_module.time, "time", lambda: now[0])
    client, upstream = make_client(upstream_auth="jwt", org_id="org-123", jwt_ttl_seconds=300)

    client.create_web_call({})
    now[0] += 260
    client.create_web_call({})
    now[0] += 20
    client.create_web_call({})

    tokens = [request.headers["authorization"] for request in upstream.requests]
    assert tokens[0] == tokens[1]
    assert tokens[2] != tokens[1]
    assert jwt.decode(tokens[2].removeprefix("Bearer "), KEY, algorithms=["HS256"], options={"verify_exp": False})[
        "exp"
    ] == 1_700_000_000 + 280 + 300


def test_jwt_mode_scrubs_the_token_and_the_key_from_vapis_error_message():
    def echo(request):
        token = request.headers["authorization"].removeprefix("Bearer ")
        return httpx.Response(401, json={"message": f"token {token} rejected; signed with {KEY}?"})

    client, _ = make_client(echo, upstream_auth="jwt", org_id="org-123")

    with pytest.raises(VapiResponseError) as raised:
        client.create_web_call({})

    assert raised.value.message == "token [redacted] rejected; signed with [redacted]?"


def test_it_builds_the_client_from_settings(settings):
    settings.VAPI_API_KEY = "from-settings-key"
    settings.VAPI_BASE_URL = "https://settings.vapi.test"
    settings.VAPI_TIMEOUT_SECONDS = 9.0
    settings.VAPI_CONNECT_TIMEOUT_SECONDS = 1.5
    settings.VAPI_UPSTREAM_AUTH = "private_key"
    upstream = Upstream()
    client = VapiClient.from_settings(transport=httpx.MockTransport(upstream))

    client.create_web_call({})

    sent = upstream.requests[0]
    assert sent.url == "https://settings.vapi.test/call/web"
    assert sent.headers["authorization"] == "Bearer from-settings-key"
    assert sent.extensions["timeout"] == {"connect": 1.5, "read": 9.0, "write": 9.0, "pool": 9.0}


def test_the_shared_client_is_one_instance_rebuilt_when_vapi_settings_change(settings, fake_vapi):
    first = get_vapi_client()
    assert get_vapi_client() is first

    settings.VAPI_API_KEY = "rotated-key"

    second = get_vapi_client()
    assert second is not first
    second.create_web_call({})
    assert fake_vapi.requests[-1].headers["authorization"] == "Bearer rotated-key"


# --- connections: one per request in flight, reused, bounded ----------------------------------


def test_requests_one_after_another_reuse_one_connection():
    client, upstream = make_client()

    for _ in range(5):
        client.create_web_call({})

    assert len(upstream.requests) == 5
    assert len(client._connections._made) == 1


def test_requests_in_flight_at_once_each_get_their_own_connection_up_to_the_limit():
    import threading

    release = threading.Event()
    arrived = threading.Semaphore(0)

    def slow(request):
        arrived.release()
        release.wait(5)
        return httpx.Response(201, json=CALL)

    client, upstream = make_client(slow, max_connections=2, connect_timeout=0.2)
    results = []
    threads = [threading.Thread(target=lambda: results.append(client.create_web_call({}))) for _ in range(2)]
    for thread in threads:
        thread.start()
    assert arrived.acquire(timeout=5) and arrived.acquire(timeout=5)

    # A third request finds both connections busy and gives up after the connect timeout.
    with pytest.raises(VapiTimeout, match="PoolTimeout"):
        client.create_web_call({})

    release.set()
    for thread in threads:
        thread.join(5)
    assert [reply.status for reply in results] == [201, 201]
    assert len(client._connections._made) == 2
    client.create_web_call({})  # a freed connection serves the next request
    assert len(client._connections._made) == 2
    assert len(upstream.requests) == 3


def test_closing_the_client_closes_every_connection():
    closed = []

    class Recording(httpx.MockTransport):
        def close(self):
            closed.append(self)

    client = VapiClient(api_key=KEY, base_url="https://vapi.test", transport=Recording(Upstream()))
    client.create_web_call({})

    client.close()

    assert len(closed) == 1
