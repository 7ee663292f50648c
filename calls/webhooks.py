"""What the proxy does with each message Vapi sends to its server URL.

`webhook_receive()` is the whole contract: verify, parse, store once, apply, answer. It never
raises for a message Vapi sent: Vapi does not retry by default, and an error answer to a message
it cannot change would only be noise, so an authentic message always gets a 2xx unless its body
is not a Vapi message at all (400).
"""

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from assistants.models import PhoneCaller, PhoneRoute
from assistants.resolution import resolve_assistant
from calls.bodies import loads_strict
from calls.errors import ProxyError, short
from calls.models import CallLog, WebhookMessage
from calls.relay import relay_to_backend, tool_call_errors
from calls.request_context import current_request_id
from calls.vapi import VapiError, VapiResponseError, get_vapi_client
from calls.webhook_auth import WebhookAuthConfig, WebhookAuthError, verify_webhook

logger = logging.getLogger("calls.webhooks")

RELAYED_TYPES = ("tool-calls", "transfer-destination-request", "knowledge-base-request")
TERMINAL_STATUS = "ended"
# Vapi's payloads nest about 15 levels deep (a tool's JSON schema inside the assistant inside the call).
MAX_NESTING = 100
# Vapi fails an inbound call answered with an empty `error`; this is said when staff left every sentence blank.
LAST_RESORT_SPOKEN_ERROR = "Sorry, we can't take your call right now. Goodbye."


@dataclass(frozen=True)
class WebhookReply:
    status: int
    body: dict


def webhook_receive(*, body: bytes, headers, method: str = "POST", url: str = "") -> WebhookReply:
    try:
        verify_webhook(WebhookAuthConfig.from_settings(), headers=headers, body=body, method=method, url=url)
    except WebhookAuthError as err:
        logger.warning("webhook refused: %s", err)
        raise ProxyError(401, "webhook_unauthorized", str(err)) from None

    try:
        # UTF-8 only (json.loads would guess UTF-16/32 from bytes); surrogatepass keeps a lone surrogate
        # for clean_text. NaN, Infinity and overflowing numbers are not JSON and no database stores them.
        payload = loads_strict(body.decode("utf-8", "surrogatepass"))
        payload = clean_text(payload)
    except ValueError:
        logger.warning("webhook with a body that is not JSON (%d bytes)", len(body))
        raise ProxyError(400, "invalid_message", "The body is not JSON.") from None
    except (TooDeeplyNested, RecursionError):
        logger.warning("webhook with a body nested too deeply (%d bytes)", len(body))
        raise ProxyError(400, "invalid_message", "The body is nested too deeply.") from None
    message = payload.get("message") if isinstance(payload, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str) or not message["type"]:
        logger.warning("webhook without a message object and type")
        raise ProxyError(400, "invalid_message", 'The body must be {"message": {"type": ..., ...}}.')

    kind = message["type"]
    call = message.get("call") if isinstance(message.get("call"), dict) else {}
    call_id = call.get("id") if isinstance(call.get("id"), str) else ""

    stored, created = _store(kind=kind, call_id=call_id, payload=payload, body=body)
    if not created:
        logger.info("webhook %s for call %s was delivered before; answered again, not applied", kind, call_id or "-")
        return WebhookReply(200, stored.reply if stored.reply is not None else {})

    try:
        reply = _apply(kind, message, call, call_id, stored)
    except Exception:
        logger.exception("webhook %s for call %s could not be applied", kind, call_id or "-")
        reply = _fallback_reply(kind, message)
        stored.note = "The proxy failed to apply this message; see the server log."
    stored.reply = reply
    stored.save(update_fields=["reply", "note", "call_log"])
    return WebhookReply(200, reply)


def _store(*, kind: str, call_id: str, payload: dict, body: bytes):
    digest = hashlib.sha256(body).hexdigest()
    try:
        with transaction.atomic():
            return WebhookMessage.objects.create(
                message_type=short(kind, 64), vapi_call_id=call_id[:64], payload=payload, body_sha256=digest
            ), True
    except IntegrityError:
        return WebhookMessage.objects.get(body_sha256=digest), False


