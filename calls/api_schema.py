"""The API contract: what drf-spectacular needs to describe the public routes (GET /api/schema/).

The routes read their bodies themselves (calls/bodies.py, calls/phone.py, calls/webhooks.py), with
error messages a serializer could not give; the serializers here only describe those shapes, and
tests/test_api_schema.py holds them to the code: the same field names as the parsers accept,
every request example accepted by the running route, every error code the code can raise listed.
"""

from http import HTTPStatus

from django.conf import settings
from django.http import Http404
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    OpenApiTypes,
    extend_schema,
    extend_schema_field,
)
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions, serializers
from rest_framework.negotiation import DefaultContentNegotiation

from calls.bodies import ASSISTANT_TYPE_MAX_LENGTH, USER_ID_MAX_LENGTH, VARIABLE_NAME_MAX_LENGTH
from calls.errors import ProxyError

EXAMPLE_REQUEST_ID = "3b0c9d0e5f6a4b7c8d9e0f1a2b3c4d5e"
EXAMPLE_PHONE_NUMBER_ID = "5f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"

# --- shapes ---------------------------------------------------------------------------------


@extend_schema_field(
    {
        "oneOf": [{"type": "string", "minLength": 1, "maxLength": USER_ID_MAX_LENGTH}, {"type": "integer"}],
        "description": "The user as your app knows it; a number is read as text.",
        "example": "customer123",
    }
)
class UserIdField(serializers.Field):
    pass


@extend_schema_field(
    {
        "oneOf": [{"type": "string", "minLength": 1, "maxLength": ASSISTANT_TYPE_MAX_LENGTH}, {"type": "integer"}],
        "description": "The assistant type staff defined in the admin.",
        "example": "sales-coach",
    }
)
class AssistantTypeField(serializers.Field):
    pass


@extend_schema_field(
    {
        "type": "object",
        "description": "Values for the variables the assistant lets clients set (text, number or "
        f"true/false, as staff declared each one; names of 1 to {VARIABLE_NAME_MAX_LENGTH} characters); "
        "server values win over them.",
        "additionalProperties": {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]},
        "example": {"topic": "renewals"},
    }
)
class VariableValuesField(serializers.Field):
    pass


class CallMetadataSerializer(serializers.Serializer):
    userId = UserIdField(required=False)
    assistantType = AssistantTypeField(required=False)


class AssistantSelectionSerializer(serializers.Serializer):
    """`assistant` as `vapi.start({...})` sends it: who calls and which type, never a config."""

    userId = UserIdField(required=False)
    assistantType = AssistantTypeField(required=False)
    variableValues = VariableValuesField(required=False)
    metadata = CallMetadataSerializer(required=False)


class CallOverridesSerializer(serializers.Serializer):
    """`assistantOverrides` as `vapi.start(type, {variableValues, metadata})` sends it."""

    variableValues = VariableValuesField(required=False)
    metadata = CallMetadataSerializer(required=False)


class CallWebRequestSerializer(serializers.Serializer):
    """Any combination of the shapes; a field given in two places must have the same value there."""

    assistant = AssistantSelectionSerializer(required=False)
    assistantId = AssistantTypeField(required=False, help_text="The assistant type (not a Vapi assistant id).")
    assistantOverrides = CallOverridesSerializer(required=False)
    userId = UserIdField(required=False)
    assistantType = AssistantTypeField(required=False)
    variableValues = VariableValuesField(required=False)
    roomDeleteOnUserLeaveEnabled = serializers.BooleanField(required=False, help_text="Passed on to Vapi.")


class VoiceProviderSerializer(serializers.Serializer):
    provider = serializers.CharField()


class AssistantVoiceSerializer(serializers.Serializer):
    voice = VoiceProviderSerializer()


class WebCallSerializer(serializers.Serializer):
    """Only what the SDK reads from Vapi's call: never the assistant config or the monitor URLs."""

    id = serializers.CharField(help_text="Vapi's call id.")
    webCallUrl = serializers.URLField(help_text="The room the SDK joins.")
    status = serializers.CharField(required=False)
    type = serializers.CharField(required=False)
    createdAt = serializers.CharField(required=False)
    artifactPlan = serializers.JSONField(required=False)
    transport = serializers.JSONField(required=False)
    assistant = AssistantVoiceSerializer(required=False)


