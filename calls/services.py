"""Starting a call: check the request, resolve the assistant, log it, ask Vapi, settle the log.

Every request that reaches a call view leaves exactly one `CallLog` row. A request that is
going to Vapi is written as `pending` *before* the upstream request, so a hang or a crash
still leaves a record.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from http import HTTPStatus

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from assistants.models import EndUser
from assistants.resolution import Resolution, find, resolve_assistant
from calls.bodies import normalize_call_body, parse_json_body
from calls.db import release_db_connection, savepoint_if_nested, unique_row, update_row
from calls.errors import ProxyError, error_body, short
from calls.identity import Identity, check_claims
from calls.limits import RUNNING, admit, limits_for, note_refusal, refusals_exceeded
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
    own_origin: str = ""  # scheme://host of the proxy itself, for same-origin pages
    identify: Callable[[], Identity] = field(default=lambda: Identity(user_id=None))


@dataclass(frozen=True)
class StartedCall:
    status: int
    body: dict
    call_log: CallLog


def call_web_start(*, incoming: Incoming, max_body_bytes: int, vapi: VapiClient | None = None) -> StartedCall:
    """Checks, in order: origin, identity, body, who may start what, Vapi key, limits; then calls Vapi."""
    if refusals_exceeded(incoming.client_ip):
        # Unlogged on purpose: a flood of bad tokens must not fill the call log.
        raise ProxyError(
            429,
            "too_many_refusals",
            "Too many refused requests from this address; try again in a minute.",
            headers={"Retry-After": "60"},
        )
    started = time.monotonic()
    log = new_call_log(incoming, route="web")
    vapi = vapi or get_vapi_client()
    try:
        check_origin(incoming.origin, own_origin=incoming.own_origin)
        identity = incoming.identify()
        log.user_id = short(identity.user_id or "", 255)
        data = parse_json_body(incoming.body, incoming.content_type, max_bytes=max_body_bytes)
        request = normalize_call_body(data)
        log.assistant_type = request.assistant_type
        log.user_id = user_id = check_claims(
            identity, body_user_id=request.user_id, assistant_type=request.assistant_type
        )
        resolution = admit_resolved_call(
            log,
            user_id=user_id,
            assistant_type=request.assistant_type,
            client_variables=request.variables,
            vapi=vapi,
        )
    except ProxyError as err:
        finish_call_log(log, started, outcome=CallLog.Outcome.REJECTED, error=err)
        note_refusal(incoming.client_ip)
        raise
    except Exception:
        finish_call_log(log, started, outcome=CallLog.Outcome.FAILED, error=internal_error())
        raise

    body = web_call_body(resolution, call_log_id=log.pk, room_delete_on_user_leave=request.room_delete_on_user_leave)

    release_db_connection()
    upstream_started = time.monotonic()
    try:
        reply = vapi.create_web_call(body)
    except VapiError as err:
        error = upstream_error(err)
        log.upstream_status = getattr(err, "status", None)
        finish_call_log(log, started, outcome=CallLog.Outcome.FAILED, error=error)
        raise error from err
    except Exception:
        finish_call_log(log, started, outcome=CallLog.Outcome.FAILED, error=internal_error())
        raise
    upstream_ms = int((time.monotonic() - upstream_started) * 1000)
    log.upstream_status = reply.status

    try:
        answer = client_view_of_call(reply.data)
    except ProxyError as err:
        # Vapi may have created (and be billing) the call: keep its id so staff can find and end it.
        call_id = reply.data.get("id")
        if usable_call_id(call_id) and not CallLog.objects.filter(vapi_call_id=call_id).exists():
            log.vapi_call_id = call_id
        finish_call_log(log, started, outcome=CallLog.Outcome.FAILED, error=err)
        raise
    log.vapi_call_id = answer["id"]
    log.control_url = control_url_of(reply.data)
    log.outcome = CallLog.Outcome.CREATED
    log.status_code = reply.status
    log.latency_ms = elapsed_ms(started)
    try:
        with savepoint_if_nested():
            update_row(
                log, ["upstream_status", "vapi_call_id", "control_url", "outcome", "status_code", "latency_ms"]
            )
    except IntegrityError:
        # Vapi call ids are unique; a repeat would otherwise leave this row pending and answer 500.
        log.vapi_call_id = None
        error = ProxyError(502, "upstream_invalid_response", "Vapi answered with a call id the call log already holds.")
        finish_call_log(log, started, outcome=CallLog.Outcome.FAILED, error=error)
        raise error from None
    logger.info(
        "call created: user=%s type=%s vapi_call=%s upstream_ms=%d",
        log.user_id,
        log.assistant_type,
        log.vapi_call_id,
        upstream_ms,
    )
    return StartedCall(status=reply.status, body=answer, call_log=log)


def web_call_body(resolution: Resolution, *, call_log_id: int | None, room_delete_on_user_leave=None) -> dict:
    """The body of Vapi's POST /call/web for a resolved call start."""
    body = resolution.vapi_body(call_log_id=call_log_id)
    if room_delete_on_user_leave is not None:
        body["roomDeleteOnUserLeaveEnabled"] = room_delete_on_user_leave
    return body