def _apply(kind: str, message: dict, call: dict, call_id: str, stored: WebhookMessage) -> dict:
    if kind == "assistant-request":
        return _answer_assistant_request(message, call, call_id, stored)
    if kind in ("status-update", "end-of-call-report"):
        if not call_id:
            logger.warning("webhook %s without message.call.id: stored, nothing to update", kind)
            stored.note = "No call id: nothing was updated."
            return {}
        log = find_or_create_call_log(call, call_id)
        stored.call_log = log
        if kind == "status-update":
            apply_status_update(log, message)
        else:
            apply_end_of_call_report(log, message, call)
        return {}
    if kind in RELAYED_TYPES:
        log = find_or_create_call_log(call, call_id) if call_id else None
        stored.call_log = log
        return relay_to_backend(kind, message, assistant=log.assistant if log else None)
    return {}


def _fallback_reply(kind: str, message: dict) -> dict:
    if kind == "assistant-request":
        return {"error": _spoken(settings.PHONE_UNAVAILABLE_MESSAGE)}
    if kind == "tool-calls":
        return tool_call_errors(message, "The tool could not be run right now.")
    return {}


# --- the call log -------------------------------------------------------------------------


def find_or_create_call_log(call: dict, call_id: str) -> CallLog:
    """The row for this Vapi call: ours (by call id or by the callLogId we put in metadata), or a new one."""
    log = CallLog.objects.filter(vapi_call_id=call_id).first()
    if log is not None:
        return log
    metadata = _call_metadata(call)
    call_log_id = metadata.get("callLogId")
    if isinstance(call_log_id, int) and not isinstance(call_log_id, bool):
        updated = CallLog.objects.filter(pk=call_log_id, vapi_call_id__isnull=True).update(vapi_call_id=call_id)
        if updated:
            return CallLog.objects.get(pk=call_log_id)
    try:
        with transaction.atomic():
            return CallLog.objects.create(
                request_id=_request_id(),
                route=_route_of(call),
                vapi_call_id=call_id,
                user_id=short(str(metadata.get("userId") or _customer_number(call) or ""), 255),
                assistant_type=short(str(metadata.get("assistantType") or ""), 100),
                outcome=CallLog.Outcome.CREATED,
            )
    except IntegrityError:  # another message for the same new call got there first
        return CallLog.objects.get(vapi_call_id=call_id)


def apply_status_update(log: CallLog, message: dict) -> None:
    status = message.get("status")
    if not isinstance(status, str) or not status:
        logger.warning("status-update for call %s without a status", log.vapi_call_id)
        return
    if log.call_status == TERMINAL_STATUS:
        return  # messages arrive in any order; an ended call stays ended
    log.call_status = short(status, 20)
    fields = ["call_status"]
    if status == TERMINAL_STATUS:
        log.ended_reason = log.ended_reason or short(_text(message.get("endedReason")), 100)
        log.ended_at = log.ended_at or _timestamp(message.get("timestamp"))
        fields += ["ended_reason", "ended_at"]
    log.save(update_fields=fields)


def apply_end_of_call_report(log: CallLog, message: dict, call: dict) -> None:
    """Fills the log from the report: current fields under artifact/analysis, older ones at the top."""
    artifact = _dict(message.get("artifact"))
    analysis = _dict(message.get("analysis"))
    log.call_status = TERMINAL_STATUS
    log.ended_reason = short(_text(message.get("endedReason")), 100) or log.ended_reason
    log.started_at = _report_datetime(message, call, "startedAt", log.vapi_call_id) or log.started_at
    log.ended_at = _report_datetime(message, call, "endedAt", log.vapi_call_id) or log.ended_at
    log.duration_seconds = _duration(message, log.started_at, log.ended_at)
    log.cost = _decimal(message.get("cost"), field="cost", call_id=log.vapi_call_id)
    if log.cost is None:
        log.cost = _decimal(call.get("cost"), field="call.cost", call_id=log.vapi_call_id)
    log.cost_breakdown = _first_json(message.get("costBreakdown"), message.get("costs"), call.get("costBreakdown"))
    log.summary = _text(analysis.get("summary")) or _text(message.get("summary"))
    log.transcript = _text(artifact.get("transcript")) or _text(message.get("transcript"))
    log.recording_url = short(
        _text(artifact.get("recordingUrl")) or _text(message.get("recordingUrl")), 1000
    )
    log.structured_data = _first_json(analysis.get("structuredData"), message.get("structuredData"))
    log.success_evaluation = short(_text(analysis.get("successEvaluation")), 200)
    log.save()