class CustomerSerializer(serializers.Serializer):
    number = serializers.RegexField(
        r"^\+[1-9][0-9]{6,14}$", help_text="E.164: + and the country code, digits only.", max_length=16
    )


class PhoneCallRequestSerializer(serializers.Serializer):
    assistantType = AssistantTypeField()
    userId = UserIdField()
    phoneNumberId = serializers.CharField(max_length=100, help_text="One of your Vapi phone numbers the key may call from.")
    customer = CustomerSerializer()
    variableValues = VariableValuesField(required=False)


class PhoneCallSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Vapi's call id: follow the call through the webhooks with it.")
    status = serializers.CharField(required=False)
    type = serializers.CharField(required=False)
    createdAt = serializers.CharField(required=False)
    phoneNumberId = serializers.CharField(required=False)
    customer = CustomerSerializer(required=False)


class ErrorSerializer(serializers.Serializer):
    """The one error shape: Vapi's own, plus a machine code and the request id."""

    statusCode = serializers.IntegerField(help_text="The HTTP status again (the SDK drops it).")
    error = serializers.CharField(help_text="The status's name.")
    message = serializers.CharField(help_text="What went wrong, for a person.")
    code = serializers.CharField(help_text="What went wrong, for a program (the call log has the same).")
    requestId = serializers.CharField(help_text="Also in X-Request-ID, the service log and the call log.")


class WebhookMessageSerializer(serializers.Serializer):
    type = serializers.CharField(
        help_text="status-update, end-of-call-report, assistant-request, tool-calls, "
        "transfer-destination-request, knowledge-base-request; other types are stored only."
    )
    call = serializers.JSONField(required=False, help_text="Vapi's call object; `id` matches it to the call log.")


class WebhookRequestSerializer(serializers.Serializer):
    message = WebhookMessageSerializer()


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok"])
    database = serializers.ChoiceField(choices=["ok"])


# Components that take no fields beyond their own, as the parsers refuse unknown ones.
CLOSED_COMPONENTS = (
    "CallMetadata",
    "AssistantSelection",
    "CallOverrides",
    "CallWebRequest",
    "PhoneCallRequest",
    "Customer",
)

# --- errors ---------------------------------------------------------------------------------

_LIMIT_SENTENCES = {
    "deployment_concurrent_calls": "The service is at its limit of simultaneous calls (10 of 10); try again in 30 s.",
    "deployment_daily_spend": "The service has reached its spending limit for today (50.00 of 50.00); try again in 3600 s.",
    "type_concurrent_calls": "Assistant type 'sales-coach' is at its limit of simultaneous calls (5 of 5); try again in 30 s.",
    "user_daily_spend": "You have reached your spending limit for today (2.00 of 2.00); try again in 3600 s.",
    "mapping_concurrent_calls": "You are at your limit of simultaneous 'sales-coach' calls (1 of 1); try again in 30 s.",
    "mapping_calls_per_minute": "You have started your limit of 'sales-coach' calls for this minute (3 of 3); try again in 41 s.",
    "mapping_calls_per_day": "You have started your limit of 'sales-coach' calls for today (20 of 20); try again in 3600 s.",
    "user_concurrent_calls": "You are at your limit of simultaneous calls (2 of 2); try again in 30 s.",
    "user_calls_per_minute": "You have started your limit of calls for this minute (5 of 5); try again in 41 s.",
    "user_calls_per_day": "You have started your limit of calls for today (100 of 100); try again in 3600 s.",
}
_KEY_LIMIT_SENTENCES = {
    "key_concurrent_calls": "This API key is at its limit of simultaneous calls (3 of 3); try again in 30 s.",
    "key_calls_per_minute": "This API key has started its limit of calls for this minute (10 of 10); try again in 41 s.",
    "key_calls_per_day": "This API key has started its limit of calls for today (500 of 500); try again in 3600 s.",
}

