"""milo-kernel ``cache`` plugin: namespaced TTL cache over memory or Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports

if TYPE_CHECKING:
    from ._backends import CacheBackend, MemoryBackend, RedisBackend
    from ._config import CacheConfig
    from ._errors import CacheError, CacheUnavailableError, NotACounterError, UncacheableValueError
    from ._keys import glob, glob_escape, glob_to_regex
    from ._manager import CacheManager
    from ._plugin import CachePlugin
    from ._serializer import JsonSerializer, Serializer
    from ._stats import CacheStats

_EXPORTS = {
    "CacheBackend": "._backends",
    "CacheConfig": "._config",
    "CacheError": "._errors",
    "CacheManager": "._manager",
    "CachePlugin": "._plugin",
    "CacheStats": "._stats",
    "CacheUnavailableError": "._errors",
    "JsonSerializer": "._serializer",
    "MemoryBackend": "._backends",
    "NotACounterError": "._errors",
    "RedisBackend": "._backends",
    "Serializer": "._serializer",
    "UncacheableValueError": "._errors",
    "glob": "._keys",
    "glob_escape": "._keys",
    "glob_to_regex": "._keys",
}
"""Public name -> the submodule defining it, imported on first use (PEP 562)."""

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


if not TYPE_CHECKING:  # type checkers read the imports above; lazy loading keeps `import` light
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
