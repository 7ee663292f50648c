"""All settings come from the environment (or a local `.env` file); `.env.example` lists them."""

from decimal import Decimal
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_env_file = env.str("DJANGO_ENV_FILE", default=str(BASE_DIR / ".env"))
if _env_file and Path(_env_file).is_file():
    env.read_env(_env_file)



def _secret(name: str) -> str:
    # Read as is: django-environ would treat a value starting with "$" as the name of another
    # variable, and its error message would then print part of the secret.
    return env.ENVIRON.get(name, "").strip()


def _required(name: str, *, secret: bool = False) -> str:
    value = _secret(name) if secret else env.str(name, default="").strip()
    if not value:
        raise ImproperlyConfigured(f"Set the {name} environment variable (it is required when DJANGO_DEBUG is off).")
    return value


DEBUG = env.bool("DJANGO_DEBUG", default=False)

if DEBUG:
    SECRET_KEY = _secret("DJANGO_SECRET_KEY") or "django-insecure-local-development-only"
    ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[]) or ["localhost", "127.0.0.1", "[::1]"]
else:
    # No defaults: a production start without them fails and names the variable.
    SECRET_KEY = _required("DJANGO_SECRET_KEY", secret=True)
    ALLOWED_HOSTS = [host.strip() for host in _required("DJANGO_ALLOWED_HOSTS").split(",") if host.strip()]
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS names no host; list the proxy's host names, comma-separated.")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "simple_history",
    "assistants",
    "calls",
]

MIDDLEWARE = [
    "calls.middleware.RequestIdMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "calls.middleware.JsonErrorMiddleware",
    "calls.middleware.NoCookiesMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "proxy_site.urls"
WSGI_APPLICATION = "proxy_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db_url_config(env.str("DATABASE_URL", default="") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# PostgreSQL: a connection pool per process (psycopg_pool). Requests hand their connection back
# while they wait on Vapi, so a few connections serve hundreds of calls in flight.
DATABASE_POOL_MAX_SIZE = env.int("DATABASE_POOL_MAX_SIZE", default=0)
if DATABASE_POOL_MAX_SIZE and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django must not
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, DATABASE_POOL_MAX_SIZE),
        "max_size": DATABASE_POOL_MAX_SIZE,
        "timeout": env.float("DATABASE_POOL_TIMEOUT_SECONDS", default=10.0),
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several threads (runserver, live-server tests) write the call log at once; IMMEDIATE makes
    # each transaction take the write lock up front, so admission counts stay exact.
    DATABASES["default"].setdefault("OPTIONS", {}).update(timeout=20, transaction_mode="IMMEDIATE")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# Admin messages stay server-side: one of them shows a new server API key, once.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Production HTTPS (README: "Running in production") ------------------------------------
# TLS ends at the balancer; SECURE_PROXY_SSL_HEADER (below) tells Django the request was HTTPS.
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the balancer's health check speaks plain HTTP
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Each route reads its body itself and applies its own limit; webhooks carry whole transcripts.
CALL_MAX_BODY_BYTES = env.int("CALL_MAX_BODY_BYTES", default=64 * 1024)
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=20 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(CALL_MAX_BODY_BYTES, WEBHOOK_MAX_BODY_BYTES)

# Where the call routes live besides the root: e.g. "vapi" serves /vapi/call/web too.
PROXY_PATH_PREFIX = env.str("PROXY_PATH_PREFIX", default="").strip("/")

# --- Vapi -------------------------------------------------------------------
VAPI_API_KEY = _secret("VAPI_API_KEY")
VAPI_BASE_URL = env.str("VAPI_BASE_URL", default="https://api.vapi.ai").rstrip("/")
VAPI_TIMEOUT_SECONDS = env.float("VAPI_TIMEOUT_SECONDS", default=15.0)
VAPI_CONNECT_TIMEOUT_SECONDS = env.float("VAPI_CONNECT_TIMEOUT_SECONDS", default=5.0)
VAPI_MAX_CONNECTIONS = env.int("VAPI_MAX_CONNECTIONS", default=200)
# "private_key" sends the key itself; "jwt" sends a short-lived token signed with it.
VAPI_UPSTREAM_AUTH = env.str("VAPI_UPSTREAM_AUTH", default="private_key")
VAPI_ORG_ID = env.str("VAPI_ORG_ID", default="")
VAPI_JWT_TTL_SECONDS = env.int("VAPI_JWT_TTL_SECONDS", default=300)

# --- Browser access -----------------------------------------------------------
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/(.+/)?/?call/web/?$"
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_METHODS = ["POST", "OPTIONS"]
CORS_ALLOW_HEADERS = ["authorization", "content-type", "x-request-id"]
CORS_EXPOSE_HEADERS = ["x-request-id", "retry-after"]
CORS_PREFLIGHT_MAX_AGE = 600

