"""The one way this service talks to Vapi.

Contract: each method returns a `VapiReply` (status and decoded JSON object) on a 2xx, or raises
one `VapiError`. Nothing is
retried here: every create-call attempt may be billed.
"""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import quote

import httpx
import jwt
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

try:
    USER_AGENT = f"vapi-proxy/{version('vapi-proxy')}"
except PackageNotFoundError:  # running from a checkout that was never installed
    USER_AGENT = "vapi-proxy"


class VapiError(Exception):
    """Vapi could not be asked, or answered with an error."""


class VapiNotConfigured(VapiError):
    pass


class VapiUnreachable(VapiError):
    pass


class VapiTimeout(VapiError):
    pass


class VapiInvalidResponse(VapiError):
    def __init__(self, message: str, *, status: int):
        super().__init__(message)
        self.status = status


class VapiResponseError(VapiError):
    def __init__(self, status: int, message: str, *, retry_after: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class VapiReply:
    status: int
    data: dict


class VapiClient:
    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = "https://api.vapi.ai",
        timeout: float = 15.0,
        connect_timeout: float = 5.0,
        max_connections: int = 200,
        upstream_auth: str = "private_key",
        org_id: str = "",
        jwt_ttl_seconds: int = 300,
        transport: httpx.BaseTransport | None = None,
    ):
        self.api_key = api_key
        self.upstream_auth = upstream_auth
        self.org_id = org_id
        self.jwt_ttl_seconds = jwt_ttl_seconds
        self._jwt: tuple[str, float] | None = None
        self._base_url = base_url.rstrip("/")
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout).as_dict()
        # Built once: loading the CA bundle costs ~20 ms, a transport that reuses it ~0.1 ms.
        tls = httpx.create_ssl_context() if transport is None else None

        def connection() -> httpx.BaseTransport:
            if transport is not None:
                return transport
            return httpx.HTTPTransport(verify=tls, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

        self._connections = _ConnectionPool(connection, size=max_connections, wait=connect_timeout)
        # Every request is built from scratch, with no cookie jar: a cookie Vapi (or its load
        # balancer) sets on one answer never rides along on the next user's call start; and
        # redirects are never followed.

    @classmethod
    def from_settings(cls, *, transport: httpx.BaseTransport | None = None) -> "VapiClient":
        return cls(
            api_key=settings.VAPI_API_KEY,
            base_url=settings.VAPI_BASE_URL,
            timeout=settings.VAPI_TIMEOUT_SECONDS,
            connect_timeout=settings.VAPI_CONNECT_TIMEOUT_SECONDS,
            max_connections=settings.VAPI_MAX_CONNECTIONS,
            upstream_auth=settings.VAPI_UPSTREAM_AUTH,
            org_id=settings.VAPI_ORG_ID,
            jwt_ttl_seconds=settings.VAPI_JWT_TTL_SECONDS,
            transport=transport,
        )

    @property
    def configured(self) -> bool:
        return bool(self.api_key)

    def create_web_call(self, body: dict) -> VapiReply:
        return self._request("POST", "/call/web", json=body)

    def create_phone_call(self, body: dict) -> VapiReply:
        return self._request("POST", "/call", json=body)

    def get_call(self, call_id: str) -> VapiReply:
        return self._request("GET", f"/call/{quote(call_id, safe='')}")

    def end_call(self, control_url: str) -> None:
        """Ends a live call through its control URL (the URL itself is the credential)."""
        try:
            response = self._exchange(httpx.Request("POST", control_url, headers=_HEADERS, json={"type": "end-call"}))
        except httpx.TimeoutException as err:
            raise VapiTimeout(f"Vapi did not answer in time ({type(err).__name__}).") from err
        except httpx.HTTPError as err:
            raise VapiUnreachable(f"Vapi could not be reached ({type(err).__name__}).") from err
        if not response.is_success:
            raise VapiResponseError(response.status_code, self._scrub(_error_message(response), ""))

    def close(self) -> None:
        self._connections.close()

    def list_assistants(self, *, limit: int = 1000) -> list[dict]:
        """The organization's assistants (Vapi's GET /assistant, newest first), at most `limit` of them."""
        response = self._send("GET", "/assistant", params={"limit": limit})
        data = self._json(response)
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise VapiInvalidResponse("Vapi's answer was not a list of assistants.", status=response.status_code)
        return data

    def _request(self, method: str, path: str, **kwargs) -> VapiReply:
        response = self._send(method, path, **kwargs)
        data = self._json(response)
        if not isinstance(data, dict):
            raise VapiInvalidResponse("Vapi's answer was not a JSON object.", status=response.status_code)
        return VapiReply(status=response.status_code, data=data)

    def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        """Sends with the credential; returns a 2xx response, or raises a VapiError."""
        if not self.configured:
            raise VapiNotConfigured("VAPI_API_KEY is not set.")
        credential = self._credential()
        request = httpx.Request(
            method, self._base_url + path, headers={**_HEADERS, "Authorization": f"Bearer {credential}"}, **kwargs
        )
        try:
            response = self._exchange(request)
        except httpx.TimeoutException as err:
            raise VapiTimeout(f"Vapi did not answer in time ({type(err).__name__}).") from err
        except httpx.HTTPError as err:
            raise VapiUnreachable(f"Vapi could not be reached ({type(err).__name__}).") from err
        if response.is_success:
            return response
        raise VapiResponseError(
            response.status_code,
            self._scrub(_error_message(response), credential),
            retry_after=response.headers.get("Retry-After"),
        )

    def _exchange(self, request: httpx.Request) -> httpx.Response:
        """Sends on a free keep-alive connection and reads the whole answer.

        Straight to the transport: httpx.Client's layers (URL and header merging, cookies, auth,
        redirects) were a third of its CPU per call start and this client wants none of them."""
        request.extensions["timeout"] = self._timeout
        with self._connections.lend() as transport:
            response = transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        response.request = request
        return response

    @staticmethod
    def _json(response: httpx.Response):
        try:
            return response.json()
        except ValueError as err:
            raise VapiInvalidResponse("Vapi's answer was not JSON.", status=response.status_code) from err

    def _credential(self) -> str:
        if self.upstream_auth != "jwt":
            return self.api_key
        now = time.time()
        if self._jwt is None or self._jwt[1] - 30 < now:
            claims = {
                "orgId": self.org_id,
                "token": {"tag": "private"},
                "iat": int(now),
                "exp": int(now) + self.jwt_ttl_seconds,
            }
            self._jwt = (jwt.encode(claims, self.api_key, algorithm="HS256"), now + self.jwt_ttl_seconds)
        return self._jwt[0]

    def _scrub(self, text: str, credential: str) -> str:
        """Removes the key and the credential sent (in JWT mode a token that works for minutes)."""
        for secret in (credential, self.api_key):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text


class _ConnectionPool:
    """Transports of one keep-alive connection each, lent to one request at a time (most recently used first).

    httpx's own pool matches every request in flight against every connection under one lock: with
    a hundred slow call starts in flight in a process, that matching cost more CPU than everything
    else a call start does (bench/run.py --profile). A transport lent to one request at a time never
    has to match. At most `size` are lent at once; the next request waits up to `wait` seconds.
    """

    def __init__(self, connect: Callable[[], httpx.BaseTransport], *, size: int, wait: float):
        self._connect = connect
        self._wait = wait
        self._free = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[httpx.BaseTransport] = []
        self._made: list[httpx.BaseTransport] = []

    @contextmanager
    def lend(self) -> Iterator[httpx.BaseTransport]:
        if not self._free.acquire(timeout=self._wait):
            raise httpx.PoolTimeout("Every connection to Vapi is in use.")
        try:
            with self._lock:
                client = self._idle.pop() if self._idle else None
            if client is None:
                client = self._connect()
                with self._lock:
                    self._made.append(client)
            try:
                yield client
            finally:
                with self._lock:
                    self._idle.append(client)
        finally:
            self._free.release()

    def close(self) -> None:
        with self._lock:
            made, self._made, self._idle = self._made, [], []
        for transport in made:
            transport.close()


def _error_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    message = data.get("message", "") if isinstance(data, dict) else ""
    if isinstance(message, list):
        message = "; ".join(str(part) for part in message)
    return str(message)


_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "application/json",
    "Accept-Encoding": "gzip, deflate",
    "Connection": "keep-alive",
}

_client: VapiClient | None = None
_transport: httpx.BaseTransport | None = None
_client_lock = threading.Lock()


def get_vapi_client() -> VapiClient:
    """The process-wide client, built from settings: one connection pool shared by every request."""
    global _client
    client = _client
    if client is None:
        with _client_lock:
            if _client is None:
                _client = VapiClient.from_settings(transport=_transport)
            client = _client
    return client


def use_vapi_transport(transport: httpx.BaseTransport | None) -> None:
    """Routes the shared client through `transport` (tests pass httpx.MockTransport); None is the network."""
    global _transport
    _transport = transport
    reset_vapi_client()


def reset_vapi_client() -> None:
    global _client
    with _client_lock:
        previous, _client = _client, None
    if previous is not None:
        previous.close()


@receiver(setting_changed)
def _rebuild_on_settings_change(*, setting, **kwargs):
    if setting.startswith("VAPI_"):
        reset_vapi_client()
