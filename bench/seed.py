"""Seeds the bench database: one assistant type open to unmapped users, with a transient assistant.

Run by bench/run.py with the bench's environment (DATABASE_URL pointing at the fresh bench
database): `.venv/bin/python bench/seed.py bench-coach`.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proxy_site.settings")

import django  # noqa: E402

django.setup()

from assistants.models import Assistant, AssistantType  # noqa: E402

slug = sys.argv[1] if len(sys.argv) > 1 else "bench-coach"
assistant = Assistant.objects.create(
    name=f"Bench assistant ({slug})",
    kind=Assistant.Kind.TRANSIENT,
    config={
        "firstMessage": "Hi {{customerName}}!",
        "model": {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "messages": [{"role": "system", "content": "You coach sales for {{companyName}}."}],
        },
        "voice": {"provider": "vapi", "voiceId": "Elliot"},
    },
    default_variables={"companyName": "Acme", "customerName": "there"},
)
AssistantType.objects.create(slug=slug, default_assistant=assistant, mapped_users_only=False)
print(f"seeded assistant type {slug!r} (open to unmapped users, transient assistant)")
