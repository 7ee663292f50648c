"""Messages whose answer belongs to the customer's own backend (tool calls, transfers, knowledge base).

The proxy forwards them to the backend URL set on the call's assistant, or to
`CUSTOMER_BACKEND_URL`, with the backend's own credential (only to the origins the operator
trusts with it), and returns its answer within
Vapi's timeout. Without a backend, tool calls get an error result for each call, so the
assistant can say something instead of waiting.
"""

import logging
import threading
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from calls.vapi import USER_AGENT

logger = logging.getLogger("calls.webhooks")

_client: httpx.Client | None = None
_transport: httpx.BaseTransport | None = None
_lock = threading.Lock()


def relay_to_backend(kind: str, message: dict, *, assistant=None) -> dict:
    url = (getattr(assistant, "backend_url", "") or settings.CUSTOMER_BACKEND_URL).strip()
    if not url:
        return _unavailable(kind, message, "No backend is configured to handle this request.")
    headers = {}
    if settings.CUSTOMER_BACKEND_SECRET:
        if _may_get_secret(url):
            headers["Authorization"] = f"Bearer {settings.CUSTOMER_BACKEND_SECRET}"
        else:
            logger.warning(
                "backend relay of %s to %s goes without CUSTOMER_BACKEND_SECRET: add its origin to "
                "CUSTOMER_BACKEND_SECRET_ORIGINS if it should get it",
                kind,
                _origin(url),
            )
    # The backend needs the request, not the live-call monitor URLs.
    call = message.get("call")
    if isinstance(call, dict) and "monitor" in call:
        message = {**message, "call": {k: v for k, v in call.items() if k != "monitor"}}
    try:
        response = _http().post(url, json={"message": message}, headers=headers)
    except httpx.HTTPError as err:
        logger.warning("backend relay of %s failed: %s", kind, type(err).__name__)
        return _unavailable(kind, message, "The backend could not be reached in time.")
    if not response.is_success:
        logger.warning("backend relay of %s: backend answered %d", kind, response.status_code)
        return _unavailable(kind, message, "The backend could not handle this request.")
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        logger.warning("backend relay of %s: the answer is not a JSON object", kind)
        return _unavailable(kind, message, "The backend answered with something unexpected.")
    return answer


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme.lower())
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"


def _may_get_secret(url: str) -> bool:
    """The shared secret goes to CUSTOMER_BACKEND_URL's origin and the ones the operator listed, never
    to any URL a staff member types into an assistant."""
    trusted = [settings.CUSTOMER_BACKEND_URL, *settings.CUSTOMER_BACKEND_SECRET_ORIGINS]
    try:
        return _origin(url) in {_origin(item) for item in trusted if item}
    except ValueError:  # a port that is not a number
        return False


def _unavailable(kind: str, message: dict, text: str) -> dict:
    if kind == "tool-calls":
        return tool_call_errors(message, text)
    if kind == "transfer-destination-request":
        return {"error": text}
    return {}


def tool_call_errors(message: dict, text: str) -> dict:
    """A `results` entry with an error for every tool call, so the assistant has something to say."""
    results = []
    tool_calls = message.get("toolCallList")
    for item in tool_calls if isinstance(tool_calls, list) else []:
        if isinstance(item, dict):
            function = item.get("function") if isinstance(item.get("function"), dict) else {}
            results.append({"toolCallId": item.get("id"), "name": function.get("name"), "error": text})
    return {"results": results}


def _http() -> httpx.Client:
    global _client
    client = _client
    if client is None:
        with _lock:
            if _client is None:
                _client = httpx.Client(
                    timeout=httpx.Timeout(settings.CUSTOMER_BACKEND_TIMEOUT_SECONDS, connect=3.0),
                    headers={"User-Agent": USER_AGENT},
                    follow_redirects=False,
                    transport=_transport,
                )
            client = _client
    return client


def use_backend_transport(transport: httpx.BaseTransport | None) -> None:
    """Routes relays through `transport` (tests pass httpx.MockTransport); None is the network."""
    global _transport
    _transport = transport
    _reset()


def _reset() -> None:
    global _client
    with _lock:
        previous, _client = _client, None
    if previous is not None:
        previous.close()


@receiver(setting_changed)
def _rebuild_on_settings_change(*, setting, **kwargs):
    if setting.startswith("CUSTOMER_BACKEND_"):
        _reset()