def complete_stale_calls(*, older_than_minutes: int, limit: int = 500, vapi=None) -> dict:
    """Asks Vapi about calls it never reported as ended and completes their rows (missed webhooks)."""
    vapi = vapi or get_vapi_client()
    cutoff = timezone.now() - timedelta(minutes=older_than_minutes)
    stale = (
        CallLog.objects.filter(outcome=CallLog.Outcome.CREATED, created_at__lt=cutoff)
        .exclude(vapi_call_id=None)
        .exclude(call_status=TERMINAL_STATUS)
        .order_by("created_at")[:limit]
    )
    counts = {"checked": 0, "ended": 0, "still_active": 0, "failed": 0}
    for log in stale:
        counts["checked"] += 1
        try:
            outcome = _complete_from_vapi(log, vapi)
        except Exception:  # one odd call must not stop the sweep of the others
            logger.exception("stale call %s could not be completed", log.vapi_call_id)
            outcome = "failed"
        counts[outcome] += 1
    return counts


def _complete_from_vapi(log: CallLog, vapi) -> str:
    """Asks Vapi about one call and settles its row; returns the `counts` key it falls under."""
    try:
        call = vapi.get_call(log.vapi_call_id).data
    except VapiResponseError as err:
        if err.status == 404:  # Vapi no longer knows it: it cannot be active
            log.call_status, log.ended_reason = TERMINAL_STATUS, "unknown-to-vapi"
            log.save(update_fields=["call_status", "ended_reason"])
            return "ended"
        logger.warning("stale call %s: Vapi answered %d", log.vapi_call_id, err.status)
        return "failed"
    except VapiError as err:
        logger.warning("stale call %s could not be checked: %s", log.vapi_call_id, err)
        return "failed"
    call = clean_text(call)
    if call.get("status") == TERMINAL_STATUS:
        # A Call object carries the same fields an end-of-call report does.
        apply_end_of_call_report(log, call, call)
        return "ended"
    apply_status_update(log, call)
    return "still_active"


# --- assistant-request (inbound phone calls) --------------------------------------------


def _answer_assistant_request(message: dict, call: dict, call_id: str, stored: WebhookMessage) -> dict:
    """Which assistant answers an inbound call: the same resolution as the web route, from the database alone."""
    phone = _dict(message.get("phoneNumber"))
    phone_number_id = _text(call.get("phoneNumberId")) or _text(phone.get("id"))
    number = _text(phone.get("number"))
    route = PhoneRoute.find(phone_number_id=phone_number_id, number=number)
    caller = _customer_number(call) or _text(_dict(message.get("customer")).get("number"))
    user_id = PhoneCaller.user_id_for(caller) or caller or "unknown-caller"
    log = CallLog(
        request_id=_request_id(),
        route="inbound",
        vapi_call_id=call_id or None,
        user_id=short(user_id, 255),
        assistant_type=route.assistant_type.slug if route else "",
    )
    if route is None:
        logger.warning("assistant-request for an unknown number (id=%s number=%s)", phone_number_id or "-", number or "-")
        stored.note = "No phone route matches this number."
        detail = f"No active phone route for number {number or '-'} (Vapi id {phone_number_id or '-'})."
        log.set_error(outcome=CallLog.Outcome.REJECTED, status=200, code="unknown_phone_number", detail=detail)
        _save_inbound(log, stored)
        return {"error": _spoken(settings.PHONE_UNKNOWN_NUMBER_MESSAGE)}

    try:
        resolution = resolve_assistant(
            user_id=user_id,
            assistant_type=route.assistant_type.slug,
            client_variables={},
        )
    except ProxyError as err:
        log.set_error(outcome=CallLog.Outcome.REJECTED, status=200, code=err.code, detail=err.message)
        _save_inbound(log, stored)
        return {"error": _spoken(route.refusal_message, settings.PHONE_UNAVAILABLE_MESSAGE)}
    log.assistant = resolution.assistant
    log.outcome = CallLog.Outcome.CREATED
    log.status_code = 200
    _save_inbound(log, stored)
    return resolution.vapi_body(call_log_id=stored.call_log.pk)


