"""A plain-HTTP transport for the OTLP/HTTP span exporter: one persistent ``http.client`` connection.

The exporter's default transport is a ``requests`` session: about 2M instructions per export
request (a 512-span batch), most of it the session's own machinery (adapters, cookie jar,
environment merging, urllib3's pool). To a plain ``http://`` endpoint -- a collector on the same
host or network, the usual case -- :class:`PlainHTTPTransport` sends the same POST on one kept-alive
connection for a fraction of that. The retries, backoff, deadline, headers and compression stay
the exporter's (``_OTLPHTTPClient``, above the transport); the transport only sends, as the SDK's
transports do, and reports connection-level failures so that the client retries them.

:func:`plain_http_applies` decides when it may replace the default transport without changing
what is sent: an ``http://`` endpoint without user info, no proxy from the environment for it, no
``.netrc`` entry (which ``requests`` would turn into an ``Authorization`` header), no session or
credential provider of the caller's.
"""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport

_CREDENTIALS = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
)
_CONNECTION_ERRORS = (OSError, http.client.HTTPException)
"""What ``requests`` reports as a connection error or timeout (the client retries them)."""


def plain_http_applies(endpoint: str) -> bool:
    """Whether :class:`PlainHTTPTransport` sends to ``endpoint`` what a default ``requests`` session would."""
    parts = urlsplit(endpoint)
    if parts.scheme != "http" or not parts.hostname or parts.username is not None:
        return False
    if any(os.environ.get(name) for name in _CREDENTIALS):
        return False
    import requests.utils  # the exporter's own dependency: its rules for proxies and .netrc

    utils = requests.utils
    return not utils.get_environ_proxies(endpoint) and utils.get_netrc_auth(endpoint) is None


def _joined(message: http.client.HTTPMessage) -> Mapping[str, str]:
    """Response headers, case-insensitive, repeated ones joined with ``", "`` (as ``requests`` does)."""
    from requests.structures import CaseInsensitiveDict

    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    for name, value in message.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


@dataclass(frozen=True, slots=True)
class PlainHTTPResult(BaseHTTPResult):
    """A response (status, reason, body, headers) or the error that prevented one."""

    body: bytes = field(default=b"", compare=False)
    response_headers: Mapping[str, str] = field(default_factory=dict, compare=False)

    def content(self) -> bytes:
        """The response body."""
        return self.body

    def headers(self) -> Mapping[str, str]:
        """The response headers (case-insensitive keys)."""
        return self.response_headers


class PlainHTTPTransport(BaseHTTPTransport):
    """Sends each request on one persistent ``http.client`` connection to an ``http://`` URL.

    A connection that failed, that the server said it would close, or that a forked child
    inherited is dropped and the next request opens a new one. ``timeout`` applies to the connect
    and to each socket operation, as in ``requests``. Calls are serialised by a lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._where: tuple[str, int | None, int] = ("", None, 0)  # host, port, pid of the connection
        self._paths: dict[str, tuple[str, int | None, str]] = {}

    def _target(self, url: str) -> tuple[str, int | None, str]:
        """``url``'s host, port and path with query (remembered: the exporter posts to one URL)."""
        found = self._paths.get(url)
        if found is None:
            parts = urlsplit(url)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            found = self._paths[url] = (parts.hostname or "", parts.port, path)
        return found

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        data: bytes | None = None,
    ) -> BaseHTTPResult:
        """Send one request; a result with the response, or with the error that prevented it."""
        host, port, path = self._target(url)
        with self._lock:
            try:
                conn = self._connection(host, port, timeout)
                conn.request(method, path, body=data, headers=headers or {})
                response = conn.getresponse()
                body = response.read()
            except Exception as error:
                self._drop()
                return PlainHTTPResult(error=error)
            if response.will_close:
                self._drop()
        return PlainHTTPResult(
            status_code=response.status,
            reason=response.reason,
            body=body,
            response_headers=_joined(response.headers),
        )

    def _connection(self, host: str, port: int | None, timeout: float | None) -> http.client.HTTPConnection:
        """The open connection to ``host:port`` made in this process, else a new one."""
        conn = self._conn
        if conn is None or self._where != (host, port, os.getpid()):
            self._drop()
            conn = self._conn = http.client.HTTPConnection(host, port, timeout=timeout)
            self._where = (host, port, os.getpid())
        elif conn.sock is not None:
            conn.sock.settimeout(timeout)
        else:
            conn.timeout = timeout
        return conn

    def _drop(self) -> None:
        """Close the connection (a forked child's copy too: its socket is the child's own descriptor)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def is_connection_error(self, exception: Exception | None) -> bool:
        """Whether ``exception`` is a connection-level failure (refused, reset, closed, timed out)."""
        return isinstance(exception, _CONNECTION_ERRORS)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._drop()


def use_plain_http(client: Any, endpoint: str, options: Mapping[str, Any]) -> bool:
    """Give the exporter's HTTP ``client`` a :class:`PlainHTTPTransport` when it sends the same; True if so.

    Only in place of the default ``requests`` transport (no ``session``/``_transport`` option).
    """
    from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport

    transport = getattr(client, "_transport", None)
    if (
        type(transport) is not RequestsHTTPTransport
        or "session" in options
        or "_transport" in options
        or not plain_http_applies(endpoint)
    ):
        return False
    client._transport = PlainHTTPTransport()
    transport.close()
    return True
