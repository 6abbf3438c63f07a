"""milo-kernel ``redis`` plugin: the shared Redis connection, or an embedded private redis-server."""

from kernel import redact_url

from ._config import EmbeddedConfig, RedisConfig, check_url
from ._connection import RedisConnection
from ._plugin import RedisPlugin
from ._server import RedisServer, RedisServerError, find_redis_server, free_port

__all__ = [
    "EmbeddedConfig",
    "RedisConfig",
    "RedisConnection",
    "RedisPlugin",
    "RedisServer",
    "RedisServerError",
    "check_url",
    "find_redis_server",
    "free_port",
    "redact_url",
]
