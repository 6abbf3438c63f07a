"""milo-kernel ``redis`` plugin: the shared Redis connection, or an embedded private redis-server."""

from kernel import redact_url

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
