import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

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


class Command(BaseCommand):
    requires_system_checks = []  # runserver runs them next; once is enough
    help = "Creates the demo assistant type 'sales-coach', its mapping for customer123 and a local admin login."

    def handle(self, *args, **options):
        assistant, created = Assistant.objects.get_or_create(
            name="Sales coach (demo)",
            defaults={
                "kind": Assistant.Kind.TRANSIENT,
                "config": DEMO_CONFIG,
                "default_variables": {"companyName": "Acme", "customerName": "there", "topic": "our product"},
                "notes": "Created by `manage.py setup_demo`. Edit or delete freely.",
            },
        )
        if created:
            ClientVariable.objects.create(assistant=assistant, name="topic", max_length=100)
        kind, _ = AssistantType.objects.get_or_create(
            slug="sales-coach",
            defaults={
                "description": "Demo: practise a sales pitch",
                "default_assistant": assistant,
                "mapped_users_only": True,
            },
        )
        UserMapping.objects.get_or_create(
            user_id="customer123",
            assistant_type=kind,
            defaults={"assistant": assistant, "variable_values": {"customerName": "Ana"}},
        )
        self.stdout.write("Demo data: assistant type 'sales-coach' with a mapping for userId 'customer123'.")
        self._ensure_admin()
        if not settings.VAPI_API_KEY:
            self.stdout.write(
                self.style.WARNING(
                    "VAPI_API_KEY is not set: the proxy will run, but call starts answer 503 "
                    "until you put your Vapi private key in .env (see .env.example)."
                )
            )

    def _ensure_admin(self):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write(
                "Admin login: use your existing superuser (reset a password with "
                "`.venv/bin/python manage.py changepassword admin`)."
            )
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(f"Admin login created: user 'admin', password '{password}' (shown only this once).")
        )
