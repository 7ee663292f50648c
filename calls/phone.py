"""POST /call: a phone call placed by the customer's server, with an API key staff issued.

Checks, in order: refusal throttle -> API key (401) -> Idempotency-Key (a stored answer is
replayed here) -> body (415/413/400) -> the key's assistant types and phone numbers (403) ->
destination prefix (403) -> blocked user (403) -> resolution -> Vapi key (503) -> limits, the
key's own included (429) -> Vapi. As on /call/web, every refusal except the throttle leaves one
rejected row; the body Vapi receives is built here, never taken from the client.

Idempotency: the first request with an `Idempotency-Key` holds the key on its row (unique per API
key) and stores its answer there, success or error. A retry with the same key and the same body
gets that answer again, with `Idempotent-Replayed: true` and without a row of its own: the first
row is the record of the call, and the replay's log line names it. Answers that say "try again
later" (429, 503) do not hold the key, so the retry is a new attempt. The same key with another
body gets 422; a retry while the first is still with Vapi gets 409 (each leaves a rejected row).
"""

import hashlib
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction

from assistants.models import E164
from calls.api_keys import authenticate_api_key
from calls.bodies import (
    ASSISTANT_TYPE_MAX_LENGTH,
    USER_ID_MAX_LENGTH,
    VARIABLE_NAME_MAX_LENGTH,
    read_identifier,
    parse_json_body,
    shown,
)
from calls.db import release_db_connection
from calls.errors import ProxyError, error_body, short
from calls.limits import note_refusal, refusals_exceeded
from calls.models import CallLog
from calls.services import (
    admit_resolved_call,
    Incoming,
    control_url_of,
    elapsed_ms,
    finish_call_log,
    internal_error,
    new_call_log,
    settle_interrupted_calls,
    usable_call_id,
    upstream_error,
)
from calls.vapi import VapiClient, VapiError, get_vapi_client

logger = logging.getLogger("calls")

ROUTE = "phone"
IDEMPOTENCY_KEY_MAX_LENGTH = CallLog._meta.get_field("idempotency_key").max_length
PHONE_NUMBER_ID_MAX_LENGTH = 100
# "Try again later" answers: the retry must be a new attempt, so they do not hold the key.
_RETRYABLE_STATUSES = (429, 503)

_FIELDS = ("assistantType", "userId", "phoneNumberId", "customer")
_OPTIONAL_FIELDS = ("variableValues",)
_CUSTOMER_FIELDS = ("number",)
# Only what the customer's server needs to follow the call; never the assistant, overrides or monitor URLs.
_CALL_FIELDS = ("id", "status", "type", "createdAt", "phoneNumberId")


@dataclass(frozen=True)
class PhoneCallAnswer:
    status: int
    body: dict
    call_log: CallLog
    replayed: bool = False


@dataclass(frozen=True)
class PhoneCallRequest:
    assistant_type: str
    user_id: str
    phone_number_id: str
    number: str
    variables: dict


def call_phone_start(
    *,
    incoming: Incoming,
    authorization: str | None,
    idempotency_key: str | None,
    max_body_bytes: int,
    vapi: VapiClient | None = None,
) -> PhoneCallAnswer:
    if refusals_exceeded(incoming.client_ip):
        raise ProxyError(
            429,
            "too_many_refusals",
            "Too many refused requests from this address; try again in a minute.",
            headers={"Retry-After": "60"},
        )
    started = time.monotonic()
    log = new_call_log(incoming, route=ROUTE)
    vapi = vapi or get_vapi_client()
    try:
        admitted = _admit(log, incoming, authorization, idempotency_key, max_body_bytes, vapi)
    except ProxyError as err:
        return _refused(log, started, err, incoming.client_ip)
    except Exception:
        log.idempotency_key = log.request_sha256 = ""  # nothing was placed: a retry may try again
        finish_call_log(log, started, outcome=CallLog.Outcome.FAILED, error=internal_error())
        raise
    if isinstance(admitted, PhoneCallAnswer):
        return admitted
    return _place(log, started, vapi, body=admitted)


def _admit(log, incoming, authorization, idempotency_key, max_body_bytes, vapi) -> dict | PhoneCallAnswer:
    """Runs every check and writes the pending row; returns the body for Vapi, or a stored answer."""
    log.api_key = api_key = authenticate_api_key(authorization)
    key = _checked_idempotency_key(idempotency_key)
    if key and incoming.body is not None:  # a body too large to read is refused below, holding no key
        log.idempotency_key = key
        log.request_sha256 = hashlib.sha256(incoming.body).hexdigest()
        if _first_holding(log) is not None:
            return _answer_of_first(log)

    data = parse_json_body(incoming.body, incoming.content_type, max_bytes=max_body_bytes)
    request = phone_call_request(data)
    log.assistant_type = request.assistant_type
    log.user_id = request.user_id
    if not api_key.allowed_types.filter(slug=request.assistant_type).exists():
        raise ProxyError(
            403,
            "assistant_type_not_allowed",
            f"This API key may not start calls for assistant type {request.assistant_type!r}.",
        )
    if request.phone_number_id not in (api_key.allowed_phone_number_ids or []):
        raise ProxyError(
            403,
            "phone_number_not_allowed",
            f"This API key may not call from phone number id {request.phone_number_id!r}.",
        )
    check_destination(request.number)
    try:
        resolution = admit_resolved_call(
            log,
            user_id=request.user_id,
            assistant_type=request.assistant_type,
            client_variables=request.variables,
            vapi=vapi,
            api_key=api_key,
        )
    except IntegrityError:
        if not log.idempotency_key:
            raise
        # A request with the same Idempotency-Key was admitted between our look-up and now.
        log.active_until = None
        return _answer_of_first(log)

    body = resolution.vapi_body(call_log_id=log.pk)
    body["phoneNumberId"] = request.phone_number_id
    body["customer"] = {"number": request.number}
    return body