_INBOUND_FIELDS = ("route", "user_id", "assistant_type", "assistant", "outcome", "status_code", "error_code", "error_detail")


def _save_inbound(log: CallLog, stored: WebhookMessage) -> None:
    try:
        with transaction.atomic():
            log.save()
    except IntegrityError:  # a status message for this call arrived first and made its row
        existing = CallLog.objects.get(vapi_call_id=log.vapi_call_id)
        for name in _INBOUND_FIELDS:
            setattr(existing, name, getattr(log, name))
        existing.save(update_fields=_INBOUND_FIELDS)
        log = existing
    stored.call_log = log


# --- reading Vapi's payloads defensively ------------------------------------------------


class TooDeeplyNested(Exception):
    pass


def clean_text(value, _depth: int = 0):
    """Makes any JSON storable: lone UTF-16 surrogates and NUL characters become U+FFFD.

    Raises TooDeeplyNested past MAX_NESTING levels, well before Python's recursion limit (or the
    JSON encoder's, when the value is saved) would turn the message into a 500.
    """
    if isinstance(value, str):
        if value.isascii() and "\x00" not in value:
            return value
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace").replace("\x00", "\ufffd")
    if isinstance(value, (dict, list)) and _depth >= MAX_NESTING:
        raise TooDeeplyNested(f"more than {MAX_NESTING} levels of nesting")
    if isinstance(value, dict):
        return {clean_text(key): clean_text(item, _depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [clean_text(item, _depth + 1) for item in value]
    return value


def _spoken(*sentences: str) -> str:
    """The first sentence that says something: Vapi fails the call on an empty or blank `error`."""
    return next((s.strip() for s in sentences if isinstance(s, str) and s.strip()), LAST_RESORT_SPOKEN_ERROR)


def _request_id() -> str:
    request_id = current_request_id()
    return "" if request_id == "-" else request_id


def _call_metadata(call: dict) -> dict:
    overrides = _dict(call.get("assistantOverrides"))
    return _dict(overrides.get("metadata")) or _dict(call.get("metadata"))


def _route_of(call: dict) -> str:
    return {"inboundPhoneCall": "inbound", "outboundPhoneCall": "phone", "webCall": "web"}.get(
        call.get("type"), "external"
    )


def _customer_number(call: dict) -> str:
    return _text(_dict(call.get("customer")).get("number"))


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _first_json(*values):
    """The first non-empty object or array: a breakdown or structured data that is a bare string is noise."""
    return next((value for value in values if isinstance(value, (dict, list)) and value), None)


def _datetime(value):
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, dt_timezone.utc)  # Vapi's times are UTC
    return parsed


def _report_datetime(message: dict, call: dict, field: str, call_id: str | None):
    """`field` from the report, else from its call; a value that is not a date and time is logged and skipped."""
    sources = [(message, field)] if call is message else [(message, field), (call, f"call.{field}")]
    for source, name in sources:
        value = source.get(field)
        parsed = _datetime(value)
        if parsed is not None:
            return parsed
        if value not in (None, ""):
            logger.warning("end-of-call-report for call %s: %s is not a date and time; ignored", call_id, name)
    return None


def _timestamp(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, tz=dt_timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    return _datetime(value) or timezone.now()


def _duration(message: dict, started, ended):
    for key in ("durationSeconds",):
        value = message.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return round(float(value), 3)
    if started and ended and ended >= started:
        return round((ended - started).total_seconds(), 3)
    return None


def _decimal(value, *, field: str, call_id: str | None):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        logger.warning("end-of-call-report for call %s: %s is not a number; ignored", call_id, field)
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        logger.warning("end-of-call-report for call %s: %s is not a number; ignored", call_id, field)
        return None
    if not number.is_finite() or number < 0 or number >= Decimal("1000000"):
        logger.warning("end-of-call-report for call %s: %s is out of range; ignored", call_id, field)
        return None
    return number.quantize(Decimal("0.000001"))
