"""Starting a call: check the request, resolve the assistant, log it, ask Vapi, settle the log.

Every request that reaches a call view leaves exactly one `CallLog` row. A request that is
going to Vapi is written as `pending` *before* the upstream request, so a hang or a crash
still leaves a record.
"""

import logging
import time
from dataclasses import dataclass
from http import HTTPStatus

from django.db import IntegrityError, transaction

from assistants.resolution import resolve_assistant
from calls.bodies import normalize_call_body, parse_json_body
from calls.errors import ProxyError, short
from calls.models import CallLog
from calls.vapi import (
    VapiClient,
    VapiError,
    VapiInvalidResponse,
    VapiNotConfigured,
    VapiResponseError,
    VapiTimeout,
    get_vapi_client,
)

logger = logging.getLogger("calls")


@dataclass(frozen=True)
class Incoming:
    """What the view knows about the HTTP request; nothing from it is forwarded to Vapi."""

    request_id: str
    content_type: str
    body: bytes | None
    origin: str = ""
    client_ip: str | None = None


@dataclass(frozen=True)
class StartedCall:
    status: int
    body: dict
    call_log: CallLog


def call_web_start(*, incoming: Incoming, max_body_bytes: int, vapi: VapiClient | None = None) -> StartedCall:
    started = time.monotonic()
    log = CallLog(
        request_id=incoming.request_id,
        route="web",
        origin=short(incoming.origin, 255),
        client_ip=incoming.client_ip,
    )
    vapi = vapi or get_vapi_client()
    try:
        data = parse_json_body(incoming.body, incoming.content_type, max_bytes=max_body_bytes)
        request = normalize_call_body(data)
        log.user_id, log.assistant_type = request.user_id, request.assistant_type
        resolution = resolve_assistant(
            user_id=request.user_id,
            assistant_type=request.assistant_type,
            client_variables=request.variables,
        )
        log.assistant = resolution.assistant
        if not vapi.configured:
            raise ProxyError(
                503,
                "vapi_key_missing",
                "The proxy has no Vapi API key configured (VAPI_API_KEY), so it cannot start calls.",
            )
    except ProxyError as err:
        _finish(log, started, outcome=CallLog.Outcome.REJECTED, error=err)
        raise
    except Exception:
        _finish(log, started, outcome=CallLog.Outcome.FAILED, error=_internal_error())
        raise

    log.save()
    body = resolution.vapi_body(call_log_id=log.pk)
    if request.room_delete_on_user_leave is not None:
        body["roomDeleteOnUserLeaveEnabled"] = request.room_delete_on_user_leave

    upstream_started = time.monotonic()
    try:
        reply = vapi.create_web_call(body)
    except VapiError as err:
        error = upstream_error(err)
        log.upstream_status = getattr(err, "status", None)
        _finish(log, started, outcome=CallLog.Outcome.FAILED, error=error)
        raise error from err
    except Exception:
        _finish(log, started, outcome=CallLog.Outcome.FAILED, error=_internal_error())
        raise
    upstream_ms = int((time.monotonic() - upstream_started) * 1000)
    log.upstream_status = reply.status

    try:
        answer = client_view_of_call(reply.data)
    except ProxyError as err:
        # Vapi may have created (and be billing) the call: keep its id so staff can find and end it.
        call_id = reply.data.get("id")
        if _usable_call_id(call_id) and not CallLog.objects.filter(vapi_call_id=call_id).exists():
            log.vapi_call_id = call_id
        _finish(log, started, outcome=CallLog.Outcome.FAILED, error=err)
        raise
    log.vapi_call_id = answer["id"]
    log.outcome = CallLog.Outcome.CREATED
    log.status_code = reply.status
    log.latency_ms = _elapsed_ms(started)
    try:
        with transaction.atomic():
            log.save(update_fields=["upstream_status", "vapi_call_id", "outcome", "status_code", "latency_ms"])
    except IntegrityError:
        # Vapi call ids are unique; a repeat would otherwise leave this row pending and answer 500.
        log.vapi_call_id = None
        error = ProxyError(502, "upstream_invalid_response", "Vapi answered with a call id the call log already holds.")
        _finish(log, started, outcome=CallLog.Outcome.FAILED, error=error)
        raise error from None
    logger.info(
        "call created: user=%s type=%s vapi_call=%s upstream_ms=%d",
        log.user_id,
        log.assistant_type,
        log.vapi_call_id,
        upstream_ms,
    )
    return StartedCall(status=reply.status, body=answer, call_log=log)


