import logging
import uuid

from django.http import JsonResponse

from calls.errors import error_response
from calls.request_context import current_request_id, reset_request_id, set_request_id

logger = logging.getLogger("calls")

# Pages for people keep Django's HTML; everything else is an API route and answers JSON.
HTML_PATH_PREFIXES = ("/admin/", "/static/", "/demo/")


class RequestIdMiddleware:
    """Gives every request an id: in the X-Request-ID header, error bodies, log lines and the call log."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = uuid.uuid4().hex
        token = set_request_id(request.request_id)
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request.request_id
            return response
        finally:
            reset_request_id(token)


class RequestIdLogFilter(logging.Filter):
    def filter(self, record):
        request_id = current_request_id()
        if request_id == "-":
            # Django writes its per-request lines ("Not Found: /x", "Internal Server Error: /")
            # after the middleware has returned, passing the request along instead.
            request_id = getattr(getattr(record, "request", None), "request_id", "-")
        record.request_id = request_id
        return True


class JsonErrorMiddleware:
    """Turns Django's own HTML refusals (bad host, unknown route, crash) into the proxy's JSON error shape."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if _is_api_path(request) and response.status_code >= 400 and not isinstance(response, JsonResponse):
            content_type = response.get("Content-Type", "")
            if not content_type.startswith("application/json"):
                return _replacement(response)
        return response

    def process_exception(self, request, exception):
        if not _is_api_path(request):
            return None
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "The proxy failed to handle this request; it has been logged.")


class NoCookiesMiddleware:
    """API answers set no cookies: the SDK needs none, and Django's CSRF middleware replaces a
    `csrftoken` cookie it cannot parse on any request, which on a same-origin deployment would
    overwrite the host app's own cookie of that name."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if _is_api_path(request):
            response.cookies.clear()
        return response


def _is_api_path(request) -> bool:
    return not request.path.startswith(HTML_PATH_PREFIXES)


_MESSAGES = {
    400: ("bad_request", "The request was refused before it reached the proxy (for example an unknown Host header)."),
    403: ("forbidden", "The request was refused."),
    404: ("not_found", "There is nothing at this URL. Calls start with POST /call/web."),
    405: ("method_not_allowed", "This method is not allowed here."),
    413: ("body_too_large", "The request body is too large."),
    500: ("internal_error", "The proxy failed to handle this request; it has been logged."),
}


def _replacement(response):
    status = response.status_code
    code, message = _MESSAGES.get(status, ("error", "The request failed."))
    replacement = error_response(status, code, message)
    for header in ("Allow", "Retry-After"):
        if header in response:
            replacement[header] = response[header]
    return replacement
