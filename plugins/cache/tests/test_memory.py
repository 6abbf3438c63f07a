"""Memory backend specifics: LRU eviction under max_entries, expiry, no aliasing."""

from __future__ import annotations

import anyio
import pytest
from kernel_cache import CacheManager, MemoryBackend

from kernel.testing import wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The memory cache uses only anyio: these tests run on asyncio and on trio.

    (The Redis backend is asyncio-only: redis-py's asyncio client.)
    """
    return str(request.param)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_lru_eviction_keeps_the_recently_used() -> None:
    backend = MemoryBackend(max_entries=3)
    cache = CacheManager(backend)
    for k in "abc":
        await cache.set(k, k)
    assert await cache.get("a") == "a"  # a is now the most recently used
    await cache.set("d", "d")  # evicts b, the least recently used
    assert len(backend) == 3
    assert backend.evictions == 1
    assert await cache.get_many(["a", "b", "c", "d"]) == {"a": "a", "c": "c", "d": "d"}


async def test_expired_entries_are_evicted_before_live_ones() -> None:
    clock = Clock()
    backend = MemoryBackend(max_entries=3, clock=clock)
    cache = CacheManager(backend)
    await cache.set("old", 1, ttl=10)
    await cache.set("live1", 1, ttl=100)
    await cache.set("live2", 1, ttl=100)
    clock.now += 20
    await cache.set("new", 1, ttl=100)
    assert backend.evictions == 0  # the expired entry made room
    assert await cache.get_many(["live1", "live2", "new"]) == {"live1": 1, "live2": 1, "new": 1}


async def test_expiry_follows_the_clock() -> None:
    clock = Clock()
    cache = CacheManager(MemoryBackend(clock=clock), default_ttl=60)
    await cache.set("k", "v")
    await cache.increment("n", ttl=30)
    clock.now += 59.9
    assert await cache.get("k") == "v"
    assert await cache.get("n") is None  # the counter's 30 s window is over
    clock.now += 0.2
    assert await cache.get("k") is None
    assert await cache.invalidate("*") == 0  # expired entries are not counted as deleted


async def test_values_are_copied_not_aliased() -> None:
    cache = CacheManager()  # the standalone constructor with no client: memory
    value = {"list": [1]}
    await cache.set("k", value)
    value["list"].append(2)
    got = await cache.get("k")
    assert got == {"list": [1]}
    got["list"].append(3)
    assert await cache.get("k") == {"list": [1]}


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryBackend(0)
    with pytest.raises(TypeError, match=r"Redis or RedisCluster client, a CacheBackend or None"):
        CacheManager("redis://localhost")
    with pytest.raises(ValueError, match="default_ttl"):
        CacheManager(default_ttl=0)
    with pytest.raises(ValueError, match="key_prefix"):
        CacheManager(key_prefix="a:b")


async def test_single_flight_on_any_event_loop() -> None:
    cache = CacheManager(namespace="t")
    release = anyio.Event()
    calls = 0
    results: list[object] = []

    async def factory() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await release.wait()
        return {"n": calls}

    async def ask() -> None:
        results.append(await cache.get_or_set("k", factory))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(ask)
        await anyio.wait_all_tasks_blocked()  # the leader in its factory, nine waiters on it
        release.set()
    assert calls == 1
    assert results == [{"n": 1}] * 10
    assert await cache.increment("c", 2) == 2
    assert await cache.invalidate("*") == 2
    assert cache.get_stats().misses == 10  # each caller missed once; one computed


async def test_the_lock_waits_for_another_holder_on_any_event_loop() -> None:
    backend = MemoryBackend()
    # Two managers on one store stand for two processes: no shared single flight, only the lock.
    first, second = CacheManager(backend, lock=True), CacheManager(backend, lock=True)
    release = anyio.Event()
    calls = 0
    results: list[object] = []

    async def factory() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    async def ask(cache: CacheManager) -> None:
        results.append(await cache.get_or_set("k", factory))

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask, first)
        await anyio.wait_all_tasks_blocked()  # first holds the lock, inside its factory
        tg.start_soon(ask, second)
        await wait_until(lambda: second.get_stats().misses == 1, what="the second manager's miss")
        release.set()  # second is polling the lock: it reads first's value instead of computing
    assert calls == 1
    assert results == [1, 1]
