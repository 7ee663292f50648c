"""/demo/: a page for local development that starts a web call with the real @vapi-ai/web SDK
through this proxy and shows the SDK's events. Served only with DJANGO_DEBUG on; otherwise these
URLs answer the usual JSON 404.

The page loads frontend/dist/vapi.js (bin/frontend builds it). In jwt mode it asks /demo/token
for a token for the chosen user, signed with the proxy's own secret: local testing only.
"""

from functools import wraps

from django.conf import settings
from django.http import FileResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from assistants.models import AssistantType, UserMapping
from calls.bodies import USER_ID_MAX_LENGTH
from calls.errors import error_response
from calls.identity import mint_user_token
from calls.vapi import get_vapi_client
from calls.views import not_found

BUNDLE = settings.BASE_DIR / "frontend" / "dist" / "vapi.js"
TOKEN_TTL_MINUTES = 10


def _debug_only(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not settings.DEBUG:
            return not_found(request)
        return view(request, *args, **kwargs)

    return wrapper


@_debug_only
@require_safe
def page(request):
    mode = settings.PROXY_IDENTITY
    users = list(UserMapping.objects.order_by("user_id").values_list("user_id", flat=True).distinct()[:200])
    session_user = request.user.get_username() if mode == "session" and request.user.is_authenticated else ""
    return render(
        request,
        "calls/demo.html",
        {
            "bundle_built": BUNDLE.is_file(),
            "types": AssistantType.objects.filter(is_active=True).order_by("slug").values_list("slug", flat=True),
            "users": users,
            "default_user": session_user or (users[0] if users else "customer123"),
            "mode": mode,
            "session_user": session_user,
            "jwt_ready": bool(settings.PROXY_JWT_SECRETS),
            "key_configured": get_vapi_client().configured,
            "config": {"mode": mode},
        },
    )


@_debug_only
@require_safe
def bundle(request):
    if not BUNDLE.is_file():
        return error_response(404, "bundle_not_built", "The SDK bundle is not built: run bin/frontend.")
    return FileResponse(BUNDLE.open("rb"), content_type="text/javascript; charset=utf-8")


@_debug_only
@require_safe
def token(request):
    """GET /demo/token?userId=...: {"token": ...} for jwt mode, valid for 10 minutes."""
    user_id = request.GET.get("userId", "").strip()
    if settings.PROXY_IDENTITY != "jwt":
        return error_response(409, "not_jwt_mode", "PROXY_IDENTITY is not jwt: the proxy reads no token.")
    if not settings.PROXY_JWT_SECRETS:
        return error_response(409, "jwt_not_configured", "Set PROXY_JWT_SECRETS in .env and restart bin/run.")
    if not user_id or len(user_id) > USER_ID_MAX_LENGTH:
        return error_response(400, "invalid_field", f"userId must be 1 to {USER_ID_MAX_LENGTH} characters.")
    response = JsonResponse({"token": mint_user_token(user_id, ttl_minutes=TOKEN_TTL_MINUTES)})
    response["Cache-Control"] = "no-store"
    return response
