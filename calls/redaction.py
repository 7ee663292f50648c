"""What staff may see of a stored Vapi message: no credentials, no live-call monitor URLs."""

REDACTED = "[redacted]"
# Names are compared without case, "_" or "-": apiKey, api_key and API-Key are one name.
_SECRET_NAMES = {"controlurl", "listenurl"}
# Vapi echoes assistant configs whose secrets have many names (serverUrlSecret, server.secret,
# transport.callToken, credentials[...]), so a name that ends like a credential is one.
_SECRET_ENDINGS = ("apikey", "authorization", "credential", "credentials", "password", "privatekey", "secret", "token")
# Header values sent to a server URL or tool server (server.headers) authenticate the sender.
_HEADER_MAPS = {"headers"}


def _normal(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def _is_secret(name) -> bool:
    if not isinstance(name, str):
        return False
    name = _normal(name)
    return name in _SECRET_NAMES or name.endswith(_SECRET_ENDINGS)


def redact(value):
    if isinstance(value, dict):
        return {key: _redact_item(key, item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def _redact_item(key, item):
    if _is_secret(key) and item not in (None, "", [], {}):
        return REDACTED
    if isinstance(key, str) and _normal(key) in _HEADER_MAPS and isinstance(item, dict):
        return {name: REDACTED if value not in (None, "") else value for name, value in item.items()}
    return redact(item)
