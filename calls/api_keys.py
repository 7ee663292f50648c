"""Server API keys for POST /call: issued once, stored as a prefix plus a SHA-256 digest.

A key reads `vp_<prefix>_<secret>`. The prefix finds the row; the digest of the whole key proves
it. Neither the key nor its secret part is stored, logged or shown after it was issued.
"""

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from calls.errors import ProxyError
from calls.models import ApiKey

SCHEME = "vp"
PREFIX_BYTES = 6  # 12 hex characters
SECRET_BYTES = 32
# last_used_at is for staff ("is this key still in use?"): one write a minute per key is plenty.
LAST_USED_RESOLUTION = timedelta(minutes=1)

_WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="vapi-proxy"'}
# Compared against when the prefix is unknown, so a wrong prefix costs the same as a wrong secret.
_NO_DIGEST = "0" * 64


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key_for(api_key: ApiKey) -> str:
    """Gives an unsaved ApiKey a fresh prefix and digest; returns the full key (its only appearance)."""
    api_key.prefix = secrets.token_hex(PREFIX_BYTES)
    full_key = f"{SCHEME}_{api_key.prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    api_key.digest = digest_of(full_key)
    return full_key


def save_new_key(api_key: ApiKey, *, save=None) -> str:
    """Saves an ApiKey with a fresh key (drawing a new prefix on the rare collision); returns the key."""
    save = save or api_key.save
    for _ in range(5):
        full_key = new_key_for(api_key)
        try:
            with transaction.atomic():
                save()
            return full_key
        except IntegrityError:
            if not ApiKey.objects.filter(prefix=api_key.prefix).exists():
                raise
    raise RuntimeError("Could not draw an unused API key prefix.")


def issue_api_key(
    *,
    name: str,
    assistant_types: Iterable = (),
    phone_number_ids: Iterable[str] = (),
    calls_per_minute: int | None = None,
    calls_per_day: int | None = None,
    max_concurrent_calls: int | None = None,
) -> tuple[ApiKey, str]:
    """Creates a key; returns the row and the full key, which is never available again."""
    api_key = ApiKey(
        name=name,
        allowed_phone_number_ids=list(phone_number_ids),
        calls_per_minute=calls_per_minute,
        calls_per_day=calls_per_day,
        max_concurrent_calls=max_concurrent_calls,
    )
    full_key = save_new_key(api_key)
    api_key.allowed_types.set(list(assistant_types))
    return api_key, full_key


def is_revoked(api_key: ApiKey, *, now=None) -> bool:
    """Revoked from `revoked_at` on (a time in the future revokes the key then, for rotations)."""
    return api_key.revoked_at is not None and api_key.revoked_at <= (now or timezone.now())


def authenticate_api_key(header_value: str | None) -> ApiKey:
    """The key an `Authorization: Bearer <key>` header names; 401 when it is missing, wrong or revoked."""
    header_value = (header_value or "").strip()
    if not header_value:
        raise ProxyError(
            401,
            "api_key_missing",
            "No API key: send Authorization: Bearer <key>, with a key staff issued for your server.",
            headers=_WWW_AUTHENTICATE,
        )
    scheme, _, token = header_value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _invalid("The Authorization header must be 'Bearer <API key>'.")
    parts = token.split("_", 2)
    prefix = parts[1] if len(parts) == 3 and parts[0] == SCHEME else ""
    api_key = ApiKey.objects.filter(prefix=prefix).first() if prefix else None
    matches = hmac.compare_digest(api_key.digest if api_key else _NO_DIGEST, digest_of(token))
    if api_key is None or not matches:
        raise _invalid("The API key is not valid.")
    now = timezone.now()
    if is_revoked(api_key, now=now):
        raise _invalid("This API key has been revoked; ask staff for a new one.")
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def _invalid(message: str) -> ProxyError:
    return ProxyError(401, "api_key_invalid", message, headers=_WWW_AUTHENTICATE)