def call_log_refusal(*, incoming: Incoming, error: ProxyError) -> CallLog:
    """Logs a request refused before its body was looked at (e.g. a method the route does not take)."""
    log = CallLog(
        request_id=incoming.request_id,
        route="web",
        origin=short(incoming.origin, 255),
        client_ip=incoming.client_ip,
    )
    _finish(log, None, outcome=CallLog.Outcome.REJECTED, error=error)
    return log


# Only what the browser SDK reads; never the assistant config, overrides or monitor URLs.
_CALL_FIELDS = ("id", "webCallUrl", "status", "type", "createdAt", "artifactPlan", "transport")
_CALL_ID_MAX_LENGTH = CallLog._meta.get_field("vapi_call_id").max_length


def _usable_call_id(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _CALL_ID_MAX_LENGTH


def client_view_of_call(call: dict) -> dict:
    web_call_url = call.get("webCallUrl")
    if not (_usable_call_id(call.get("id")) and isinstance(web_call_url, str) and web_call_url):
        raise ProxyError(
            502,
            "upstream_invalid_response",
            "Vapi created the call but its answer has no id or webCallUrl.",
        )
    answer = {name: call[name] for name in _CALL_FIELDS if name in call}
    assistant = call.get("assistant")
    voice = assistant.get("voice") if isinstance(assistant, dict) else None
    if isinstance(voice, dict) and isinstance(voice.get("provider"), str):
        answer["assistant"] = {"voice": {"provider": voice["provider"]}}
    return answer


_NAMED_STATUSES = frozenset(HTTPStatus)


def upstream_error(err: VapiError) -> ProxyError:
    """Maps what went wrong at Vapi to what the client is told."""
    if isinstance(err, VapiNotConfigured):
        return ProxyError(503, "vapi_key_missing", "The proxy has no Vapi API key configured (VAPI_API_KEY).")
    if isinstance(err, VapiTimeout):
        return ProxyError(504, "upstream_timeout", "Vapi did not answer in time; the call may not have started.")
    if isinstance(err, VapiInvalidResponse):
        return ProxyError(502, "upstream_invalid_response", "Vapi answered with something that is not a call.")
    if not isinstance(err, VapiResponseError):
        return ProxyError(502, "upstream_unreachable", "Vapi could not be reached; try again shortly.")

    status, vapi_message = err.status, short(err.message, 300)
    headers = {"Retry-After": err.retry_after} if err.retry_after else {}
    if status in (401, 403):
        return ProxyError(
            502,
            "upstream_auth_failed",
            "Vapi refused the proxy's credentials: the operator must check VAPI_API_KEY.",
        )
    if status == 429:
        return ProxyError(
            429,
            "upstream_rate_limited",
            f"Vapi is rate limiting calls; try again later. ({vapi_message or 'Too Many Requests'})",
            headers=headers,
        )
    if status == 400 and "concurren" in vapi_message.lower():
        return ProxyError(
            429,
            "upstream_concurrency_limited",
            f"Vapi's limit on simultaneous calls is reached; try again later. ({vapi_message})",
            headers=headers,
        )
    if 400 <= status < 500:
        reason = vapi_message or "no reason given"
        if status not in _NAMED_STATUSES:  # a status the client could not be given in the error shape
            return ProxyError(502, "upstream_rejected", f"Vapi refused the call with status {status}: {reason}")
        return ProxyError(status, "upstream_rejected", f"Vapi refused the call: {reason}")
    return ProxyError(502, "upstream_error", f"Vapi failed with status {status}; try again shortly.")


def _internal_error() -> ProxyError:
    return ProxyError(500, "internal_error", "The proxy failed to handle this request; it has been logged.")


def _elapsed_ms(started: float | None) -> int | None:
    return None if started is None else int((time.monotonic() - started) * 1000)


def _finish(log: CallLog, started: float | None, *, outcome: str, error: ProxyError) -> None:
    log.set_error(outcome=outcome, status=error.status, code=error.code, detail=error.message)
    log.latency_ms = _elapsed_ms(started)
    log.save()
    level = logging.WARNING if error.status < 500 else logging.ERROR
    logger.log(
        level,
        "call %s: status=%d code=%s user=%s type=%s detail=%s",
        outcome,
        error.status,
        error.code,
        log.user_id or "-",
        log.assistant_type or "-",
        error.message,
    )
