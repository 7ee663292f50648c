import io
import json
import os
import re
import subprocess
import sys
from http import HTTPStatus

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from assistants.management.commands.setup_demo import DEMO_CONFIG
from assistants.models import Assistant, AssistantType, ClientVariable, UserMapping
from calls.models import CallLog
from tests.conftest import post_call

pytestmark = pytest.mark.django_db

PASSWORD_LINE = re.compile(r"^Admin login created: user 'admin', password '(\S+)' \(shown only this once\)\.$", re.M)
NO_KEY_WARNING = (
    "VAPI_API_KEY is not set: the proxy will run, but call starts answer 503 "
    "until you put your Vapi private key in .env (see .env.example)."
)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def setup_demo() -> str:
    out = io.StringIO()
    call_command("setup_demo", stdout=out)
    return out.getvalue()


def row_counts() -> dict:
    return {
        model.__name__: model.objects.count()
        for model in (Assistant, AssistantType, ClientVariable, UserMapping, get_user_model())
    }


def test_setup_demo_creates_the_sales_coach_type_with_a_transient_assistant_and_a_mapping():
    setup_demo()

    kind = AssistantType.objects.get()
    assistant = Assistant.objects.get()
    assert (kind.slug, kind.is_active, kind.mapped_users_only, kind.default_assistant) == (
        "sales-coach",
        True,
        True,
        assistant,
    )
    assert (assistant.name, assistant.kind, assistant.is_active, assistant.vapi_assistant_id) == (
        "Sales coach (demo)",
        "transient",
        True,
        None,
    )
    assert assistant.config == DEMO_CONFIG
    assert assistant.default_variables == {"companyName": "Acme", "customerName": "there", "topic": "our product"}
    variables = assistant.client_variables.values_list("name", "value_type", "max_length")
    assert list(variables) == [("topic", "string", 100)]
    mapping = UserMapping.objects.get()
    assert (mapping.user_id, mapping.assistant_type, mapping.assistant, mapping.variable_values) == (
        "customer123",
        kind,
        assistant,
        {"customerName": "Ana"},
    )
    assistant.full_clean()  # what staff would see when they first open it in the admin
    mapping.full_clean()


def test_setup_demo_creates_an_admin_and_prints_its_password_once():
    first = setup_demo()
    second = setup_demo()

    password = PASSWORD_LINE.search(first).group(1)
    admin = authenticate(username="admin", password=password)
    assert admin is not None
    assert (admin.is_staff, admin.is_superuser, admin.is_active) == (True, True, True)
    assert password not in second
    assert PASSWORD_LINE.search(second) is None
    assert (
        "Admin login: use your superuser 'admin' (reset its password with "
        "`.venv/bin/python manage.py changepassword admin`)." in second.splitlines()
    )
    assert get_user_model().objects.count() == 1


def test_setup_demo_prints_what_it_did():
    lines = setup_demo().splitlines()

    password = PASSWORD_LINE.search("\n".join(lines)).group(1)
    assert lines == [
        "Demo data: assistant type 'sales-coach' with a mapping for userId 'customer123'.",
        f"Admin login created: user 'admin', password '{password}' (shown only this once).",
    ]


def test_setup_demo_keeps_an_existing_superuser_and_names_it():
    get_user_model().objects.create_superuser("ops", email="ops@example.com", password="a-long-local-password")

    output = setup_demo()

    assert list(get_user_model().objects.values_list("username", flat=True)) == ["ops"]
    assert PASSWORD_LINE.search(output) is None
    assert (
        "Admin login: use your superuser 'ops' (reset its password with "
        "`.venv/bin/python manage.py changepassword ops`)." in output.splitlines()
    )


def test_setup_demo_does_not_crash_on_an_admin_user_that_is_not_a_superuser():
    get_user_model().objects.create_user("admin", password="a-long-local-password")

    output = setup_demo()

    admin = get_user_model().objects.get()
    assert (admin.username, admin.is_superuser) == ("admin", False)
    assert (
        "Admin login: user 'admin' exists but is not a superuser; create one with "
        "`.venv/bin/python manage.py createsuperuser`." in output.splitlines()
    )
    assert AssistantType.objects.filter(slug="sales-coach").exists()


