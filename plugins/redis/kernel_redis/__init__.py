"""milo-kernel ``redis`` plugin: the shared Redis connection, or an embedded private redis-server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports, redact_url

if TYPE_CHECKING:
    from ._config import EmbeddedConfig, RedisConfig, check_url
    from ._connection import RedisConnection
    from ._plugin import RedisPlugin
    from ._server import RedisServer, RedisServerError, find_redis_server, free_port
    from ._service import (
        ClientOptions,
        HostClient,
        RedisService,
        RedisUnavailableError,
        find_redis,
        redis_available,
        use_redis,
    )

_EXPORTS = {
    "ClientOptions": "._service",
    "EmbeddedConfig": "._config",
    "HostClient": "._service",
    "RedisConfig": "._config",
    "RedisConnection": "._connection",
    "RedisPlugin": "._plugin",
    "RedisServer": "._server",
    "RedisServerError": "._server",
    "RedisService": "._service",
    "RedisUnavailableError": "._service",
    "check_url": "._config",
    "find_redis": "._service",
    "find_redis_server": "._server",
    "free_port": "._server",
    "redis_available": "._service",
    "use_redis": "._service",
}
"""Public name -> the submodule defining it, imported on first use (PEP 562)."""

__all__ = [
    "ClientOptions",
    "EmbeddedConfig",
    "HostClient",
    "RedisConfig",
    "RedisConnection",
    "RedisPlugin",
    "RedisServer",
    "RedisServerError",
    "RedisService",
    "RedisUnavailableError",
    "check_url",
    "find_redis",
    "find_redis_server",
    "free_port",
    "redact_url",
    "redis_available",
    "use_redis",
]


if not TYPE_CHECKING:  # type checkers read the imports above; lazy loading keeps `import` light
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