REST_FRAMEWORK = {
    "EXCEPTION_HANDLER": "calls.errors.drf_exception_handler",
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "calls.errors.AnswerJson",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The API contract at /api/schema/ (README: "API contract"): generated from the views' annotations
# in calls/api_schema.py, served whatever DJANGO_DEBUG says (it is public and holds no secret).
SPECTACULAR_SETTINGS = {
    "TITLE": "vapi-proxy",
    "DESCRIPTION": "Start Vapi voice-AI calls from web and mobile apps without giving them the Vapi private "
    "key. Every error is JSON: {statusCode, error, message, code, requestId}.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "PREPROCESSING_HOOKS": ["calls.api_schema.public_routes_only"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "calls.api_schema.close_shapes_and_add_security",
    ],
    # Swagger UI's files come from drf-spectacular-sidecar, served as this site's static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"OkEnum": ["ok"]},
    "TAGS": [
        {"name": "calls", "description": "Starting calls."},
        {"name": "webhooks", "description": "What Vapi sends the proxy."},
        {"name": "operations", "description": "For the load balancer."},
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "calls.middleware.RequestIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # One line per request is ours to write; httpx would add one with the upstream URL.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# --- Vapi's server URL (webhooks) ----------------------------------------------------------
# How Vapi proves a webhook is from Vapi: "secret" (X-Vapi-Secret), "bearer" or "hmac".
# Unset or without secrets, every webhook is refused (and `manage.py check` says so).
VAPI_WEBHOOK_AUTH = env.str("VAPI_WEBHOOK_AUTH", default="")
# Comma-separated; more than one while rotating.
VAPI_WEBHOOK_SECRETS = [s.strip() for s in _secret("VAPI_WEBHOOK_SECRETS").split(",") if s.strip()]
VAPI_WEBHOOK_BEARER_HEADER = env.str("VAPI_WEBHOOK_BEARER_HEADER", default="Authorization")
VAPI_WEBHOOK_BEARER_PREFIX = env.str("VAPI_WEBHOOK_BEARER_PREFIX", default="Bearer ")
VAPI_WEBHOOK_HMAC_ALGORITHM = env.str("VAPI_WEBHOOK_HMAC_ALGORITHM", default="sha256")
VAPI_WEBHOOK_SIGNATURE_HEADER = env.str("VAPI_WEBHOOK_SIGNATURE_HEADER", default="x-signature")
VAPI_WEBHOOK_TIMESTAMP_HEADER = env.str("VAPI_WEBHOOK_TIMESTAMP_HEADER", default="x-timestamp")
VAPI_WEBHOOK_SIGNED_PAYLOAD = env.str("VAPI_WEBHOOK_SIGNED_PAYLOAD", default="{timestamp}.{body}")
VAPI_WEBHOOK_SIGNATURE_ENCODING = env.str("VAPI_WEBHOOK_SIGNATURE_ENCODING", default="hex")
VAPI_WEBHOOK_SIGNATURE_PREFIX = env.str("VAPI_WEBHOOK_SIGNATURE_PREFIX", default="")
VAPI_WEBHOOK_TOLERANCE_SECONDS = env.int("VAPI_WEBHOOK_TOLERANCE_SECONDS", default=300)

# Inbound phone calls (assistant-request): what the caller hears when the proxy has no assistant.
PHONE_UNKNOWN_NUMBER_MESSAGE = env.str(
    "PHONE_UNKNOWN_NUMBER_MESSAGE", default="Sorry, this number is not in service. Goodbye."
)
PHONE_UNAVAILABLE_MESSAGE = env.str(
    "PHONE_UNAVAILABLE_MESSAGE", default="Sorry, we can't take your call right now. Please try again later."
)
# Where tool calls, transfer requests and knowledge-base requests go (an assistant may set its own).
CUSTOMER_BACKEND_URL = env.str("CUSTOMER_BACKEND_URL", default="")
CUSTOMER_BACKEND_SECRET = _secret("CUSTOMER_BACKEND_SECRET")
# Besides CUSTOMER_BACKEND_URL's own origin, the origins (https://host[:port]) of assistants' backend
# URLs that get CUSTOMER_BACKEND_SECRET; any other backend URL gets no Authorization header.
CUSTOMER_BACKEND_SECRET_ORIGINS = env.list("CUSTOMER_BACKEND_SECRET_ORIGINS", default=[])
CUSTOMER_BACKEND_TIMEOUT_SECONDS = env.float("CUSTOMER_BACKEND_TIMEOUT_SECONDS", default=10.0)

# Retention (manage.py purge_expired, from cron) and the missed-webhook sweep.
CALL_LOG_RETENTION_DAYS = env.int("CALL_LOG_RETENTION_DAYS", default=90)
WEBHOOK_MESSAGE_RETENTION_DAYS = env.int("WEBHOOK_MESSAGE_RETENTION_DAYS", default=30)
STALE_CALL_MINUTES = env.int("STALE_CALL_MINUTES", default=60)
# A call-log row still pending after this long was left by a process that stopped before Vapi
# answered (longer than any request may last: VAPI_TIMEOUT_SECONDS, GUNICORN_TIMEOUT).
PENDING_CALL_TIMEOUT_SECONDS = env.int("PENDING_CALL_TIMEOUT_SECONDS", default=300)

# --- Who may start calls (README: "Identity") ------------------------------------------------
# jwt (recommended), session (same-origin, the logged-in Django user) or open (trust the body's
# userId: local development; with DJANGO_DEBUG off only with PROXY_ALLOW_OPEN_IDENTITY=true).
PROXY_IDENTITY = env.str("PROXY_IDENTITY", default="jwt")
PROXY_ALLOW_OPEN_IDENTITY = env.bool("PROXY_ALLOW_OPEN_IDENTITY", default=False)
if PROXY_IDENTITY == "open" and not DEBUG and not PROXY_ALLOW_OPEN_IDENTITY:
    raise ImproperlyConfigured(
        "PROXY_IDENTITY=open trusts any userId a browser sends; with DJANGO_DEBUG off it needs "
        "PROXY_ALLOW_OPEN_IDENTITY=true as well. Use PROXY_IDENTITY=jwt in production."
    )
# Comma-separated HS256 secrets shared with the backend that mints tokens; several while rotating.
PROXY_JWT_SECRETS = [s.strip() for s in _secret("PROXY_JWT_SECRETS").split(",") if s.strip()]
PROXY_JWT_AUDIENCE = env.str("PROXY_JWT_AUDIENCE", default="")
PROXY_JWT_ISSUER = env.str("PROXY_JWT_ISSUER", default="")
PROXY_JWT_LEEWAY_SECONDS = env.int("PROXY_JWT_LEEWAY_SECONDS", default=30)
# Behind a load balancer: the header that carries the client's address, and how many proxies
# append to it (1: take the last address, the one the balancer saw).
TRUSTED_PROXY_HEADER = env.str("TRUSTED_PROXY_HEADER", default="")
# Behind a balancer that terminates TLS: the header it sets to say the request was HTTPS, e.g.
# X-Forwarded-Proto. Only set it when the balancer always sets (or strips) that header.
_ssl_header = env.str("SECURE_PROXY_SSL_HEADER", default="").strip()
if _ssl_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _ssl_header.upper().replace("-", "_"), "https")
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=1)
# Refused requests per client address per minute before further ones are refused unlogged.
REFUSAL_THROTTLE_PER_MINUTE = env.int("REFUSAL_THROTTLE_PER_MINUTE", default=30)


