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
        if not settings.VAPI_API_KEY:
            logger.warning("VAPI_API_KEY is not set: the proxy runs, but every call start answers 503.")


def check_vapi_settings(app_configs, **kwargs):
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
    if "*" in settings.CORS_ALLOWED_ORIGINS:
        problems.append(
            checks.Error(
                "CORS_ALLOWED_ORIGINS may not contain '*'; list the frontend origins.",
                id="vapi_proxy.E003",
            )
        )
    return problems
