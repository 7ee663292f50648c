import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from assistants.models import Assistant, AssistantType, ClientVariable, UserMapping

DEMO_CONFIG = {
    "name": "Sales coach (demo)",
    "firstMessage": "Hi {{customerName}}! Ready to practise your pitch for {{companyName}}?",
    "model": {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "messages": [
            {
                "role": "system",
                "content": "You are a friendly sales coach for {{companyName}}. The user is {{customerName}}. "
                "Help them practise a short sales pitch about {{topic}}. Keep answers brief.",
            }
        ],
    },
    "voice": {"provider": "vapi", "voiceId": "Elliot"},
}


DEMO_TYPE = "sales-coach"
DEMO_ASSISTANT = "Sales coach (demo)"
DEMO_USER = "customer123"


class Command(BaseCommand):
    requires_system_checks = []  # runserver runs them next; once is enough
    help = (
        "Creates the demo assistant type 'sales-coach' and its mapping for customer123 in a database with no "
        "assistant types yet, and a local admin login if there is no superuser."
    )

    def handle(self, *args, **options):
        with transaction.atomic():
            self._ensure_demo()
            self._ensure_admin()
        if not settings.VAPI_API_KEY:
            self.stdout.write(
                self.style.WARNING(
                    "VAPI_API_KEY is not set: the proxy will run, but call starts answer 503 "
                    "until you put your Vapi private key in .env (see .env.example)."
                )
            )

    def _ensure_demo(self):
        # bin/run calls this at every start: only an empty database gets the demo, so whatever staff
        # changed or deleted stays that way.
        if AssistantType.objects.exists():
            self.stdout.write("Demo data: not added, the database already has assistant types.")
            return
        assistant, created = Assistant.objects.get_or_create(
            name=DEMO_ASSISTANT,
            defaults={
                "kind": Assistant.Kind.TRANSIENT,
                "config": DEMO_CONFIG,
                "default_variables": {"companyName": "Acme", "customerName": "there", "topic": "our product"},
                "notes": "Created by `manage.py setup_demo`. Edit or delete freely.",
            },
        )
        if created:
            ClientVariable.objects.create(assistant=assistant, name="topic", max_length=100)
        kind = AssistantType.objects.create(
            slug=DEMO_TYPE,
            description="Demo: practise a sales pitch",
            default_assistant=assistant,
            mapped_users_only=True,
        )
        UserMapping.objects.create(
            user_id=DEMO_USER,
            assistant_type=kind,
            assistant=assistant,
            variable_values={"customerName": "Ana"},
        )
        self.stdout.write(f"Demo data: assistant type '{DEMO_TYPE}' with a mapping for userId '{DEMO_USER}'.")

    def _ensure_admin(self):
        User = get_user_model()
        superuser = User.objects.filter(is_superuser=True).order_by("pk").first()
        if superuser is not None:
            name = superuser.get_username()
            self.stdout.write(
                f"Admin login: use your superuser '{name}' (reset its password with "
                f"`.venv/bin/python manage.py changepassword {name}`)."
            )
            return
        if User.objects.filter(**{User.USERNAME_FIELD: "admin"}).exists():
            self.stdout.write(
                "Admin login: user 'admin' exists but is not a superuser; create one with "
                "`.venv/bin/python manage.py createsuperuser`."
            )
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(f"Admin login created: user 'admin', password '{password}' (shown only this once).")
        )
