"""Wiring of the store instrumentation: cache and Redis spans (when asked for), the outbox's trace context.

Each piece applies only when its plugin is installed and enabled; each returns its undo.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from opentelemetry import trace

from kernel import Registry

from ._config import OtelConfig

if TYPE_CHECKING:
    from kernel_cache import CacheManager
    from kernel_redis import RedisConnection
    from kernel_repository import RepositoryManager

T = TypeVar("T")


def _find(registry: Registry, load: Callable[[], type[T]]) -> T | None:
    """The service of the type ``load`` imports, or None (its distribution not installed, or not enabled)."""
    try:
        key = load()
    except ImportError:
        return None
    return registry.find(key)


def _cache_manager() -> type[CacheManager]:
    from kernel_cache import CacheManager

    return CacheManager


def _redis_connection() -> type[RedisConnection]:
    from kernel_redis import RedisConnection  # a host's own RedisService is not observed

    return RedisConnection


def _repository_manager() -> type[RepositoryManager]:
    from kernel_repository import RepositoryManager

    return RepositoryManager


def instrument_stores(
    registry: Registry, config: OtelConfig, tracer: trace.Tracer
) -> list[Callable[[], None]]:
    """Instrument what ``config`` asks for among the enabled plugins; the functions undoing it."""
    undo: list[Callable[[], None]] = []
    repositories = _find(registry, _repository_manager)
    if repositories is not None:
        from ._propagation import OutboxPropagation

        undo.append(observing(repositories.outbox.set_propagation, OutboxPropagation()))
    cache = _find(registry, _cache_manager) if config.cache_spans else None
    if cache is not None:
        from ._cache import CacheTracing

        undo.append(observing(cache.set_observer, CacheTracing(tracer)))
    connection = _find(registry, _redis_connection) if config.redis_spans else None
    if connection is not None:
        from ._redis import RedisTracing

        undo.append(observing(connection.set_observer, RedisTracing(tracer)))
    return undo


def observing(set_observer: Callable[[T | None], None], observer: T) -> Callable[[], None]:
    """``set_observer(observer)``; returns the function setting it back to None."""
    set_observer(observer)
    return lambda: set_observer(None)
