"""Who is starting the call, by the mode the operator chose (`PROXY_IDENTITY`).

- `jwt`: the SDK's token (`new Vapi(token, proxyUrl)` sends `Authorization: Bearer <token>`) is
  an HS256 JWT minted by the customer's backend: `sub` is the userId, `exp` is required, and an
  optional `assistantTypes` claim lists the types the user may start.
- `session`: same-origin deployments; the userId is the logged-in Django user. The SDK sends no
  CSRF token, so a same-origin `Origin` header (and the JSON content type the body check
  requires) stands in for it.
- `open`: the userId in the body is trusted. For local development; with DEBUG off only by
  explicit opt-in.

The token is never logged, stored or forwarded.
"""

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jwt
from django.conf import settings
from django.contrib import auth

from calls.bodies import CONTROL_CHARACTERS, USER_ID_MAX_LENGTH
from calls.errors import ProxyError

MODES = ("jwt", "session", "open")
TYPES_CLAIM = "assistantTypes"


@dataclass(frozen=True)
class Identity:
    user_id: str | None  # None: the body says who (open mode)
    allowed_types: frozenset[str] | None = None  # None: any type the user is mapped to


def mint_user_token(
    user_id: str, *, ttl_minutes: int, types: list[str] | None = None, issued_at: datetime | None = None
) -> str:
    """A token for jwt mode signed with the first of PROXY_JWT_SECRETS, as a customer's backend
    mints them. For local testing only (manage.py mint_token, the /demo/ page)."""
    now = issued_at or datetime.now(tz=timezone.utc)
    claims = {"sub": user_id, "iat": now, "exp": now + timedelta(minutes=ttl_minutes)}
    if types is not None:
        claims[TYPES_CLAIM] = types
    if settings.PROXY_JWT_AUDIENCE:
        claims["aud"] = settings.PROXY_JWT_AUDIENCE
    if settings.PROXY_JWT_ISSUER:
        claims["iss"] = settings.PROXY_JWT_ISSUER
    return jwt.encode(claims, settings.PROXY_JWT_SECRETS[0], algorithm="HS256")


def identify(request) -> Identity:
    mode = settings.PROXY_IDENTITY
    if mode == "open":
        return Identity(user_id=None)
    if mode == "session":
        return _from_session(request)
    return _from_jwt(request.META.get("HTTP_AUTHORIZATION", ""))


def _from_jwt(header: str) -> Identity:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not header:
        raise ProxyError(
            401,
            "token_missing",
            "No token: create the SDK with new Vapi(token, proxyUrl), using a token your backend minted.",
        )
    if scheme.lower() != "bearer" or not token:
        raise ProxyError(401, "token_invalid", "The Authorization header must be 'Bearer <token>'.")
    claims = None
    expired = False
    for secret in settings.PROXY_JWT_SECRETS:
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                audience=settings.PROXY_JWT_AUDIENCE or None,
                issuer=settings.PROXY_JWT_ISSUER or None,
                leeway=settings.PROXY_JWT_LEEWAY_SECONDS,
                options={"require": ["exp", "sub"], "verify_aud": bool(settings.PROXY_JWT_AUDIENCE)},
            )
            break
        except jwt.ExpiredSignatureError:
            expired = True  # signed with this secret, but too old: no other secret will do better
            break
        except jwt.InvalidSignatureError:
            continue  # maybe the next secret (rotation)
        except jwt.PyJWTError as err:
            raise ProxyError(401, "token_invalid", f"The token is not valid: {_reason(err)}.") from None
    if expired:
        raise ProxyError(401, "token_expired", "The token has expired; get a new one from your backend.")
    if claims is None:
        raise ProxyError(
            401,
            "token_invalid",
            "The token's signature does not match.",
            detail="" if settings.PROXY_JWT_SECRETS else "No token can match: PROXY_JWT_SECRETS is empty.",
        )
    user_id = claims["sub"]
    if not isinstance(user_id, str) or not user_id.strip() or CONTROL_CHARACTERS.search(user_id):
        raise ProxyError(401, "token_invalid", "The token's sub claim must be the userId, as text.")
    if len(user_id.strip()) > USER_ID_MAX_LENGTH:
        raise ProxyError(
            401, "token_invalid", f"The token's sub claim is longer than {USER_ID_MAX_LENGTH} characters."
        )
    types = claims.get(TYPES_CLAIM)
    if types is not None and not (isinstance(types, list) and all(isinstance(t, str) for t in types)):
        raise ProxyError(401, "token_invalid", f"The token's {TYPES_CLAIM} claim must be a list of type names.")
    return Identity(user_id=user_id.strip(), allowed_types=frozenset(types) if types is not None else None)


def _reason(err: Exception) -> str:
    if isinstance(err, jwt.MissingRequiredClaimError):
        return f"it has no {err.claim} claim"
    if isinstance(err, jwt.InvalidAlgorithmError):
        return "it is not signed with HS256"
    if isinstance(err, jwt.InvalidAudienceError):
        return "it is for another audience"
    if isinstance(err, jwt.InvalidIssuerError):
        return "it is from another issuer"
    if isinstance(err, jwt.ImmatureSignatureError):
        return "it is not valid yet"
    if isinstance(err, jwt.exceptions.InvalidSubjectError):
        return "its sub claim must be the userId, as text"
    return "it is malformed"


def _from_session(request) -> Identity:
    origin = request.META.get("HTTP_ORIGIN", "")
    if origin != f"{request.scheme}://{request.get_host()}":
        raise ProxyError(
            403,
            "origin_not_allowed",
            "In session mode calls must come from this site's own pages (same-origin Origin header).",
        )
    # Not `request.user`: REST framework's Request has no authenticators here, sets its user to
    # None and writes that over the Django request's user as well. The session still knows.
    user = auth.get_user(getattr(request, "_request", request))
    if not user.is_authenticated:
        raise ProxyError(401, "not_logged_in", "Log in to start a call.")
    return Identity(user_id=user.get_username())


def check_claims(identity: Identity, *, body_user_id: str | None, assistant_type: str) -> str:
    """The userId to use: the identity's, which a body userId must match."""
    if identity.user_id is None:
        if not body_user_id:
            raise ProxyError(400, "missing_field", "userId is required.")
        return body_user_id
    if body_user_id and body_user_id != identity.user_id:
        raise ProxyError(
            403,
            "user_mismatch",
            "The body's userId is not the user the token (or session) belongs to; leave userId out or send the same.",
        )
    if identity.allowed_types is not None and assistant_type not in identity.allowed_types:
        raise ProxyError(
            403,
            "assistant_type_not_allowed",
            f"This token does not allow assistant type {assistant_type!r}.",
        )
    return identity.user_id


def client_ip(request) -> str | None:
    """The caller's address: REMOTE_ADDR, or the trusted balancer's forwarded header when configured."""
    header, count = settings.TRUSTED_PROXY_HEADER, settings.TRUSTED_PROXY_COUNT
    if header and count >= 1:  # a count of 0 would pick the left-most entry, which the client wrote
        forwarded = request.headers.get(header, "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        # Each trusted proxy appends the address it saw; anything further left is the client's say-so.
        if len(hops) >= count:
            candidate = hops[-count]
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                pass
    return request.META.get("REMOTE_ADDR") or None