def test_setup_demo_run_twice_changes_nothing():
    setup_demo()
    counts = row_counts()

    output = setup_demo()

    assert row_counts() == counts == {
        "Assistant": 1,
        "AssistantType": 1,
        "ClientVariable": 1,
        "UserMapping": 1,
        "User": 1,
    }
    assert "Demo data: not added, the database already has assistant types." in output.splitlines()


def test_setup_demo_keeps_staff_edits_to_the_demo():
    setup_demo()
    assistant = Assistant.objects.get()
    assistant.name = "Pitch trainer"
    assistant.config = {**DEMO_CONFIG, "firstMessage": "Welcome back, {{customerName}}."}
    assistant.default_variables = {"companyName": "Globex"}
    assistant.save()
    AssistantType.objects.filter(slug="sales-coach").update(mapped_users_only=False)
    UserMapping.objects.filter(user_id="customer123").update(variable_values={"customerName": "Ana B."})

    setup_demo()

    assistant = Assistant.objects.get()
    assert (assistant.name, assistant.config["firstMessage"], assistant.default_variables) == (
        "Pitch trainer",
        "Welcome back, {{customerName}}.",
        {"companyName": "Globex"},
    )
    assert AssistantType.objects.get().mapped_users_only is False
    assert UserMapping.objects.get().variable_values == {"customerName": "Ana B."}


def test_setup_demo_does_not_bring_back_demo_data_staff_deleted():
    setup_demo()
    UserMapping.objects.all().delete()
    Assistant.objects.all().delete()

    setup_demo()

    assert AssistantType.objects.get().default_assistant is None
    assert (Assistant.objects.count(), UserMapping.objects.count()) == (0, 0)


def test_setup_demo_warns_when_no_vapi_key_is_set(settings):
    settings.VAPI_API_KEY = ""

    output = setup_demo()

    assert output.splitlines()[-1] == NO_KEY_WARNING


def test_setup_demo_does_not_warn_when_a_vapi_key_is_set():
    assert NO_KEY_WARNING not in setup_demo()


def test_after_setup_demo_customer123_starts_a_call_with_the_demo_assistant(client, fake_vapi):
    setup_demo()

    response = post_call(
        client, {"assistantId": "sales-coach", "assistantOverrides": {"metadata": {"userId": "customer123"}}}
    )

    assert response.status_code == HTTPStatus.CREATED
    log = CallLog.objects.get()
    assert fake_vapi.last_json == {
        "assistant": DEMO_CONFIG,
        "assistantOverrides": {
            "variableValues": {"companyName": "Acme", "customerName": "Ana", "topic": "our product"},
            "metadata": {"userId": "customer123", "assistantType": "sales-coach", "callLogId": log.pk},
        },
    }
    assert (log.outcome, log.status_code, log.user_id, log.assistant_type, log.assistant.name) == (
        "created",
        201,
        "customer123",
        "sales-coach",
        "Sales coach (demo)",
    )


def test_after_setup_demo_customer123_may_set_the_topic(client, fake_vapi):
    setup_demo()

    response = post_call(
        client,
        {
            "assistantId": "sales-coach",
            "assistantOverrides": {"variableValues": {"topic": "pricing"}, "metadata": {"userId": "customer123"}},
        },
    )

    assert response.status_code == HTTPStatus.CREATED
    assert fake_vapi.last_json["assistantOverrides"]["variableValues"] == {
        "companyName": "Acme",
        "customerName": "Ana",
        "topic": "pricing",
    }


def test_after_setup_demo_an_unmapped_user_is_refused(client, fake_vapi):
    setup_demo()

    response = post_call(client, {"assistant": {"userId": "someone-else", "assistantType": "sales-coach"}})

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json() == {
        "statusCode": 403,
        "error": "Forbidden",
        "message": "User 'someone-else' has no assistant for 'sales-coach': ask staff to map this user "
        "(this type is for mapped users only).",
        "code": "user_not_mapped",
        "requestId": response["X-Request-ID"],
    }
    assert fake_vapi.requests == []
    log = CallLog.objects.get()
    assert (log.outcome, log.status_code, log.error_code, log.user_id, log.assistant_type, log.assistant) == (
        "rejected",
        403,
        "user_not_mapped",
        "someone-else",
        "sales-coach",
        None,
    )


# --- Settings at start-up, in a fresh interpreter --------------------------------------------------

