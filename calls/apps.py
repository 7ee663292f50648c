import logging

from django.apps import AppConfig
from django.conf import settings
from django.core import checks

logger = logging.getLogger("calls")


class CallsConfig(AppConfig):
    name = "calls"
    verbose_name = "Calls"

    def ready(self):
        checks.register(check_vapi_settings)


def warn_if_unconfigured():
    """Called once when a server process loads the application (see proxy_site/wsgi.py)."""
    if not settings.VAPI_API_KEY:
        logger.warning("VAPI_API_KEY is not set: the proxy runs, but every call start answers 503.")
    if not settings.DEBUG and not _static_files_collected():
        logger.error(
            "Static files are not collected in %s: the admin and /api/docs/ fail until "
            "`manage.py collectstatic --noinput` runs (the API routes work).",
            settings.STATIC_ROOT,
        )


def _static_files_collected() -> bool:
    from django.contrib.staticfiles.storage import staticfiles_storage

    manifest = getattr(staticfiles_storage, "manifest_name", None)
    return manifest is None or staticfiles_storage.exists(manifest)


def check_vapi_settings(app_configs, **kwargs):
    from calls.webhook_auth import WebhookAuthConfig

    problems = []
    if not settings.VAPI_API_KEY:
        problems.append(
            checks.Warning(
                "VAPI_API_KEY is not set: call starts will answer 503 vapi_key_missing.",
                hint="Put your Vapi private key in the environment or in .env (see .env.example).",
                id="vapi_proxy.W001",
            )
        )
    if settings.VAPI_UPSTREAM_AUTH not in ("private_key", "jwt"):
        problems.append(
            checks.Error(
                f"VAPI_UPSTREAM_AUTH is {settings.VAPI_UPSTREAM_AUTH!r}; use 'private_key' or 'jwt'.",
                id="vapi_proxy.E001",
            )
        )
    elif settings.VAPI_UPSTREAM_AUTH == "jwt" and not settings.VAPI_ORG_ID:
        problems.append(
            checks.Error(
                "VAPI_UPSTREAM_AUTH=jwt needs VAPI_ORG_ID (your organization id in the Vapi dashboard).",
                id="vapi_proxy.E002",
            )
        )
    for problem in WebhookAuthConfig.from_settings().configuration_problems():
        problems.append(
            checks.Warning(
                f"Webhooks from Vapi are refused: {problem}",
                hint="See the README section 'Vapi's server URL'.",
                id="vapi_proxy.W002",
            )
        )
    if settings.PROXY_IDENTITY not in ("jwt", "session", "open"):
        problems.append(
            checks.Error(
                f"PROXY_IDENTITY is {settings.PROXY_IDENTITY!r}; use jwt, session or open.", id="vapi_proxy.E004"
            )
        )
    elif settings.PROXY_IDENTITY == "jwt":
        if not settings.PROXY_JWT_SECRETS:
            problems.append(
                checks.Warning(
                    "PROXY_IDENTITY=jwt but PROXY_JWT_SECRETS is empty: every call start answers 401.",
                    hint="Set the secret your backend signs user tokens with.",
                    id="vapi_proxy.W003",
                )
            )
        elif any(len(secret) < 32 for secret in settings.PROXY_JWT_SECRETS):
            problems.append(
                checks.Warning(
                    "A PROXY_JWT_SECRETS secret is shorter than 32 characters; HS256 wants at least 32 bytes.",
                    id="vapi_proxy.W004",
                )
            )
    elif settings.PROXY_IDENTITY == "open" and not settings.DEBUG:
        problems.append(
            checks.Warning(
                "PROXY_IDENTITY=open in production: anyone who can reach the proxy can start calls as any user.",
                hint="Use PROXY_IDENTITY=jwt; PROXY_ALLOW_OPEN_IDENTITY=true only opts in knowingly.",
                id="vapi_proxy.W005",
            )
        )
    if "*" in settings.CORS_ALLOWED_ORIGINS:
        problems.append(
            checks.Error(
                "CORS_ALLOWED_ORIGINS may not contain '*'; list the frontend origins.",
                id="vapi_proxy.E003",
            )
        )
    return problems
