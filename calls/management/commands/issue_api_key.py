from django.core.management.base import BaseCommand, CommandError

from assistants.models import AssistantType
from calls.api_keys import issue_api_key


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


class Command(BaseCommand):
    help = (
        "Issues a server API key for POST /call and prints it once (stdout: the key alone). "
        "Only its prefix and hash are stored."
    )
    # The deployment's warnings (in the shell's environment, perhaps not the server's) would bury the key.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="Who or what uses the key, for staff.")
        parser.add_argument("--types", required=True, help="Assistant types it may call for, comma-separated.")
        parser.add_argument(
            "--phone-number-ids", default="", help="Vapi phone number ids it may call from, comma-separated."
        )
        parser.add_argument("--calls-per-minute", type=int, default=None)
        parser.add_argument("--calls-per-day", type=int, default=None)
        parser.add_argument("--max-concurrent-calls", type=int, default=None)

    def handle(self, *args, name, types, phone_number_ids, **options):
        if not name.strip():
            raise CommandError("--name is empty.")
        slugs = _names(types)
        found = list(AssistantType.objects.filter(slug__in=slugs))
        unknown = sorted(set(slugs) - {kind.slug for kind in found})
        if unknown:
            raise CommandError(f"No assistant type {', '.join(unknown)}; create it in the admin first.")
        if not slugs:
            raise CommandError("--types names no assistant type.")
        limits = {key: options[key] for key in ("calls_per_minute", "calls_per_day", "max_concurrent_calls")}
        if any(value is not None and value < 0 for value in limits.values()):
            raise CommandError("Limits must be 0 or more.")
        api_key, full_key = issue_api_key(
            name=name.strip(), assistant_types=found, phone_number_ids=_names(phone_number_ids), **limits
        )
        self.stderr.write(
            f"Issued API key {api_key.name!r} (prefix {api_key.prefix}). Copy it now: only its hash is "
            "stored, so it cannot be shown again. Revoke it in the admin (Server API keys)."
        )
        self.stdout.write(full_key)
