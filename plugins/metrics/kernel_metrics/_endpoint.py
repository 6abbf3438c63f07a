"""``GET /health/metrics``: the scrape endpoint, optionally behind a bearer token and/or loopback only."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from kernel import Secret
from kernel.web import ASGIApp, Send, send_response

from ._collector import MetricsCollector


def _is_loopback(client: Any) -> bool:
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


def _header(scope: Any, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def _authorized(header: bytes | None, token: bytes) -> bool:
    """True when ``header`` is ``Bearer <token>``; the scheme is case-insensitive (RFC 9110 §11.1)."""
    scheme, sep, credentials = (header or b"").partition(b" ")
    # Compare the token in constant time even when the scheme is wrong.
    same = hmac.compare_digest(credentials.lstrip(b" "), token)
    return bool(sep) and scheme.lower() == b"bearer" and same


NO_STORE = ((b"cache-control", b"no-store"),)
"""Scrapes and refusals are never cached."""


async def _plain(send: Send, status: int, text: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    await send_response(send, status, text.encode(), "text/plain; charset=utf-8", (*NO_STORE, *headers))


def metrics_endpoint(
    collector: MetricsCollector, *, token: Secret | None = None, loopback_only: bool = False
) -> ASGIApp:
    """A pure ASGI app answering scrapes with Prometheus text (OpenMetrics when ``Accept`` asks)."""
    expected = token.get_secret_value().encode() if token else None

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if loopback_only and not _is_loopback(scope.get("client")):
            await _plain(send, 403, "forbidden\n")
            return
        if expected is not None and not _authorized(_header(scope, b"authorization"), expected):
            await _plain(send, 401, "unauthorized\n", ((b"www-authenticate", b'Bearer realm="metrics"'),))
            return
        accept = (_header(scope, b"accept") or b"").decode("latin-1")
        body, content_type = collector.render(accept)
        await send_response(send, 200, body, content_type, NO_STORE, head=scope.get("method") == "HEAD")

    return app
