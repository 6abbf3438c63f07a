"""milo-kernel ``redis`` plugin: the shared Redis connection, or an embedded private redis-server."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from kernel import redact_url

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


if not TYPE_CHECKING:  # type checkers see the imports above; __getattr__ would hide misspelt names

    def __getattr__(name: str) -> object:
        """Import the submodule behind a public name on first access (importing the package stays light)."""
        try:
            module = _EXPORTS[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    """The module's names, the not yet imported public ones included."""
    return sorted({*globals(), *__all__})
