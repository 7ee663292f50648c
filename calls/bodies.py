"""Every body shape a real frontend sends for a web call, turned into one `CallRequest`.

Accepted shapes (they may be combined, as `vapi.start(assistant, assistantOverrides)` does):

- `{"assistant": {"userId": ..., "assistantType": ..., "variableValues": {...}}}`
  (what `vapi.start({userId, assistantType})` sends)
- `{"assistant": {"metadata": {"userId": ..., "assistantType": ...}}}`
- `{"assistantId": "<assistantType>", "assistantOverrides": {"variableValues": {...}, "metadata": {"userId": ...}}}`
  (what `vapi.start("sales-coach", {variableValues, metadata})` sends)
- `{"userId": ..., "assistantType": ..., "variableValues": {...}}` (a plain `fetch`)

plus `roomDeleteOnUserLeaveEnabled` (a boolean) at the top level. Anything else is refused with
the field's name: the client chooses who and which assistant type, never what the assistant is.
"""

import json
import math
import re
from dataclasses import dataclass, field

from calls.errors import ProxyError

USER_ID_MAX_LENGTH = 255
ASSISTANT_TYPE_MAX_LENGTH = 100
VARIABLE_NAME_MAX_LENGTH = 100

_MISSING = object()
# C0 and C1 controls (NUL, newlines, ...) and lone surrogates: no identifier has them, PostgreSQL
# stores no NUL, and a newline in a userId would forge lines in the server log.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True)
class CallRequest:
    user_id: str | None  # None when the body names no user (the token or session does)
    assistant_type: str
    variables: dict = field(default_factory=dict)
    room_delete_on_user_leave: bool | None = None