def _place(log: CallLog, started: float, vapi: VapiClient, *, body: dict) -> PhoneCallAnswer:
    """Asks Vapi for the call the pending row stands for, and settles the row."""
    release_db_connection()
    try:
        reply = vapi.create_phone_call(body)
    except VapiError as err:
        log.upstream_status = getattr(err, "status", None)
        raise _failed(log, started, upstream_error(err)) from err
    except Exception:
        _failed(log, started, internal_error())
        raise
    log.upstream_status = reply.status

    call_id = reply.data.get("id")
    if not usable_call_id(call_id):
        raise _failed(
            log, started, ProxyError(502, "upstream_invalid_response", "Vapi created the call but its answer has no id.")
        )
    answer = client_view_of_phone_call(reply.data)
    log.vapi_call_id = call_id
    log.control_url = control_url_of(reply.data)
    log.outcome = CallLog.Outcome.CREATED
    log.status_code = reply.status
    log.latency_ms = elapsed_ms(started)
    if log.idempotency_key:
        log.response_body = answer
    try:
        with transaction.atomic():
            log.save(
                update_fields=[
                    "upstream_status",
                    "vapi_call_id",
                    "control_url",
                    "outcome",
                    "status_code",
                    "latency_ms",
                    "response_body",
                ]
            )
    except IntegrityError:
        # Vapi call ids are unique; a repeat would otherwise leave this row pending and answer 500.
        log.vapi_call_id = None
        log.control_url = ""
        error = ProxyError(502, "upstream_invalid_response", "Vapi answered with a call id the call log already holds.")
        raise _failed(log, started, error) from None
    logger.info(
        "phone call created: user=%s type=%s key=%s vapi_call=%s",
        log.user_id,
        log.assistant_type,
        log.api_key.prefix,
        log.vapi_call_id,
    )
    return PhoneCallAnswer(status=reply.status, body=answer, call_log=log)


def _failed(log: CallLog, started: float, error: ProxyError) -> ProxyError:
    """Settles the pending row as failed, storing the answer if the row holds an Idempotency-Key."""
    _store_error(log, error)
    finish_call_log(log, started, outcome=CallLog.Outcome.FAILED, error=error)
    return error


def _store_error(log: CallLog, error: ProxyError) -> None:
    if error.status in _RETRYABLE_STATUSES:
        log.idempotency_key = log.request_sha256 = ""
    if log.idempotency_key:
        log.response_body = error_body(error.status, error.code, error.message)


def _refused(log: CallLog, started: float, err: ProxyError, client_ip: str | None) -> PhoneCallAnswer:
    """Writes the rejected row and raises `err`, unless another request holds this Idempotency-Key."""
    _store_error(log, err)
    try:
        with transaction.atomic():
            finish_call_log(log, started, outcome=CallLog.Outcome.REJECTED, error=err)
    except IntegrityError:
        if not log.idempotency_key:
            raise
        # A request with the same Idempotency-Key got there first: answer as it did.
        log.response_body = None
        try:
            return _answer_of_first(log)
        except ProxyError as duplicate:
            err = duplicate
            finish_call_log(log, started, outcome=CallLog.Outcome.REJECTED, error=err)
    note_refusal(client_ip)
    raise err


def _answer_of_first(log: CallLog) -> PhoneCallAnswer:
    """The stored answer of the first request with this Idempotency-Key, or 422/409.

    On 422/409 the key is taken off `log`, which becomes an ordinary rejected row.
    """
    key, request_sha256 = log.idempotency_key, log.request_sha256
    first = _first_holding(log)
    if first is not None and first.response_body is None:
        if settle_interrupted_calls(rows=CallLog.objects.filter(pk=first.pk)):
            first.refresh_from_db()
    log.idempotency_key = log.request_sha256 = ""
    if first is not None and first.request_sha256 != request_sha256:
        raise ProxyError(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request body; use a new key for a new call.",
            detail=f"Idempotency-Key {short(key, 100)!r} was first used by request {first.request_id}.",
        )
    if first is None or first.response_body is None:
        raise ProxyError(
            409,
            "idempotency_in_progress",
            "A request with this Idempotency-Key is still being handled; retry in a few seconds.",
            detail=f"Idempotency-Key {short(key, 100)!r} is held by request {first.request_id if first else '?'}.",
        )
    logger.info(
        "phone call answered from the idempotency store: key=%s first_request=%s status=%d",
        log.api_key.prefix,
        first.request_id,
        first.status_code,
    )
    return PhoneCallAnswer(status=first.status_code, body=first.response_body, call_log=first, replayed=True)


