"""The ``[plugins.cache]`` table."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from kernel import Secret, redact_url

from ._keys import check_name

_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel")


def _url(_inst: Any, _attr: attrs.Attribute[Any], value: Secret | None) -> None:
    """The scheme here (the cache's own server is never ``embedded``); the rest by the redis plugin's rule."""
    # Messages show the URL only redacted: never a password, whatever the value looks like.
    if value is None:
        return
    url = value.get_secret_value()
    if url == "embedded":
        raise ValueError(
            "'url' must be a Redis server's URL: 'embedded' is the redis plugin's own server only "
            "(leave the cache's url unset to use it)"
        )
    if not url.startswith(tuple(f"{s}://" for s in _SCHEMES)):
        raise ValueError(
            "'url' must start with redis://, rediss://, unix://, redis+cluster:// or redis+sentinel:// "
            f"(rediss+ for TLS), got {redact_url(url)!r}"
        )
    # One rule for every Redis URL of the kernel: encoding, ports, a cluster's database 0, ...
    from kernel_redis import check_url

    check_url(url)


def _name(_inst: Any, attr: attrs.Attribute[Any], value: str) -> None:
    try:
        check_name(attr.name, value)
    except ValueError as exc:
        raise ValueError(f"'{attr.name}' must be {str(exc).split(' must be ', 1)[1]}") from None


@attrs.define(frozen=True)
class CacheConfig:
    """``[plugins.cache]``."""

    backend: Literal["memory", "redis"] = "memory"
    """``memory``: in-process; ``redis``: shared, through the ``redis`` plugin, or ``url`` when set."""
    url: Secret | None = attrs.field(default=None, validator=_url)
    """Redis backend on its own server (``redis://``, ``rediss://``, ``unix://``, a cluster's
    ``redis+cluster://`` or a Sentinel group's ``redis+sentinel://``) instead of the ``redis``
    plugin's -- e.g. an ``allkeys-lru`` instance apart from the ``noeviction`` one that holds events
    and jobs. Unset: the ``redis`` plugin's server."""
    max_connections: int = attrs.field(default=50, validator=attrs.validators.gt(0))
    """Redis backend: connections in the cache's own pool (a cluster: per node)."""
    namespace: str = attrs.field(default="default", validator=_name)
    """Namespace of the registered ``CacheManager``; ``manager.namespace("user")`` makes others."""
    key_prefix: str = attrs.field(default="cache", validator=_name)
    """Starts every Redis key's hash tag: ``{<key_prefix>:<namespace>}:<key>``."""
    default_ttl: float = attrs.field(default=3600, validator=attrs.validators.gt(0))
    """Seconds an entry lives when ``set``/``get_or_set`` get no ``ttl``."""
    jitter: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0), attrs.validators.lt(1)])
    """Shorten each TTL by a random fraction up to this (0.1: 90-100 % of the TTL): no synchronised expiry."""
    max_entries: int = attrs.field(default=10_000, validator=attrs.validators.gt(0))
    """Memory backend: entries kept before the least recently used is evicted (all namespaces)."""
    timeout: float = attrs.field(default=0.5, validator=attrs.validators.gt(0))
    """Redis backend: seconds a cache command (read or write) may take before it counts as an outage."""
    fail_open: bool = True
    """Outage: reads miss, writes are skipped, ``get_or_set`` returns the factory's value. False: raise."""
    outage_backoff: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    """After an outage error, skip Redis for this many seconds (fail fast instead of waiting on timeouts)."""
    log_interval: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    """At most one outage log line per this many seconds (with the count of suppressed errors)."""
    lock: bool = False
    """``get_or_set`` also takes a Redis lock so one process in the fleet computes a missing value."""
    lock_ttl: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    """Seconds the lock lives: longer than the slowest factory, short enough to recover from a crash."""
    lock_wait: float = attrs.field(default=10.0, validator=attrs.validators.ge(0))
    """Seconds a process waits for another's value before computing it itself."""

    def __attrs_post_init__(self) -> None:
        if self.url is not None and self.backend != "redis":
            raise ValueError("'url' needs backend = 'redis' (the memory backend has no server)")