def parse_json_body(body: bytes | None, content_type: str, *, max_bytes: int) -> dict:
    """Checks media type, size and JSON syntax, in that order; returns the decoded object.

    `body` is None when it was too large to read at all.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise ProxyError(
            415,
            "unsupported_media_type",
            f"Send the body as JSON with Content-Type: application/json (got {media_type or 'none'!r}).",
        )
    if body is None or len(body) > max_bytes:
        raise ProxyError(413, "body_too_large", f"The request body is larger than {max_bytes} bytes.")
    if not body.strip():
        raise ProxyError(400, "empty_body", "The request body is empty; send a JSON object.")
    try:
        # Decoded here: json.loads would also guess UTF-16 and UTF-32, which JSON over HTTP is not.
        data = loads_strict(body.decode("utf-8"))
        _refuse_lone_surrogates(data)
    except (ValueError, RecursionError) as err:
        raise ProxyError(400, "invalid_json", f"The request body is not valid JSON ({_json_reason(err)}).") from None
    if not isinstance(data, dict):
        raise ProxyError(400, "body_not_object", "The request body must be a JSON object.")
    return data


class _NotJsonNumber(ValueError):
    pass


class _NotUnicode(ValueError):
    pass


def _refuse_lone_surrogates(data) -> None:
    """JSON lets a string escape half a UTF-16 pair ("\\ud800"), which is no character: nothing can
    encode it (the database, the log, Vapi's request), so such a body is refused as not JSON text."""
    pending = [data]
    while pending:  # a loop, not recursion: the body may be nested as deeply as json.loads allows
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and not is_unicode_text(value):
            raise _NotUnicode("it has a \\u escape that is half of a UTF-16 pair, not a character")


def is_unicode_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(name: str) -> str:
    """A client-chosen name for a message: as is when printable, else quoted with escapes (no raw
    control characters reach the call log, the server log or PostgreSQL, which refuses NUL)."""
    return name if name.isprintable() else ascii(name)


def loads_strict(text: str):
    """json.loads that accepts only JSON: no NaN, Infinity or numbers that overflow to infinity."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)


# Python's json accepts NaN, Infinity and overflowing floats (1e400 -> inf); JSON has none of them
# and httpx refuses to encode them, so they would fail only when the upstream body is built.
def _refuse_constant(name: str):
    raise _NotJsonNumber(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJsonNumber(f"the number {text[:20]} is out of range")
    return value


def _json_reason(err: Exception) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"{err.msg} at line {err.lineno} column {err.colno}"
    if isinstance(err, (_NotJsonNumber, _NotUnicode)):
        return str(err)
    if isinstance(err, UnicodeDecodeError):
        return "it is not UTF-8 text"
    if isinstance(err, RecursionError):
        return "it is nested too deeply"
    return "a number in it has too many digits"  # Python's limit on int digits


class _Collector:
    """Gathers one value per field from wherever the shapes put it; the same field twice must agree."""

    def __init__(self):
        self.values: dict[str, tuple[object, str]] = {}
        self.variables: dict[str, tuple[object, str]] = {}

    def put(self, name: str, value, where: str):
        if value is _MISSING:
            return
        previous = self.values.get(name)
        if previous is not None and not _same(previous[0], value):
            raise ProxyError(
                400,
                "conflicting_field",
                f"{name} is given twice with different values ({previous[1]} and {where}).",
            )
        self.values.setdefault(name, (value, where))

    def put_variables(self, value, where: str):
        if value is _MISSING:
            return
        if not isinstance(value, dict):
            raise ProxyError(400, "invalid_field", f"{where} must be an object of variable names to values.")
        for name, item in value.items():
            previous = self.variables.get(name)
            if previous is not None and not _same(previous[0], item):
                raise ProxyError(
                    400,
                    "conflicting_field",
                    f"Variable {name!r} is given twice with different values ({previous[1]} and {where}).",
                )
            self.variables.setdefault(name, (item, where))


def _same(a, b) -> bool:
    """Equality of JSON values: unlike Python's ==, true is not 1 and false is not 0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _object(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise ProxyError(400, "invalid_field", f"{where} must be a JSON object.")
    return value


def _refuse_unknown(obj: dict, allowed: set[str], where: str, *, code: str = "field_not_allowed"):
    for key in obj:
        if key not in allowed:
            path = f"{where}.{shown(key)}" if where else shown(key)
            raise ProxyError(
                400,
                code,
                f"{path} is not accepted: the proxy sets what the assistant is and does; "
                "send only userId, assistantType and allowed variableValues.",
            )


_TOP_LEVEL = {
    "assistant",
    "assistantId",
    "assistantOverrides",
    "userId",
    "assistantType",
    "variableValues",
    "roomDeleteOnUserLeaveEnabled",
}
_IN_ASSISTANT = {"userId", "assistantType", "variableValues", "metadata"}
_IN_OVERRIDES = {"variableValues", "metadata"}
_IN_METADATA = {"userId", "assistantType"}


def _read_metadata(collector: _Collector, container: dict, where: str):
    metadata = container.get("metadata", _MISSING)
    if metadata is _MISSING:
        return
    metadata = _object(metadata, f"{where}.metadata")
    _refuse_unknown(metadata, _IN_METADATA, f"{where}.metadata")
    collector.put("userId", metadata.get("userId", _MISSING), f"{where}.metadata.userId")
    collector.put("assistantType", metadata.get("assistantType", _MISSING), f"{where}.metadata.assistantType")


def normalize_call_body(data: dict) -> CallRequest:
    """Turns any accepted body shape into (userId, assistantType, client variables)."""
    _refuse_unknown(data, _TOP_LEVEL, "")
    collected = _Collector()

    collected.put("userId", data.get("userId", _MISSING), "userId")
    collected.put("assistantType", data.get("assistantType", _MISSING), "assistantType")
    collected.put_variables(data.get("variableValues", _MISSING), "variableValues")

    if "assistant" in data:
        assistant = _object(data["assistant"], "assistant")
        _refuse_unknown(assistant, _IN_ASSISTANT, "assistant")
        collected.put("userId", assistant.get("userId", _MISSING), "assistant.userId")
        collected.put("assistantType", assistant.get("assistantType", _MISSING), "assistant.assistantType")
        collected.put_variables(assistant.get("variableValues", _MISSING), "assistant.variableValues")
        _read_metadata(collected, assistant, "assistant")

    if "assistantId" in data:
        collected.put("assistantType", data["assistantId"], "assistantId")

    if "assistantOverrides" in data:
        overrides = _object(data["assistantOverrides"], "assistantOverrides")
        _refuse_unknown(overrides, _IN_OVERRIDES, "assistantOverrides", code="override_not_allowed")
        collected.put_variables(overrides.get("variableValues", _MISSING), "assistantOverrides.variableValues")
        _read_metadata(collected, overrides, "assistantOverrides")

    room_delete = data.get("roomDeleteOnUserLeaveEnabled")
    if room_delete is not None and not isinstance(room_delete, bool):
        raise ProxyError(400, "invalid_field", "roomDeleteOnUserLeaveEnabled must be true or false.")

    found_user = collected.values.get("userId")
    user_id = read_identifier(found_user, "userId", USER_ID_MAX_LENGTH) if found_user is not None else None
    assistant_type = read_identifier(collected.values.get("assistantType"), "assistantType", ASSISTANT_TYPE_MAX_LENGTH)
    variables = {name: value for name, (value, _) in collected.variables.items()}
    for name in variables:
        if not name or len(name) > VARIABLE_NAME_MAX_LENGTH:
            raise ProxyError(400, "invalid_variable", f"Variable name {name[:VARIABLE_NAME_MAX_LENGTH]!r} is not valid.")
    return CallRequest(
        user_id=user_id,
        assistant_type=assistant_type,
        variables=variables,
        room_delete_on_user_leave=room_delete,
    )


def read_identifier(found: tuple | None, name: str, max_length: int) -> str:
    if found is None:
        raise ProxyError(400, "missing_field", f"{name} is required.")
    value, where = found
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ProxyError(400, "invalid_field", f"{where} must be a string.")
    value = value.strip()
    if not value:
        raise ProxyError(400, "missing_field", f"{name} is required ({where} is empty).")
    if CONTROL_CHARACTERS.search(value):
        raise ProxyError(400, "invalid_field", f"{where} must not contain control characters.")
    if len(value) > max_length:
        raise ProxyError(400, "invalid_field", f"{where} is longer than {max_length} characters.")
    return value