def _first_holding(log: CallLog) -> CallLog | None:
    return CallLog.objects.filter(api_key=log.api_key, idempotency_key=log.idempotency_key).first()


def _checked_idempotency_key(value: str | None) -> str:
    if value is None:
        return ""
    value = value.strip()
    if not value or len(value) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise ProxyError(
            400,
            "invalid_idempotency_key",
            f"The Idempotency-Key header must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters; "
            "leave it out to send without one.",
        )
    return value


def phone_call_request(data: dict) -> PhoneCallRequest:
    """Reads exactly {assistantType, userId, phoneNumberId, customer: {number}, variableValues?}."""
    _exact_fields(data, _FIELDS, _OPTIONAL_FIELDS, "")
    customer = data["customer"]
    if not isinstance(customer, dict):
        raise ProxyError(400, "invalid_field", 'customer must be an object: {"number": "+14155550100"}.')
    _exact_fields(customer, _CUSTOMER_FIELDS, (), "customer.")

    assistant_type = read_identifier((data["assistantType"], "assistantType"), "assistantType", ASSISTANT_TYPE_MAX_LENGTH)
    user_id = read_identifier((data["userId"], "userId"), "userId", USER_ID_MAX_LENGTH)
    phone_number_id = data["phoneNumberId"]
    if not isinstance(phone_number_id, str) or not phone_number_id.strip():  # kept as sent otherwise
        raise ProxyError(400, "invalid_field", "phoneNumberId must be the id of a Vapi phone number, as text.")
    if len(phone_number_id) > PHONE_NUMBER_ID_MAX_LENGTH:
        raise ProxyError(400, "invalid_field", f"phoneNumberId is longer than {PHONE_NUMBER_ID_MAX_LENGTH} characters.")
    number = customer["number"]
    if not isinstance(number, str) or not E164.regex.search(number):
        raise ProxyError(
            400,
            "invalid_phone_number",
            "customer.number must be in E.164 form: + and the country code, digits only, e.g. +14155550100.",
        )
    variables = data.get("variableValues", {})
    if not isinstance(variables, dict):
        raise ProxyError(400, "invalid_field", "variableValues must be an object of variable names to values.")
    for name in variables:
        if not name or len(name) > VARIABLE_NAME_MAX_LENGTH:
            raise ProxyError(400, "invalid_variable", f"Variable name {name[:VARIABLE_NAME_MAX_LENGTH]!r} is not valid.")
    return PhoneCallRequest(
        assistant_type=assistant_type,
        user_id=user_id,
        phone_number_id=phone_number_id,
        number=number,
        variables=variables,
    )


def _exact_fields(obj: dict, required: tuple, optional: tuple, where: str) -> None:
    unknown = [name for name in obj if name not in required and name not in optional]
    if unknown:
        names = ", ".join(where + shown(short(name, 50)) for name in unknown)
        accepted = ", ".join(where + name for name in required + optional)
        raise ProxyError(400, "field_not_allowed", f"Not accepted: {names}. Send only {accepted}.")
    missing = [where + name for name in required if name not in obj]
    if missing:
        raise ProxyError(400, "missing_field", f"Missing required fields: {', '.join(missing)}.")


def allowed_prefixes() -> list[str]:
    prefixes = (str(prefix).strip() for prefix in settings.PHONE_ALLOWED_COUNTRY_PREFIXES)
    return ["+" + prefix.lstrip("+") for prefix in prefixes if prefix.lstrip("+")]


def check_destination(number: str) -> None:
    """Toll-fraud guard: only numbers under the operator's allowed prefixes are called."""
    prefixes = allowed_prefixes()
    if not prefixes:
        # The deployment is not set up for phone calls yet: a 503 like a missing Vapi key, which
        # does not hold an Idempotency-Key, so the same request works once the operator fixes it.
        raise ProxyError(
            503,
            "phone_calls_not_configured",
            "Phone calls are not set up yet: the operator must list the country prefixes phone calls "
            "may go to in PHONE_ALLOWED_COUNTRY_PREFIXES (e.g. +1,+44).",
        )
    if not number.startswith(tuple(prefixes)):
        raise ProxyError(
            403,
            "destination_not_allowed",
            f"customer.number is outside the allowed destinations ({', '.join(prefixes)}).",
        )


def client_view_of_phone_call(call: dict) -> dict:
    answer = {name: call[name] for name in _CALL_FIELDS if name in call}
    customer = call.get("customer")
    number = customer.get("number") if isinstance(customer, dict) else None
    if isinstance(number, str):
        answer["customer"] = {"number": number}
    return answer


def phone_log_refusal(*, incoming: Incoming, error: ProxyError) -> CallLog:
    """Logs a request refused before anything else was looked at (a method /call does not take)."""
    log = new_call_log(incoming, route=ROUTE)
    finish_call_log(log, None, outcome=CallLog.Outcome.REJECTED, error=error)
    return log
