from datetime import datetime, timedelta, timezone

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from calls.bodies import USER_ID_MAX_LENGTH
from calls.identity import mint_user_token


class Command(BaseCommand):
    help = (
        "FOR LOCAL TESTING ONLY: prints a user token for PROXY_IDENTITY=jwt, signed with the first of "
        "PROXY_JWT_SECRETS, to pass as new Vapi(token, proxyUrl). In production your own backend mints "
        "these tokens for its logged-in users (README: 'Identity')."
    )
    requires_system_checks = []  # stdout is the token alone, for TOKEN=$(manage.py mint_token ...)

    def add_arguments(self, parser):
        parser.add_argument("user_id", metavar="USER_ID", help="the userId the token speaks for (its sub claim)")
        parser.add_argument(
            "--types",
            metavar="TYPE[,TYPE...]",
            help="comma-separated assistant types the token allows (its assistantTypes claim); default: any",
        )
        parser.add_argument(
            "--ttl-minutes", type=int, default=60, metavar="MINUTES", help="how long the token is valid (default 60)"
        )
        parser.add_argument(
            "--expired",
            action="store_true",
            help="a token that expired an hour ago (issued two hours ago, valid for 60 minutes), to see token_expired",
        )

    def handle(self, *args, user_id, types, ttl_minutes, expired, **options):
        if not settings.PROXY_JWT_SECRETS:
            raise CommandError(
                "PROXY_JWT_SECRETS is not set: put a secret of 32 or more characters in it (in .env), "
                "the same one your backend will sign tokens with, and run this again."
            )
        user_id = user_id.strip()
        if not user_id or len(user_id) > USER_ID_MAX_LENGTH:
            raise CommandError(f"USER_ID must be 1 to {USER_ID_MAX_LENGTH} characters.")
        if ttl_minutes < 1:
            raise CommandError("--ttl-minutes must be at least 1.")
        names = None
        if types is not None:
            names = [name.strip() for name in types.split(",") if name.strip()]
            if not names:
                raise CommandError("--types names no assistant type; leave it out to allow any type.")
        if len(settings.PROXY_JWT_SECRETS[0]) < 32:
            self.stderr.write("Note: the secret is shorter than 32 characters; use a longer one outside local tests.")
        if settings.PROXY_IDENTITY != "jwt":
            self.stderr.write(
                f"Note: PROXY_IDENTITY is {settings.PROXY_IDENTITY!r}, so the proxy does not read tokens; "
                "set PROXY_IDENTITY=jwt to use this one."
            )
        if expired:
            ttl_minutes, issued_at = 60, datetime.now(tz=timezone.utc) - timedelta(hours=2)
        else:
            issued_at = None
        self.stdout.write(mint_user_token(user_id, ttl_minutes=ttl_minutes, types=names, issued_at=issued_at))
