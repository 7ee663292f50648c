"""The one error shape every proxy route answers with: Vapi's own, plus a machine code and the request id.

The browser SDK hands the parsed error body to the app's `error` event and drops the HTTP status,
so the status is repeated in the body.
"""

import logging
from http import HTTPStatus

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.negotiation import BaseContentNegotiation

from calls.request_context import current_request_id

logger = logging.getLogger("calls")

DETAIL_MAX_LENGTH = 500


class ProxyError(Exception):
    """A refusal or failure the client is told about, with the status and code it gets."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict | None = None, detail: str = ""):
        super().__init__(message)
        self.status = int(status)
        self.code = code
        self.message = message
        self.headers = headers or {}
        # For staff (call log, server log) when they should know more than the client is told.
        self.detail = detail or message

    def to_response(self) -> JsonResponse:
        return error_response(self.status, self.code, self.message, headers=self.headers)


def error_body(status: int, code: str, message: str) -> dict:
    return {
        "statusCode": status,
        "error": HTTPStatus(status).phrase,
        "message": message,
        "code": code,
        "requestId": current_request_id(),
    }


def error_response(status: int, code: str, message: str, *, headers: dict | None = None) -> JsonResponse:
    response = JsonResponse(error_body(status, code, message), status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def short(text: str, limit: int = DETAIL_MAX_LENGTH) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_DRF_CODES = {
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.ParseError: "invalid_json",
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.AuthenticationFailed: "authentication_failed",
    drf_exceptions.PermissionDenied: "permission_denied",
    drf_exceptions.Throttled: "throttled",
    drf_exceptions.NotFound: "not_found",
}


def drf_exception_handler(exc, context):
    """REST framework's EXCEPTION_HANDLER: every exception a DRF view raises becomes the one shape."""
    if isinstance(exc, ProxyError):
        return exc.to_response()
    # Django's own exceptions, as REST framework's default handler maps them.
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    if isinstance(exc, drf_exceptions.APIException):
        headers = {}
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "invalid_request")
        detail = exc.detail if isinstance(exc.detail, str) else "The request is invalid."
        return error_response(exc.status_code, code, str(detail), headers=headers)
    logger.exception("Unhandled error in %s", type(context.get("view")).__name__)
    return error_response(500, "internal_error", "The proxy failed to handle this request; it has been logged.")


class AnswerJson(BaseContentNegotiation):
    """Every API answer is JSON whatever the Accept header says: a 406 would lose a webhook, and
    the SDK reads JSON only."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type
