"""Who may use the console (loopback, bearer token, basic auth) and the CSRF tokens of its forms."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from typing import Any

import attrs

from ._config import ConsoleConfig

CSRF_COOKIE = "kernel_console_csrf"
"""Cookie holding the random nonce the form token is an HMAC of (signed double submit)."""


def header(scope: Mapping[str, Any], name: bytes) -> bytes | None:
    """The first request header ``name`` (lower case), or ``None``."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def client_host(scope: Mapping[str, Any]) -> str:
    """The peer address of the request (``"?"`` when the server gives none)."""
    client = scope.get("client")
    return str(client[0]) if client else "?"


def is_loopback(scope: Mapping[str, Any]) -> bool:
    """Whether the peer is on 127.0.0.0/8 or ::1."""
    try:
        return ipaddress.ip_address(client_host(scope)).is_loopback
    except ValueError:
        return False


@attrs.frozen
class Denied:
    """Why a request is refused: the status and the text shown."""

    status: int
    text: str
    challenge: bytes | None = None
    """``WWW-Authenticate`` value for a 401."""


class Guard:
    """Applies the config's access rules; :meth:`check` returns who the caller is, or why not."""

    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config
        self._token = config.token.get_secret_value().encode() if config.token else None
        self._user = config.username.encode() if config.username else None
        self._password = config.password.get_secret_value().encode() if config.password else None

    def check(self, scope: Mapping[str, Any]) -> str | Denied:
        """The caller's identity for the action log (``user:<name>``, ``token``, ``loopback:<ip>``)."""
        host = client_host(scope)
        if self.config.loopback_only and not is_loopback(scope):
            return Denied(403, "the console answers loopback clients only (plugins.console.loopback_only)")
        if not self.config.authenticated:
            return f"loopback:{host}" if is_loopback(scope) else f"open:{host}"
        scheme, _, credentials = (header(scope, b"authorization") or b"").partition(b" ")
        credentials = credentials.strip()
        scheme = scheme.lower()
        if scheme == b"bearer" and self._token is not None and hmac.compare_digest(credentials, self._token):
            return f"token@{host}"
        if scheme == b"basic" and self._user is not None:
            user = self._basic(credentials)
            if user is not None:
                return f"user:{user}@{host}"
        challenge = b'Basic realm="console", charset="UTF-8"' if self._user else b'Bearer realm="console"'
        return Denied(401, "authentication required", challenge)

    def _basic(self, credentials: bytes) -> str | None:
        assert self._user is not None and self._password is not None
        try:
            user, sep, password = base64.b64decode(credentials, validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return None
        # Both compared in constant time, whatever the first outcome.
        same_user = hmac.compare_digest(user, self._user)
        same_password = hmac.compare_digest(password, self._password)
        return user.decode("utf-8", "replace") if sep and same_user and same_password else None


class Csrf:
    """Signed double-submit tokens: cookie = random nonce, form field = HMAC(secret, nonce)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._key = secret or secrets.token_bytes(32)

    @staticmethod
    def new_nonce() -> str:
        """A fresh cookie value."""
        return secrets.token_urlsafe(24)

    def token(self, nonce: str) -> str:
        """The form token that goes with ``nonce``."""
        return hmac.new(self._key, b"console-csrf|" + nonce.encode(), hashlib.sha256).hexdigest()

    def valid(self, nonce: str | None, token: str | None) -> bool:
        """Whether ``token`` was made for ``nonce`` by this key."""
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.token(nonce), token)


def cookie(scope: Mapping[str, Any], name: str) -> str | None:
    """Cookie ``name`` of the request, or ``None``."""
    raw = header(scope, b"cookie")
    if raw is None:
        return None
    for part in raw.decode("latin-1").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


def same_origin(scope: Mapping[str, Any]) -> bool:
    """False when the request names an ``Origin`` other than its ``Host`` (a cross-site form post)."""
    origin = header(scope, b"origin")
    if origin is None or origin == b"null":
        return origin is None
    host = header(scope, b"host")
    _, _, rest = origin.partition(b"://")
    return host is not None and rest == host