def _limit(name: str, default, cast=int):
    """A limit from the environment: empty or "none" means no limit."""
    raw = env.str(name, default="" if default is None else str(default)).strip().lower()
    return None if raw in ("", "none") else cast(raw)


# --- Limits and quotas (README: "Limits") ----------------------------------------------------
LIMIT_USER_CALLS_PER_MINUTE = _limit("LIMIT_USER_CALLS_PER_MINUTE", 5)
LIMIT_USER_CALLS_PER_DAY = _limit("LIMIT_USER_CALLS_PER_DAY", 100)
LIMIT_USER_CONCURRENT_CALLS = _limit("LIMIT_USER_CONCURRENT_CALLS", 2)
LIMIT_TYPE_CONCURRENT_CALLS = _limit("LIMIT_TYPE_CONCURRENT_CALLS", None)
# Vapi organizations have a concurrency limit of their own (10 by default): stay inside it.
LIMIT_DEPLOYMENT_CONCURRENT_CALLS = _limit("LIMIT_DEPLOYMENT_CONCURRENT_CALLS", 10)
LIMIT_USER_DAILY_SPEND = _limit("LIMIT_USER_DAILY_SPEND", None, cast=Decimal)
LIMIT_DEPLOYMENT_DAILY_SPEND = _limit("LIMIT_DEPLOYMENT_DAILY_SPEND", None, cast=Decimal)
ACTIVE_CALL_GRACE_SECONDS = env.int("ACTIVE_CALL_GRACE_SECONDS", default=120)
LIMIT_CONCURRENCY_RETRY_AFTER_SECONDS = env.int("LIMIT_CONCURRENCY_RETRY_AFTER_SECONDS", default=30)

# Shared state between processes (refusal throttle): Redis in production, e.g. redis://host:6379/0.
CACHES = {"default": env.cache_url_config(env.str("CACHE_URL", default="") or "locmemcache://")}

# POST /call (phone calls by server API keys): destination numbers must start with one of these
# E.164 prefixes (toll-fraud guard), e.g. "+1,+44". Empty: no phone call is placed.
PHONE_ALLOWED_COUNTRY_PREFIXES = env.list("PHONE_ALLOWED_COUNTRY_PREFIXES", default=[])