SHOW_SETTINGS = """
import json, django
django.setup()
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "SECRET_KEY_SET": bool(settings.SECRET_KEY),
    "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
    "ENGINE": db["ENGINE"],
    "NAME": str(db["NAME"]),
}))
"""


def start_django(**variables) -> subprocess.CompletedProcess:
    """Starts Django in a new interpreter with only the DJANGO_* variables given (no .env file)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("DJANGO_")}
    env.update(DJANGO_SETTINGS_MODULE="proxy_site.settings", DJANGO_ENV_FILE="", **variables)
    return subprocess.run(
        [sys.executable, "-c", SHOW_SETTINGS],
        env=env,
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def started(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def refusal(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    return result.stderr.strip().splitlines()[-1]


MISSING_SECRET = (
    "django.core.exceptions.ImproperlyConfigured: Set the DJANGO_SECRET_KEY environment variable "
    "(it is required when DJANGO_DEBUG is off)."
)
MISSING_HOSTS = (
    "django.core.exceptions.ImproperlyConfigured: Set the DJANGO_ALLOWED_HOSTS environment variable "
    "(it is required when DJANGO_DEBUG is off)."
)


@pytest.mark.parametrize(
    "variables",
    [
        {"DJANGO_DEBUG": "false", "DJANGO_ALLOWED_HOSTS": "proxy.example.com"},
        {"DJANGO_DEBUG": "false", "DJANGO_ALLOWED_HOSTS": "proxy.example.com", "DJANGO_SECRET_KEY": "   "},
        {"DJANGO_ALLOWED_HOSTS": "proxy.example.com"},  # DJANGO_DEBUG unset means production
    ],
)
def test_without_debug_start_up_fails_without_a_secret_key(variables):
    assert refusal(start_django(**variables)) == MISSING_SECRET


@pytest.mark.parametrize("hosts", [None, ""])
def test_without_debug_start_up_fails_without_allowed_hosts(hosts):
    secret = "start-up-test-secret-4b1e"
    variables = {"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": secret}
    if hosts is not None:
        variables["DJANGO_ALLOWED_HOSTS"] = hosts

    result = start_django(**variables)

    assert refusal(result) == MISSING_HOSTS
    assert secret not in result.stderr + result.stdout


def test_without_debug_start_up_fails_when_allowed_hosts_names_no_host():
    result = start_django(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="start-up-test-secret-4b1e", DJANGO_ALLOWED_HOSTS=" , ")

    assert refusal(result) == (
        "django.core.exceptions.ImproperlyConfigured: DJANGO_ALLOWED_HOSTS names no host; "
        "list the proxy's host names, comma-separated."
    )


def test_without_debug_start_up_succeeds_with_a_secret_and_hosts():
    values = started(
        start_django(
            DJANGO_DEBUG="false",
            DJANGO_SECRET_KEY="start-up-test-secret-4b1e",
            DJANGO_ALLOWED_HOSTS="proxy.example.com, api.example.com",
        )
    )

    assert (values["DEBUG"], values["SECRET_KEY_SET"], values["ALLOWED_HOSTS"]) == (
        False,
        True,
        ["proxy.example.com", "api.example.com"],
    )


def test_with_debug_start_up_succeeds_without_a_secret_or_hosts():
    values = started(start_django(DJANGO_DEBUG="true"))

    assert (values["DEBUG"], values["SECRET_KEY_SET"], values["ALLOWED_HOSTS"]) == (
        True,
        True,
        ["localhost", "127.0.0.1", "[::1]"],
    )


@pytest.mark.parametrize("database_url", ["", None])
def test_an_empty_or_missing_database_url_falls_back_to_sqlite(monkeypatch, database_url):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    variables = {"DJANGO_DEBUG": "true"}
    if database_url is not None:
        variables["DATABASE_URL"] = database_url

    values = started(start_django(**variables))

    assert (values["ENGINE"], values["NAME"]) == (
        "django.db.backends.sqlite3",
        str(django_settings.BASE_DIR / "db.sqlite3"),
    )


def test_a_database_url_chooses_the_database():
    values = started(start_django(DJANGO_DEBUG="true", DATABASE_URL="postgres://proxy@db.internal:5432/vapi_proxy"))

    assert (values["ENGINE"], values["NAME"]) == ("django.db.backends.postgresql", "vapi_proxy")
