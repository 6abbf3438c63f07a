"""The ``[plugins.repository]`` table."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import attrs

from kernel import Secret, redact_url

EMBEDDED = "embedded"
"""``uri = "embedded"``: start a private MongoDB wire-protocol server for the kernel's lifetime."""
DEFAULT_DB_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
"""Default bucket bounds (seconds) of ``db_query_duration_seconds`` (``db_buckets``)."""


def _check_uri(_inst: object, attribute: attrs.Attribute[Secret], value: Secret) -> None:
    # Messages show the URI only redacted (never a password), and anything the driver would
    # reject with a message quoting part of it is rejected here first.
    uri = value.get_secret_value()
    if uri == EMBEDDED:
        return
    shown = redact_url(uri)
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError(
            f"'uri' must start with mongodb:// or mongodb+srv://, or be \"embedded\", got {shown!r}"
        )
    userinfo, _, rest = uri.partition("://")[2].rpartition("@")
    if any(c in userinfo for c in "/?#@"):
        raise ValueError(
            "'uri' must percent-encode any '/', '?', '#' or '@' in its user name or password "
            f"(urllib.parse.quote_plus(password)), got {shown!r}"
        )
    hosts = rest.split("/", 1)[0].split("?", 1)[0]
    if hosts == "":
        raise ValueError(f"'uri' must name a host, got {shown!r}")
    for host in hosts.split(","):
        _name, colon, port = (host.rpartition("]")[2] if host.startswith("[") else host).partition(":")
        if colon and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"'uri' must give every host a port in 1..65535 (or none), got {shown!r}")


def _bucket_bounds(_inst: object, attribute: attrs.Attribute[Any], value: list[float]) -> None:
    if not value:
        raise ValueError(f"'{attribute.name}' must list at least one bucket bound")
    if any(b <= a for a, b in pairwise(value)):
        raise ValueError(f"'{attribute.name}' must be strictly increasing, got {value!r}")


def _check_database(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value or any(c in value for c in '/\\. "$\x00') or len(value) > 63:
        raise ValueError("'database' must be a MongoDB database name (1-63 chars, none of / \\ . space \" $)")


def _check_collection(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value or "$" in value or "\x00" in value or value.startswith("system."):
        raise ValueError(
            f"'{attribute.name}' must be a MongoDB collection name (no $, not system.*), got {value!r}"
        )


@attrs.define(frozen=True)
class RepositoryConfig:
    """MongoDB connection, pool and repository settings."""

    uri: Secret = attrs.field(default=Secret(EMBEDDED), validator=_check_uri)
    """``mongodb://…`` / ``mongodb+srv://…`` (credentials stay masked), or ``"embedded"``."""
    database: str = attrs.field(default="app", validator=_check_database)
    """The database the engine and every repository use."""
    min_pool_size: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    """Connections the client keeps open per server."""
    max_pool_size: int = attrs.field(default=100, validator=attrs.validators.gt(0))
    """Most connections per server; operations wait for a free one beyond that."""
    connect_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    """Seconds to open a connection."""
    server_selection_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    """Seconds to find a usable server before an operation fails (then ServiceUnavailableError)."""
    socket_timeout: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    """Seconds to wait for a reply; 0 waits forever."""
    transaction_attempts: int = attrs.field(default=3, validator=attrs.validators.gt(0))
    """Attempts of a ``with_transaction`` callback on transient transaction errors."""
    ensure_indexes: bool = True
    """Create the indexes declared by the models of ``repositories`` at boot."""
    repositories: list[str] = attrs.field(factory=list)
    """``"module:Class"`` repository classes known to the plugin (indexes, ``kernel repo migrate``)."""
    outbox_collection: str = attrs.field(default="outbox", validator=_check_collection)
    """Collection of the transactional outbox (``events=`` of repository writes)."""
    outbox_done_ttl: float = attrs.field(default=7 * 86_400.0, validator=attrs.validators.ge(1))
    """Seconds a published outbox entry is kept before its TTL index removes it."""
    check_on_start: bool = True
    """Ping the server at boot and fail the boot when it does not answer."""
    health_timeout: float = attrs.field(default=2.0, validator=attrs.validators.gt(0))
    """Seconds the health check's ``ping`` may take."""
    db_buckets: list[float] = attrs.field(factory=lambda: list(DEFAULT_DB_BUCKETS), validator=_bucket_bounds)
    """Bucket bounds (seconds) of ``db_query_duration_seconds``, recorded when ``metrics`` is enabled."""
    embedded_data_dir: Path | None = None
    """Data directory of the embedded server (default: a temporary directory removed at exit)."""
    embedded_startup_timeout: float = attrs.field(default=20.0, validator=attrs.validators.gt(0))
    """Seconds the embedded server may take to answer its first ``ping``."""

    def __attrs_post_init__(self) -> None:
        if self.min_pool_size > self.max_pool_size:
            raise ValueError(
                f"'min_pool_size' must not exceed max_pool_size ({self.min_pool_size} > {self.max_pool_size})"
            )
