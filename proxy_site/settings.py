"""All settings come from the environment (or a local `.env` file); `.env.example` lists them."""

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
    "corsheaders",
    "assistants",
    "calls",
]

MIDDLEWARE = [
    "calls.middleware.RequestIdMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "calls.middleware.JsonErrorMiddleware",
    "calls.middleware.NoCookiesMiddleware",
    "django.middleware.security.SecurityMiddleware",
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
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several threads (runserver, live-server tests) write the call log at once.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("timeout", 20)
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

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# The call routes read bodies themselves and apply their own, smaller limit.
CALL_MAX_BODY_BYTES = env.int("CALL_MAX_BODY_BYTES", default=64 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=20 * 1024 * 1024)

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
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
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
