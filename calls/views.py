from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from rest_framework.views import APIView

from calls.api_schema import call_phone_schema, call_web_schema, health_schema, webhook_schema
from calls.errors import ProxyError, error_response
from calls.identity import client_ip, identify
from calls.phone import call_phone_start, phone_log_refusal
from calls.services import Incoming, call_log_refusal, call_web_start
from calls.vapi import get_vapi_client
from calls.webhooks import webhook_receive


class CallWebView(APIView):
    """POST /call/web: what `new Vapi(token, proxyUrl).start(...)` calls."""

    @call_web_schema
    def post(self, request):
        started = call_web_start(incoming=_incoming(request), max_body_bytes=settings.CALL_MAX_BODY_BYTES)
        return JsonResponse(started.body, status=started.status)

    def options(self, request, *args, **kwargs):
        # A preflight carrying Origin is answered by the CORS middleware before it gets here.
        return HttpResponse(status=200, headers={"Allow": "POST, OPTIONS"})

    def http_method_not_allowed(self, request, *args, **kwargs):
        error = ProxyError(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here; start a call with POST.",
            headers={"Allow": "POST, OPTIONS"},
        )
        call_log_refusal(incoming=_incoming(request, read_body=False), error=error)
        raise error


class VapiWebhookView(APIView):
    """POST /webhooks/vapi: the server URL to paste into the Vapi dashboard."""

    http_method_names = ["post"]  # Vapi only POSTs; no browser calls it, so no OPTIONS either

    @webhook_schema
    def post(self, request):
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        body = None if declared > settings.WEBHOOK_MAX_BODY_BYTES else _read_body(request)
        if body is None or len(body) > settings.WEBHOOK_MAX_BODY_BYTES:
            raise ProxyError(
                413, "body_too_large", f"The message is larger than {settings.WEBHOOK_MAX_BODY_BYTES} bytes."
            )
        reply = webhook_receive(
            body=body, headers=request.headers, method=request.method, url=request.build_absolute_uri()
        )
        return JsonResponse(reply.body, status=reply.status)

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise ProxyError(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here; Vapi sends its messages with POST.",
            headers={"Allow": "POST"},
        )


def _incoming(request, *, read_body: bool = True) -> Incoming:
    meta = request.META
    body = b""
    if read_body:
        try:
            declared = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        # Larger than the route accepts: leave it unread and let the size check refuse it.
        body = None if declared > settings.CALL_MAX_BODY_BYTES else _read_body(request)
    return Incoming(
        request_id=request.request_id,
        content_type=meta.get("CONTENT_TYPE", ""),
        body=body,
        origin=meta.get("HTTP_ORIGIN", ""),
        client_ip=client_ip(request),
        own_origin=f"{request.scheme}://{request.get_host()}",
        identify=lambda: identify(request),
    )


def _read_body(request):
    try:
        return request.body
    except Exception:  # Django's RequestDataTooBig for a body without a Content-Length
        return None


# These JSON routes hold no session state, so no CSRF check: without the exemption a POST from a
# browser (which has no CSRF cookie) got 403 "refused" instead of its 404 or 405.
@csrf_exempt
@require_safe
def root(request):
    return JsonResponse(
        {
            "service": "vapi-proxy",
            "status": "running",
            "callWebUrl": request.build_absolute_uri("/call/web"),
            "vapiKeyConfigured": get_vapi_client().configured,
        }
    )


class HealthView(APIView):
    """GET /healthz: the load balancer's health check (a REST framework view so the schema lists it)."""

    http_method_names = ["get", "head"]

    @health_schema
    def get(self, request):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception:
            return error_response(503, "database_unavailable", "The database cannot be reached.")
        return JsonResponse({"status": "ok", "database": "ok"})

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise ProxyError(405, "method_not_allowed", "This method is not allowed here.", headers={"Allow": "GET, HEAD"})


@csrf_exempt
def not_found(request, *args, **kwargs):
    return error_response(404, "not_found", f"There is nothing at {request.path}. Calls start with POST /call/web.")


class PhoneCallView(APIView):
    """POST /call: a phone call placed by the customer's server with an API key (no browsers: no CORS)."""

    http_method_names = ["post"]

    @call_phone_schema
    def post(self, request):
        answer = call_phone_start(
            incoming=_incoming(request),
            authorization=request.META.get("HTTP_AUTHORIZATION"),
            idempotency_key=request.META.get("HTTP_IDEMPOTENCY_KEY"),
            max_body_bytes=settings.CALL_MAX_BODY_BYTES,
        )
        response = JsonResponse(answer.body, status=answer.status)
        if answer.replayed:
            response["Idempotent-Replayed"] = "true"
        return response

    def http_method_not_allowed(self, request, *args, **kwargs):
        error = ProxyError(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here; place a phone call with POST.",
            headers={"Allow": "POST"},
        )
        phone_log_refusal(incoming=_incoming(request, read_body=False), error=error)
        raise error
