"""milo-kernel ``cache`` plugin: namespaced TTL cache over memory or Redis."""

from ._backends import CacheBackend, MemoryBackend, RedisBackend
from ._config import CacheConfig
from ._errors import CacheError, CacheUnavailableError, NotACounterError, UncacheableValueError
from ._keys import glob, glob_escape, glob_to_regex
from ._manager import CacheManager
from ._plugin import CachePlugin
from ._serializer import JsonSerializer, Serializer
from ._stats import CacheStats

__all__ = [
    "CacheBackend",
    "CacheConfig",
    "CacheError",
    "CacheManager",
    "CachePlugin",
    "CacheStats",
    "CacheUnavailableError",
    "JsonSerializer",
    "MemoryBackend",
    "NotACounterError",
    "RedisBackend",
    "Serializer",
    "UncacheableValueError",
    "glob",
    "glob_escape",
    "glob_to_regex",
]
