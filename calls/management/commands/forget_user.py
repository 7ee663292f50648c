from django.core.management.base import BaseCommand, CommandError

from calls.retention import forget_user


class Command(BaseCommand):
    help = "Deletes everything stored about the given userIds: call logs, transcripts, webhook messages, mappings."
    # Run from cron, which mails every line printed: the system checks belong to deploys and start-up.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("user_ids", nargs="+", metavar="USER_ID")

    def handle(self, *args, user_ids, **options):
        if not all(user_id.strip() for user_id in user_ids):
            raise CommandError("A userId is empty: that would delete every call-log row that names no user.")
        for user_id in user_ids:
            counts = forget_user(user_id)
            summary = ", ".join(f"{count} {what}" for what, count in counts.items())
            self.stdout.write(f"{user_id}: deleted {summary}.")
