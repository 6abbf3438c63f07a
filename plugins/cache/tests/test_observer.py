"""The observer seam: every backend call of every namespace view is reported, none once it is removed."""

from __future__ import annotations

import pytest
from kernel_cache import CacheBackend, CacheManager, CallEnded, MemoryBackend, ObservedBackend

pytestmark = pytest.mark.anyio


class Recorder:
    """A :class:`kernel_cache.CacheObserver` keeping what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, int, str | None, int | None]] = []

    def operation(self, name: str, namespace: str, backend: str, keys: int) -> CallEnded:
        def ended(error: BaseException | None, hits: int | None) -> None:
            failed = None if error is None else type(error).__name__
            self.calls.append((name, namespace, backend, keys, failed, hits))

        return ended


async def test_every_view_reports_its_calls_until_the_observer_is_removed(cache: CacheManager) -> None:
    users = cache.namespace("users")  # made before the observer: it reports too
    seen = Recorder()
    cache.set_observer(seen)
    orders = cache.namespace("orders")  # made after it
    backend = cache.backend.name
    await users.set("u1", {"name": "Ada"})
    assert await users.get("u1") == {"name": "Ada"}
    assert await users.get("nobody") is None
    await orders.set_many({"o1": 1, "o2": 2})
    assert await orders.get_many(["o1", "o2", "o3"]) == {"o1": 1, "o2": 2}
    assert await orders.has("o1") is True
    assert await orders.increment("n") == 1
    assert await orders.invalidate("o*") == 2
    assert seen.calls == [
        ("set", "users", backend, 1, None, None),
        ("get", "users", backend, 1, None, 1),
        ("get", "users", backend, 1, None, 0),
        ("set_many", "orders", backend, 2, None, None),
        ("get_many", "orders", backend, 3, None, 2),
        ("exists", "orders", backend, 1, None, 1),
        ("incr", "orders", backend, 1, None, None),
        ("delete_matching", "orders", backend, 0, None, None),
    ]
    assert not isinstance(cache.backend, ObservedBackend)  # the public backend is the real one
    cache.set_observer(None)
    await users.get("u1")
    await cache.namespace("later").get("x")
    assert len(seen.calls) == 8


class Broken(MemoryBackend):
    """A memory backend whose reads hit an outage."""

    outage_errors = (ConnectionError,)

    async def get(self, key: str) -> bytes | None:
        raise ConnectionError("store unreachable")


async def test_a_failed_call_is_reported_and_the_cache_still_fails_open() -> None:
    backend: CacheBackend = Broken()
    cache = CacheManager(backend, namespace="users")
    seen = Recorder()
    cache.set_observer(seen)
    assert await cache.get("u1", "fallback") == "fallback"  # fail open: the circuit saw the error
    assert seen.calls == [("get", "users", "memory", 1, "ConnectionError", None)]
    assert cache.get_stats().errors == 1


async def test_dropped_views_are_not_kept() -> None:
    cache = CacheManager(MemoryBackend(), namespace="users")
    kept = cache.namespace("kept")
    for i in range(1000):  # a view per request, dropped at once
        cache.namespace(f"n{i % 7}")
    assert len(cache._sh.views()) == 2  # the root and "kept"
    assert len(cache._sh._views) < 200  # the dead references were dropped on the way
    seen = Recorder()
    cache.set_observer(seen)
    await kept.get("x")
    assert seen.calls == [("get", "kept", "memory", 1, None, 0)]