def resolve_for_user(
    *, user_id: str, assistant_type: str, client_variables: dict
) -> tuple[EndUser | None, Resolution]:
    """Refuses a blocked user, then resolves the assistant; returns the user's row (if any) and the resolution."""
    found = find(user_id=user_id, assistant_type=assistant_type)
    end_user = found.end_user
    if end_user is not None and end_user.is_blocked:
        raise ProxyError(403, "user_blocked", "This user may not start calls; contact support.")
    resolution = resolve_assistant(
        user_id=user_id, assistant_type=assistant_type, client_variables=client_variables, found=found
    )
    return end_user, resolution


def preview_web_call(*, user_id: str, assistant_type: str, client_variables: dict) -> tuple[Resolution, dict]:
    """What Vapi would receive if this user's app started a web call now, without calling Vapi or
    logging anything: the same body parsing, refusals and body building as `call_web_start`.

    Returns the resolution and the body; raises the ProxyError the live call would get. Identity,
    limits and the Vapi key are not checked, and `metadata.callLogId` is left out: a live call gets
    the id of the call-log row it writes."""
    request = normalize_call_body(
        {"assistant": {"userId": user_id, "assistantType": assistant_type, "variableValues": client_variables}}
    )
    _, resolution = resolve_for_user(
        user_id=request.user_id, assistant_type=request.assistant_type, client_variables=request.variables
    )
    return resolution, web_call_body(resolution, call_log_id=None)


def admit_resolved_call(
    log: CallLog, *, user_id: str, assistant_type: str, client_variables: dict, vapi: VapiClient, api_key=None
):
    """The checks every call start shares once the caller is known: blocked user, resolution,
    Vapi key, limits. Writes the pending row; returns the resolution."""
    try:
        end_user, resolution = resolve_for_user(
            user_id=user_id, assistant_type=assistant_type, client_variables=client_variables
        )
    except ProxyError as err:
        log.assistant = getattr(err, "assistant", None)
        raise
    log.assistant = resolution.assistant
    if not vapi.configured:
        raise ProxyError(
            503,
            "vapi_key_missing",
            "The proxy has no Vapi API key configured (VAPI_API_KEY), so it cannot start calls.",
        )
    admit(
        log,
        limits=limits_for(
            end_user=end_user, mapping=resolution.mapping, assistant_type=resolution.assistant_type, api_key=api_key
        ),
        max_duration_seconds=resolution.assistant.max_duration_seconds,
    )
    return resolution


def call_log_refusal(*, incoming: Incoming, error: ProxyError) -> CallLog:
    """Logs a request refused before its body was looked at (e.g. a method the route does not take)."""
    log = new_call_log(incoming, route="web")
    finish_call_log(log, None, outcome=CallLog.Outcome.REJECTED, error=error)
    return log


def new_call_log(incoming: Incoming, *, route: str) -> CallLog:
    return CallLog(
        request_id=incoming.request_id,
        route=route,
        origin=short(incoming.origin, 255),
        client_ip=incoming.client_ip,
    )


def check_origin(origin: str, *, own_origin: str) -> None:
    """A browser's Origin must be an allowed frontend (CORS alone does not stop a script)."""
    if origin and origin not in settings.CORS_ALLOWED_ORIGINS and origin != own_origin:
        raise ProxyError(
            403,
            "origin_not_allowed",
            f"Calls from {short(origin, 100)} are not allowed; the operator lists frontends in CORS_ALLOWED_ORIGINS.",
        )


