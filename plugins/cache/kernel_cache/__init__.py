"""milo-kernel ``cache`` plugin: namespaced TTL cache over memory or Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports

if TYPE_CHECKING:  # what type checkers and IDEs read
    from ._backends import CacheBackend as CacheBackend
    from ._backends import MemoryBackend as MemoryBackend
    from ._backends import RedisBackend as RedisBackend
    from ._config import CacheConfig as CacheConfig
    from ._errors import CacheError as CacheError
    from ._errors import CacheUnavailableError as CacheUnavailableError
    from ._errors import NotACounterError as NotACounterError
    from ._errors import UncacheableValueError as UncacheableValueError
    from ._keys import glob as glob
    from ._keys import glob_escape as glob_escape
    from ._keys import glob_to_regex as glob_to_regex
    from ._manager import CacheManager as CacheManager
    from ._observe import CacheObserver as CacheObserver
    from ._observe import CallEnded as CallEnded
    from ._observe import ObservedBackend as ObservedBackend
    from ._plugin import CachePlugin as CachePlugin
    from ._serializer import JsonSerializer as JsonSerializer
    from ._serializer import Serializer as Serializer
    from ._stats import CacheStats as CacheStats
else:  # PEP 562: a submodule is imported on first use of one of its names
    _EXPORTS = {  # submodule -> the public names it defines
        "._backends": ["CacheBackend", "MemoryBackend", "RedisBackend"],
        "._config": ["CacheConfig"],
        "._errors": ["CacheError", "CacheUnavailableError", "NotACounterError", "UncacheableValueError"],
        "._keys": ["glob", "glob_escape", "glob_to_regex"],
        "._manager": ["CacheManager"],
        "._observe": ["CacheObserver", "CallEnded", "ObservedBackend"],
        "._plugin": ["CachePlugin"],
        "._serializer": ["JsonSerializer", "Serializer"],
        "._stats": ["CacheStats"],
    }
    __getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
