"""Proving a server-URL request came from Vapi, by the credential kind the operator configured.

Kinds (setting `VAPI_WEBHOOK_AUTH`):
- `secret`: the legacy raw secret in `X-Vapi-Secret`;
- `bearer`: a token in a header (`Authorization: Bearer <token>` unless configured otherwise);
- `hmac`: a signature over `{timestamp}.{body}` (configurable) of the raw request bytes, with a
  timestamp that must be recent.

Several secrets may be configured at once so they can be rotated. Every comparison is
constant-time, and an empty presented value never matches anything.
"""

import base64
import hmac
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.utils.datastructures import CaseInsensitiveMapping

KINDS = ("secret", "bearer", "hmac")
_PLACEHOLDER = re.compile(r"\{(body|timestamp|method|url)\}")
_TIMESTAMP = re.compile(r"\d{1,16}(\.\d{1,9})?")


class WebhookAuthError(Exception):
    """The request is not provably from Vapi. The message is safe to log and to answer with."""


@dataclass(frozen=True)
class WebhookAuthConfig:
    kind: str
    secrets: tuple[str, ...]
    bearer_header: str = "Authorization"
    bearer_prefix: str = "Bearer "
    algorithm: str = "sha256"
    signature_header: str = "x-signature"
    timestamp_header: str = "x-timestamp"
    signed_payload: str = "{timestamp}.{body}"
    encoding: str = "hex"
    signature_prefix: str = ""
    tolerance_seconds: int = 300

    @classmethod
    def from_settings(cls) -> "WebhookAuthConfig":
        return cls(
            kind=settings.VAPI_WEBHOOK_AUTH,
            secrets=tuple(s for s in settings.VAPI_WEBHOOK_SECRETS if s.strip()),
            bearer_header=settings.VAPI_WEBHOOK_BEARER_HEADER,
            bearer_prefix=settings.VAPI_WEBHOOK_BEARER_PREFIX,
            algorithm=settings.VAPI_WEBHOOK_HMAC_ALGORITHM,
            signature_header=settings.VAPI_WEBHOOK_SIGNATURE_HEADER,
            timestamp_header=settings.VAPI_WEBHOOK_TIMESTAMP_HEADER,
            signed_payload=settings.VAPI_WEBHOOK_SIGNED_PAYLOAD,
            encoding=settings.VAPI_WEBHOOK_SIGNATURE_ENCODING,
            signature_prefix=settings.VAPI_WEBHOOK_SIGNATURE_PREFIX,
            tolerance_seconds=settings.VAPI_WEBHOOK_TOLERANCE_SECONDS,
        )

    def configuration_problems(self) -> list[str]:
        problems = []
        if self.kind not in KINDS:
            problems.append(
                f"VAPI_WEBHOOK_AUTH is {self.kind!r}; set it to one of {', '.join(KINDS)} "
                "to match the credential on your Vapi server URL."
            )
        if not self.secrets:
            problems.append("VAPI_WEBHOOK_SECRETS is empty; set the secret(s) Vapi signs or sends with.")
        if self.kind == "hmac":
            if self.algorithm not in ("sha256", "sha512", "sha1"):
                problems.append(f"VAPI_WEBHOOK_HMAC_ALGORITHM {self.algorithm!r} is not sha256, sha512 or sha1.")
            if self.encoding not in ("hex", "base64"):
                problems.append(f"VAPI_WEBHOOK_SIGNATURE_ENCODING {self.encoding!r} is not hex or base64.")
            if "{body}" not in self.signed_payload:
                problems.append("VAPI_WEBHOOK_SIGNED_PAYLOAD must contain {body}.")
        return problems


def verify_webhook(
    config: WebhookAuthConfig,
    *,
    headers,
    body: bytes,
    method: str = "POST",
    url: str = "",
    now: float | None = None,
) -> None:
    """Returns if the request carries a valid credential; raises WebhookAuthError otherwise."""
    if not isinstance(headers, CaseInsensitiveMapping):  # HTTP header names have no case
        headers = CaseInsensitiveMapping(headers)
    if config.configuration_problems():
        raise WebhookAuthError("The proxy has no usable webhook credential configured, so it refuses every message.")
    if config.kind == "secret":
        _match_any(headers.get("X-Vapi-Secret", ""), config.secrets, "X-Vapi-Secret")
    elif config.kind == "bearer":
        presented = headers.get(config.bearer_header, "")
        if config.bearer_prefix:
            if not presented.startswith(config.bearer_prefix):
                raise WebhookAuthError(f"{config.bearer_header} is missing or does not start with the expected prefix.")
            presented = presented[len(config.bearer_prefix) :]
        _match_any(presented.strip(), config.secrets, config.bearer_header)
    else:
        _verify_hmac(config, headers=headers, body=body, method=method, url=url, now=now)


def _match_any(presented: str, secrets: tuple[str, ...], header: str) -> None:
    if not presented.strip():
        raise WebhookAuthError(f"{header} is missing or empty.")
    presented_bytes = presented.encode()
    matched = False
    for secret in secrets:  # no early exit: the time taken does not tell which secret was close
        matched |= hmac.compare_digest(presented_bytes, secret.encode())
    if not matched:
        raise WebhookAuthError(f"{header} does not match the configured secret.")


def _verify_hmac(config: WebhookAuthConfig, *, headers, body: bytes, method: str, url: str, now: float | None):
    presented = headers.get(config.signature_header, "").strip()
    if config.signature_prefix:
        if not presented.startswith(config.signature_prefix):
            raise WebhookAuthError(f"{config.signature_header} is missing or lacks the {config.signature_prefix!r} prefix.")
        presented = presented[len(config.signature_prefix) :]
    if not presented:
        raise WebhookAuthError(f"{config.signature_header} is missing or empty.")

    timestamp = ""
    if "{timestamp}" in config.signed_payload:
        timestamp = headers.get(config.timestamp_header, "").strip()
        _check_fresh(timestamp, config, now)

    values = {"body": body, "timestamp": timestamp.encode(), "method": method.encode(), "url": url.encode()}
    # Built from bytes so the body is signed exactly as it arrived, whatever its encoding.
    signed = b"".join(
        values[part] if index % 2 else part.encode()
        for index, part in enumerate(_PLACEHOLDER.split(config.signed_payload))
    )
    try:
        presented_raw = _decode(presented, config.encoding)
    except ValueError:
        raise WebhookAuthError(f"{config.signature_header} is not valid {config.encoding}.") from None
    matched = False
    for secret in config.secrets:
        expected = hmac.new(secret.encode(), signed, config.algorithm).digest()
        matched |= hmac.compare_digest(presented_raw, expected)
    if not matched:
        raise WebhookAuthError(f"{config.signature_header} does not match the body.")


def _decode(signature: str, encoding: str) -> bytes:
    if encoding == "hex":
        return bytes.fromhex(signature)
    return base64.b64decode(signature, validate=True)


def _check_fresh(timestamp: str, config: WebhookAuthConfig, now: float | None) -> None:
    if not timestamp:
        raise WebhookAuthError(f"{config.timestamp_header} is missing.")
    # Digits only: float() alone would take "nan", which no window comparison ever rejects.
    if not _TIMESTAMP.fullmatch(timestamp):
        raise WebhookAuthError(f"{config.timestamp_header} is not a number.")
    seconds = float(timestamp)
    if seconds > 1e11:  # Vapi does not document the unit: milliseconds are accepted too
        seconds /= 1000
    now = time.time() if now is None else now
    if abs(now - seconds) > config.tolerance_seconds:
        raise WebhookAuthError(f"{config.timestamp_header} is outside the {config.tolerance_seconds}s window.")