# Only what the browser SDK reads; never the assistant config, overrides or monitor URLs.
_CALL_FIELDS = ("id", "webCallUrl", "status", "type", "createdAt", "artifactPlan", "transport")
_CALL_ID_MAX_LENGTH = CallLog._meta.get_field("vapi_call_id").max_length


def control_url_of(call: dict) -> str:
    monitor = call.get("monitor")
    url = monitor.get("controlUrl") if isinstance(monitor, dict) else None
    return url if isinstance(url, str) and len(url) <= 1000 else ""


def usable_call_id(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _CALL_ID_MAX_LENGTH


def client_view_of_call(call: dict) -> dict:
    web_call_url = call.get("webCallUrl")
    if not (usable_call_id(call.get("id")) and isinstance(web_call_url, str) and web_call_url):
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
            detail=f"Vapi refused the proxy's credentials ({status}: {vapi_message or 'no reason given'}); "
            "check VAPI_API_KEY" + (" and VAPI_ORG_ID." if settings.VAPI_UPSTREAM_AUTH == "jwt" else "."),
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


def internal_error() -> ProxyError:
    return ProxyError(500, "internal_error", "The proxy failed to handle this request; it has been logged.")


def elapsed_ms(started: float | None) -> int | None:
    return None if started is None else int((time.monotonic() - started) * 1000)


def finish_call_log(log: CallLog, started: float | None, *, outcome: str, error: ProxyError) -> None:
    log.set_error(outcome=outcome, status=error.status, code=error.code, detail=error.detail)
    log.latency_ms = elapsed_ms(started)
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
        error.detail,
    )


INTERRUPTED = ProxyError(
    504,
    "upstream_outcome_unknown",
    "The proxy stopped before Vapi answered; the call may have started. Check the Vapi dashboard "
    "before you place it again.",
    detail="Still pending after PENDING_CALL_TIMEOUT_SECONDS: the process stopped between writing this row "
    "and hearing from Vapi.",
)


def settle_interrupted_calls(*, rows=None) -> int:
    """Settles rows still pending long after any request could last: their process stopped (killed, crashed)
    between writing the row and hearing from Vapi. A row holding an Idempotency-Key keeps the answer,
    so a retry is told the outcome is unknown instead of 409 forever."""
    cutoff = timezone.now() - timedelta(seconds=settings.PENDING_CALL_TIMEOUT_SECONDS)
    rows = CallLog.objects.all() if rows is None else rows
    settled = 0
    for pk, request_id, idempotency_key in rows.filter(
        outcome=CallLog.Outcome.PENDING, created_at__lt=cutoff
    ).values_list("pk", "request_id", "idempotency_key"):
        answer = None
        if idempotency_key:
            answer = {**error_body(INTERRUPTED.status, INTERRUPTED.code, INTERRUPTED.message), "requestId": request_id}
        # Conditional on still pending: the request may have finished since the query above.
        settled += CallLog.objects.filter(pk=pk, outcome=CallLog.Outcome.PENDING).update(
            outcome=CallLog.Outcome.FAILED,
            status_code=INTERRUPTED.status,
            error_code=INTERRUPTED.code,
            error_detail=INTERRUPTED.detail,
            response_body=answer,
        )
    if settled:
        logger.warning("settled %d call-log rows left pending by a stopped process", settled)
    return settled


def end_live_calls(*, user_id: str, vapi: VapiClient | None = None) -> dict:
    """Ends every call of this user that may still be live, through Vapi's call control."""
    vapi = vapi or get_vapi_client()
    now = timezone.now()
    live = (
        CallLog.objects.filter(user_id=user_id, outcome__in=RUNNING, active_until__gt=now)
        .exclude(call_status="ended")
        .exclude(control_url="")
    )
    counts = {"ended": 0, "failed": 0}
    for log in live:
        try:
            vapi.end_call(log.control_url)
        except VapiError as err:
            logger.warning("could not end call %s of user %s: %s", log.vapi_call_id, user_id, err)
            counts["failed"] += 1
            continue
        log.ended_reason = log.ended_reason or "ended-by-staff"
        log.save(update_fields=["ended_reason"])
        counts["ended"] += 1
    return counts