_BODY_ERRORS = [
    (415, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json (got 'text/plain')."),
    (413, "body_too_large", "The request body is larger than 65536 bytes."),
    (400, "empty_body", "The request body is empty; send a JSON object."),
    (400, "invalid_json", "The request body is not valid JSON (Expecting value at line 1 column 1)."),
    (400, "body_not_object", "The request body must be a JSON object."),
]
_RESOLUTION_ERRORS = [
    (403, "user_blocked", "This user may not start calls; contact support."),
    (404, "unknown_assistant_type", "Assistant type 'sales-coah' does not exist or is not active."),
    (403, "user_not_mapped", "User 'customer123' has no assistant for 'sales-coach': ask staff to map this user "
     "(this type is for mapped users only)."),
    (403, "assistant_inactive", "The assistant for 'sales-coach' is switched off."),
    (400, "variable_not_allowed", "Variable 'companyName' may not be set by the client for 'sales-coach' (allowed: topic)."),
    (400, "invalid_variable", "Variable 'topic' must be text of at most 100 characters."),
    (503, "vapi_key_missing", "The proxy has no Vapi API key configured (VAPI_API_KEY), so it cannot start calls."),
]
_UPSTREAM_ERRORS = [
    (429, "upstream_rate_limited", "Vapi is rate limiting calls; try again later. (Too Many Requests)"),
    (429, "upstream_concurrency_limited", "Vapi's limit on simultaneous calls is reached; try again later. "
     "(Over Concurrency Limit.)"),
    ("4XX", "upstream_rejected", "Vapi refused the call: Couldn't Get Assistant."),
    (502, "upstream_rejected", "Vapi refused the call with status 499: no reason given"),
    (502, "upstream_auth_failed", "Vapi refused the proxy's credentials: the operator must check VAPI_API_KEY."),
    (502, "upstream_unreachable", "Vapi could not be reached; try again shortly."),
    (502, "upstream_error", "Vapi failed with status 500; try again shortly."),
    (502, "upstream_invalid_response", "Vapi created the call but its answer has no id or webCallUrl."),
    (504, "upstream_timeout", "Vapi did not answer in time; the call may not have started."),
    (500, "internal_error", "The proxy failed to handle this request; it has been logged."),
]
_TOO_MANY_REFUSALS = (429, "too_many_refusals", "Too many refused requests from this address; try again in a minute.")

CALL_WEB_ERRORS = [
    _TOO_MANY_REFUSALS,
    (403, "origin_not_allowed", "Calls from https://evil.example are not allowed; the operator lists frontends in "
     "CORS_ALLOWED_ORIGINS."),
    (401, "token_missing", "No token: create the SDK with new Vapi(token, proxyUrl), using a token your backend minted."),
    (401, "token_invalid", "The token is not valid: it has no exp claim."),
    (401, "token_expired", "The token has expired; get a new one from your backend."),
    (401, "not_logged_in", "Log in to start a call."),
    *_BODY_ERRORS,
    (400, "field_not_allowed", "assistant.model is not accepted: the proxy sets what the assistant is and does; "
     "send only userId, assistantType and allowed variableValues."),
    (400, "override_not_allowed", "assistantOverrides.firstMessage is not accepted: the proxy sets what the assistant "
     "is and does; send only userId, assistantType and allowed variableValues."),
    (400, "conflicting_field", "userId is given twice with different values (assistant.userId and "
     "assistantOverrides.metadata.userId)."),
    (400, "missing_field", "assistantType is required."),
    (400, "invalid_field", "assistant.assistantType must be a string."),
    (403, "user_mismatch", "The body's userId is not the user the token (or session) belongs to; leave userId out "
     "or send the same."),
    (403, "assistant_type_not_allowed", "This token does not allow assistant type 'support'."),
    *_RESOLUTION_ERRORS,
    *((429, f"limit_{name}", sentence) for name, sentence in _LIMIT_SENTENCES.items()),
    *_UPSTREAM_ERRORS,
]

CALL_PHONE_ERRORS = [
    _TOO_MANY_REFUSALS,
    (401, "api_key_missing", "No API key: send Authorization: Bearer <key>, with a key staff issued for your server."),
    (401, "api_key_invalid", "The API key is not valid."),
    (400, "invalid_idempotency_key", "The Idempotency-Key header must be 1 to 255 characters; leave it out to send "
     "without one."),
    (409, "idempotency_in_progress", "A request with this Idempotency-Key is still being handled; retry in a few seconds."),
    (504, "upstream_outcome_unknown", "The proxy stopped before Vapi answered; the call may have started. Check the "
     "Vapi dashboard before you place it again."),
    (422, "idempotency_key_reused", "This Idempotency-Key was used with a different request body; use a new key for "
     "a new call."),
    *_BODY_ERRORS,
    (400, "field_not_allowed", "Not accepted: assistant. Send only assistantType, userId, phoneNumberId, customer, "
     "variableValues."),
    (400, "missing_field", "Missing required fields: phoneNumberId, customer."),
    (400, "invalid_field", 'customer must be an object: {"number": "+14155550100"}.'),
    (400, "invalid_phone_number", "customer.number must be in E.164 form: + and the country code, digits only, "
     "e.g. +14155550100."),
    (403, "assistant_type_not_allowed", "This API key may not start calls for assistant type 'support'."),
    (403, "phone_number_not_allowed", "This API key may not call from phone number id 'b1c2d3e4'."),
    (403, "destination_not_allowed", "customer.number is outside the allowed destinations (+1, +44)."),
    (503, "phone_calls_not_configured", "Phone calls are not set up yet: the operator must list the country prefixes "
     "phone calls may go to in PHONE_ALLOWED_COUNTRY_PREFIXES (e.g. +1,+44)."),
    *_RESOLUTION_ERRORS,
    *((429, f"limit_{name}", sentence) for name, sentence in {**_KEY_LIMIT_SENTENCES, **_LIMIT_SENTENCES}.items()),
    *_UPSTREAM_ERRORS,
]

WEBHOOK_ERRORS = [
    (401, "webhook_unauthorized", "The X-Vapi-Secret header does not match."),
    (413, "body_too_large", "The message is larger than 20971520 bytes."),
    (400, "invalid_message", 'The body must be {"message": {"type": ..., ...}}.'),
]

HEALTH_ERRORS = [(503, "database_unavailable", "The database cannot be reached.")]


def error_example_value(status: int | str, code: str, message: str) -> dict:
    status = 422 if status == "4XX" else status  # any 4xx Vapi answers; 422 for the example
    return {
        "statusCode": status,
        "error": HTTPStatus(status).phrase,
        "message": message,
        "code": code,
        "requestId": EXAMPLE_REQUEST_ID,
    }


def _error_responses(errors) -> dict:
    by_status: dict[str, list] = {}
    for status, code, message in errors:
        by_status.setdefault(str(status), []).append(
            OpenApiExample(
                f"{status} {code}",
                value=error_example_value(status, code, message),
                response_only=True,
                status_codes=[str(status)],
            )
        )
    return {
        status: OpenApiResponse(ErrorSerializer, description=_error_description(status, examples), examples=examples)
        for status, examples in sorted(by_status.items())
    }


def _error_description(status: str, examples) -> str:
    codes = ", ".join(f"`{example.name.split(' ', 1)[1]}`" for example in examples)
    if status == "4XX":
        return f"Vapi refused the call with another 4xx status, passed on: {codes}."
    return f"{HTTPStatus(int(status)).phrase}: {codes}."


def _request_id_header() -> OpenApiParameter:
    return OpenApiParameter(
        "X-Request-ID",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=True,
        description="This request's id: in error bodies, the service log and the call log.",
    )


def _retry_after_header(statuses) -> OpenApiParameter:
    return OpenApiParameter(
        "Retry-After",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        response=statuses,
        description="Seconds to wait before trying again.",
    )


# --- the operations -------------------------------------------------------------------------

_WEB_CALL_EXAMPLE = {
    "id": "3f1c9a52-6a7e-4c1b-9d1e-0c2f5e8b7a11",
    "webCallUrl": "https://vapi.daily.co/Zx8kP2mQ7rT1",
    "status": "queued",
    "type": "webCall",
    "createdAt": "2026-12-03T10:15:00.000Z",
    "artifactPlan": {"recordingEnabled": True, "videoRecordingEnabled": False},
    "transport": {"provider": "daily", "assistantVideoEnabled": False, "callUrl": "https://vapi.daily.co/Zx8kP2mQ7rT1"},
    "assistant": {"voice": {"provider": "vapi"}},
}

# Every body shape the route accepts (calls/bodies.py): name -> (the frontend call that sends it, body).
CALL_WEB_REQUEST_EXAMPLES = {
    "sdk assistant": (
        "vapi.start({userId, assistantType})",
        {"assistant": {"userId": "customer123", "assistantType": "sales-coach"}},
    ),
    "sdk assistant variables": (
        "vapi.start({userId, assistantType, variableValues})",
        {"assistant": {"userId": "customer123", "assistantType": "sales-coach", "variableValues": {"topic": "renewals"}}},
    ),
    "sdk assistant metadata": (
        "vapi.start({metadata: {userId, assistantType}})",
        {"assistant": {"metadata": {"userId": "customer123", "assistantType": "sales-coach"}}},
    ),
    "sdk assistant id overrides": (
        'vapi.start("sales-coach", {variableValues, metadata: {userId}})',
        {
            "assistantId": "sales-coach",
            "assistantOverrides": {"variableValues": {"topic": "renewals"}, "metadata": {"userId": "customer123"}},
        },
    ),
    "sdk assistant and overrides": (
        "vapi.start({userId, assistantType}, {variableValues})",
        {
            "assistant": {"userId": "customer123", "assistantType": "sales-coach"},
            "assistantOverrides": {"variableValues": {"topic": "renewals"}},
        },
    ),
    "plain fetch": (
        "a plain fetch",
        {"userId": "customer123", "assistantType": "sales-coach", "variableValues": {"topic": "renewals"}},
    ),
    "numeric user id": ("a numeric userId (read as text)", {"userId": 12345, "assistantType": "sales-coach"}),
    "user from token": (
        "jwt or session mode: the token or session says who calls",
        {"assistant": {"assistantType": "sales-coach"}},
    ),
    "room delete on user leave": (
        "roomDeleteOnUserLeaveEnabled, passed on to Vapi",
        {"assistant": {"userId": "customer123", "assistantType": "sales-coach"}, "roomDeleteOnUserLeaveEnabled": True},
    ),
}

call_web_schema = extend_schema(
    operation_id="startWebCall",
    summary="Start a web call (what the @vapi-ai/web SDK's start() sends)",
    description=(
        "The client says who is calling and which assistant type; the proxy resolves the assistant "
        "staff mapped, calls Vapi with its own key and answers only what the SDK needs, with Vapi's status. "
        "Who the user is depends on `PROXY_IDENTITY`: `jwt` (the SDK's token, `Authorization: Bearer`), "
        "`session` (this site's session cookie, same origin only) or `open` (the body's userId, local "
        "development). Also served at `//call/web`, `/call/web/` and under `PROXY_PATH_PREFIX`. "
        "Other methods than POST (and a CORS preflight) answer 405 `method_not_allowed`."
    ),
    tags=["calls"],
    request=CallWebRequestSerializer,
    responses={201: OpenApiResponse(WebCallSerializer, description="Vapi created the call."), **_error_responses(CALL_WEB_ERRORS)},
    auth=[{"sdkToken": []}, {"sessionCookie": []}, {}],
    parameters=[
        OpenApiParameter(
            "Origin",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            description="Sent by browsers; must be in CORS_ALLOWED_ORIGINS or the proxy's own origin.",
        ),
        _request_id_header(),
        _retry_after_header(["429"]),
    ],
    examples=[
        *(
            OpenApiExample(name, summary=summary, value=value, request_only=True)
            for name, (summary, value) in CALL_WEB_REQUEST_EXAMPLES.items()
        ),
        OpenApiExample("created", value=_WEB_CALL_EXAMPLE, response_only=True, status_codes=["201"]),
    ],
)

PHONE_REQUEST_EXAMPLE = {
    "assistantType": "sales-coach",
    "userId": "customer123",
    "phoneNumberId": EXAMPLE_PHONE_NUMBER_ID,
    "customer": {"number": "+14155550100"},
    "variableValues": {"topic": "renewals"},
}

call_phone_schema = extend_schema(
    operation_id="startPhoneCall",
    summary="Have Vapi phone someone (from your servers, with a server API key)",
    description=(
        "For your backend, never a browser (no CORS). The key staff issued limits the assistant types and "
        "the phone numbers it may use; destinations must start with one of PHONE_ALLOWED_COUNTRY_PREFIXES. "
        "With an `Idempotency-Key`, a retry with the same body gets the first answer again "
        "(`Idempotent-Replayed: true`) instead of a second call. Also served at `/call/`, `//call` and under "
        "`PROXY_PATH_PREFIX`."
    ),
    tags=["calls"],
    request=PhoneCallRequestSerializer,
    responses={
        201: OpenApiResponse(PhoneCallSerializer, description="Vapi queued the call (or a replay of that answer)."),
        **_error_responses(CALL_PHONE_ERRORS),
    },
    auth=[{"serverApiKey": []}],
    parameters=[
        OpenApiParameter(
            "Idempotency-Key",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            description="1 to 255 characters, one per intended call: a retry cannot place a second call.",
        ),
        _request_id_header(),
        _retry_after_header(["429"]),
        OpenApiParameter(
            "Idempotent-Replayed",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            response=True,
            enum=["true"],
            description="Present when the answer is the stored answer of an earlier request with this key "
            "(a stored error keeps that request's requestId).",
        ),
        OpenApiParameter(
            "WWW-Authenticate",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            response=["401"],
            description='Bearer realm="vapi-proxy"',
        ),
    ],
    examples=[
        OpenApiExample("phone call", summary="a phone call", value=PHONE_REQUEST_EXAMPLE, request_only=True),
        OpenApiExample(
            "queued",
            value={
                "id": "7a3e5b1c-2d4f-4a6b-8c0d-1e2f3a4b5c6d",
                "status": "queued",
                "type": "outboundPhoneCall",
                "createdAt": "2026-12-03T10:20:00.000Z",
                "phoneNumberId": EXAMPLE_PHONE_NUMBER_ID,
                "customer": {"number": "+14155550100"},
            },
            response_only=True,
            status_codes=["201"],
        ),
    ],
)

WEBHOOK_REQUEST_EXAMPLES = {
    "status-update": {"message": {"type": "status-update", "status": "in-progress", "call": {"id": "3f1c9a52-6a7e-4c1b-9d1e-0c2f5e8b7a11"}}},
    "end-of-call-report": {
        "message": {
            "type": "end-of-call-report",
            "endedReason": "customer-ended-call",
            "cost": 0.12,
            "call": {"id": "3f1c9a52-6a7e-4c1b-9d1e-0c2f5e8b7a11"},
            "artifact": {"transcript": "AI: Hi Ana!\nUser: Hi."},
            "analysis": {"summary": "A short practice call."},
        }
    },
    "assistant-request": {
        "message": {
            "type": "assistant-request",
            "call": {"id": "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a", "type": "inboundPhoneCall", "customer": {"number": "+14155550100"}},
            "phoneNumber": {"id": EXAMPLE_PHONE_NUMBER_ID, "number": "+14155550199"},
        }
    },
}

webhook_schema = extend_schema(
    operation_id="receiveVapiMessage",
    summary="Vapi's server URL: status updates, end-of-call reports, assistant requests, tool calls",
    description=(
        "Paste this URL into the Vapi dashboard with a credential (`VAPI_WEBHOOK_AUTH`: secret, bearer or hmac). "
        "Every authentic message is stored and answered 200; the answer depends on the message type "
        "(`{}`, an assistant for `assistant-request`, or your backend's answer for tool calls). "
        "The proxy never answers a webhook with a 5xx on purpose."
    ),
    tags=["webhooks"],
    request=WebhookRequestSerializer,
    responses={
        200: OpenApiResponse(OpenApiTypes.OBJECT, description="Stored (and applied, the first time)."),
        **_error_responses(WEBHOOK_ERRORS),
    },
    auth=[{"vapiSecret": []}, {"vapiBearer": []}, {"vapiHmac": [], "vapiHmacTimestamp": []}],
    parameters=[_request_id_header()],
    examples=[
        *(OpenApiExample(name, value=value, request_only=True) for name, value in WEBHOOK_REQUEST_EXAMPLES.items()),
        OpenApiExample("applied", value={}, response_only=True, status_codes=["200"]),
    ],
)

health_schema = extend_schema(
    operation_id="health",
    summary="Health check for the load balancer (checks the database)",
    tags=["operations"],
    responses={
        200: OpenApiResponse(HealthSerializer, examples=[OpenApiExample("healthy", value={"status": "ok", "database": "ok"})]),
        **_error_responses(HEALTH_ERRORS),
    },
    auth=[{}],
    parameters=[_request_id_header()],
)


# --- hooks (SPECTACULAR_SETTINGS) -----------------------------------------------------------


def public_routes_only(endpoints, **kwargs):
    """PREPROCESSING_HOOKS: one operation per public route, at its canonical path.

    The URL patterns also accept `//call/web`, a trailing slash and PROXY_PATH_PREFIX copies; those are
    the same operations, described in their text.
    """
    from calls import views

    canonical = {
        views.CallWebView: "/call/web",
        views.PhoneCallView: "/call",
        views.VapiWebhookView: "/webhooks/vapi",
        views.HealthView: "/healthz",
    }
    seen = set()
    kept = []
    for _path, path_regex, method, callback in endpoints:
        path = canonical.get(getattr(callback, "cls", None))
        if path is None or (path, method) in seen:
            continue
        seen.add((path, method))
        kept.append((path, path_regex, method, callback))
    return kept


def close_shapes_and_add_security(result, generator, request, public):
    """POSTPROCESSING_HOOKS: request shapes refuse unknown fields, and the credentials each route takes.

    The webhook credential headers are this deployment's (VAPI_WEBHOOK_* settings).
    """
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name in CLOSED_COMPONENTS:
        if name in schemas:
            schemas[name]["additionalProperties"] = False
    prefix = settings.VAPI_WEBHOOK_BEARER_PREFIX.strip()
    bearer_header = settings.VAPI_WEBHOOK_BEARER_HEADER
    result["components"]["securitySchemes"] = {
        "sdkToken": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "PROXY_IDENTITY=jwt: an HS256 token your backend signs (`sub` is the userId, `exp` "
            "required, optional `assistantTypes`), given to the SDK as new Vapi(token, proxyUrl).",
        },
        "sessionCookie": {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "PROXY_IDENTITY=session: the logged-in Django user, from the proxy's own origin only.",
        },
        "serverApiKey": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "vp_<prefix>_<secret>",
            "description": "A server API key staff issued in the admin (Server API keys).",
        },
        "vapiSecret": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Vapi-Secret",
            "description": "VAPI_WEBHOOK_AUTH=secret: one of VAPI_WEBHOOK_SECRETS.",
        },
        "vapiBearer": (
            {"type": "http", "scheme": "bearer", "description": "VAPI_WEBHOOK_AUTH=bearer: one of VAPI_WEBHOOK_SECRETS."}
            if bearer_header.lower() == "authorization" and prefix.lower() == "bearer"
            else {
                "type": "apiKey",
                "in": "header",
                "name": bearer_header,
                "description": f"VAPI_WEBHOOK_AUTH=bearer: {prefix + ' ' if prefix else ''}one of VAPI_WEBHOOK_SECRETS.",
            }
        ),
        "vapiHmac": {
            "type": "apiKey",
            "in": "header",
            "name": settings.VAPI_WEBHOOK_SIGNATURE_HEADER,
            "description": f"VAPI_WEBHOOK_AUTH=hmac: {settings.VAPI_WEBHOOK_SIGNATURE_PREFIX}<{settings.VAPI_WEBHOOK_SIGNATURE_ENCODING} "
            f"HMAC-{settings.VAPI_WEBHOOK_HMAC_ALGORITHM.upper()} of {settings.VAPI_WEBHOOK_SIGNED_PAYLOAD!r}, over the raw body>.",
        },
        "vapiHmacTimestamp": {
            "type": "apiKey",
            "in": "header",
            "name": settings.VAPI_WEBHOOK_TIMESTAMP_HEADER,
            "description": f"VAPI_WEBHOOK_AUTH=hmac: the signing time (seconds or milliseconds), at most "
            f"{settings.VAPI_WEBHOOK_TOLERANCE_SECONDS} s old.",
        },
    }
    return result


# --- serving it -------------------------------------------------------------------------------


class SchemaNegotiation(DefaultContentNegotiation):
    """YAML unless `?format=json` or an Accept header asks for JSON; never a 404 or 406."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except (exceptions.NotAcceptable, exceptions.NotFound, Http404):
            return renderers[0], renderers[0].media_type


class _ReadOnly:
    # Not OPTIONS either: REST framework would describe the view, and the docs page cannot render that.
    http_method_names = ["get", "head"]

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise ProxyError(405, "method_not_allowed", "This method is not allowed here.", headers={"Allow": "GET, HEAD"})


class SchemaView(_ReadOnly, SpectacularAPIView):
    """GET /api/schema/: the OpenAPI 3 document, the same with DJANGO_DEBUG on or off."""

    content_negotiation_class = SchemaNegotiation


class DocsView(_ReadOnly, SpectacularSwaggerView):
    """GET /api/docs/: Swagger UI on the schema, its files served by the proxy (drf-spectacular-sidecar)."""
