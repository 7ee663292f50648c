from django.conf import settings
from django.core.management.base import BaseCommand

from calls.services import settle_interrupted_calls
from calls.webhooks import complete_stale_calls


class Command(BaseCommand):
    help = (
        "Completes calls that Vapi never reported as ended (a missed webhook) from Vapi's GET /call/{id}, "
        "and settles rows left pending by a process that stopped. Safe to run from cron."
    )
    # Run from cron, which mails every line printed: the system checks belong to deploys and start-up.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than-minutes",
            type=int,
            default=settings.STALE_CALL_MINUTES,
            help="Only calls created at least this long ago (default: STALE_CALL_MINUTES, %(default)s).",
        )
        parser.add_argument("--limit", type=int, default=500, help="At most this many calls per run.")

    def handle(self, *args, older_than_minutes, limit, **options):
        interrupted = settle_interrupted_calls()
        if interrupted:
            self.stdout.write(
                f"Settled {interrupted} calls left pending by a process that stopped before Vapi answered."
            )
        counts = complete_stale_calls(older_than_minutes=older_than_minutes, limit=limit)
        self.stdout.write(
            f"Checked {counts['checked']} calls with Vapi: {counts['ended']} ended, "
            f"{counts['still_active']} still active, {counts['failed']} could not be checked."
        )
