from django.conf import settings
from django.core.management.base import BaseCommand

from calls.retention import purge_expired


class Command(BaseCommand):
    help = (
        "Deletes call-log entries older than CALL_LOG_RETENTION_DAYS and stored webhook messages older "
        "than WEBHOOK_MESSAGE_RETENTION_DAYS. Safe to run from cron: it deletes in small batches."
    )
    # Run from cron, which mails every line printed: the system checks belong to deploys and start-up.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Only count what would be deleted.")

    def handle(self, *args, dry_run=False, **options):
        counts = purge_expired(dry_run=dry_run)
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(
            f"{verb} {counts['call log entries']} call log entries (kept {settings.CALL_LOG_RETENTION_DAYS} days) "
            f"and {counts['webhook messages']} webhook messages (kept {settings.WEBHOOK_MESSAGE_RETENTION_DAYS} days)."
        )
