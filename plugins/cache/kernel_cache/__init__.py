"""milo-kernel ``cache`` plugin: namespaced TTL cache over memory or Redis."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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
