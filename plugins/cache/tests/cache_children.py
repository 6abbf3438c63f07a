"""The child processes of the cache's multi-process tests, and the Redis-backed cache kernel they boot.

A test starts one with ``child_argv(name, url, prefix, *args)``: this file run as a script (its folder
is then on ``sys.path``), which calls ``CHILDREN[name](url, prefix, *args)``. A unique module name: all
plugins' tests share ``sys.modules``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from kernel_cache import CacheManager, CacheUnavailableError, CallEnded
from kernel_redis import AnyRedis, RedisService

from kernel import Kernel
from kernel.testing import boot_kernel, wait_until


@asynccontextmanager
async def redis_cache_kernel(
    url: str, prefix: str | None = None, **settings: object
) -> AsyncIterator[Kernel]:
    """A booted kernel with the redis plugin on ``url`` and the cache on its Redis backend (key prefix
    ``prefix`` unless ``None``, then ``settings``)."""
    cache: dict[str, object] = {"backend": "redis"}
    if prefix is not None:
        cache["key_prefix"] = prefix
    async with boot_kernel(
        "redis", "cache", config={"redis": {"url": url}, "cache": {**cache, **settings}}
    ) as k:
        yield k


def child_argv(name: str, *args: str) -> list[str]:
    """The command line of the child ``name`` (a key of :data:`CHILDREN`) with its arguments."""
    return [sys.executable, __file__, name, *args]


async def _ready_then_go(raw: AnyRedis, prefix: str) -> None:
    """Count this process in ``{prefix}:ready``, then wait for the parent's ``{prefix}:go``."""
    await raw.incr(f"{prefix}:ready")
    await wait_until(lambda: raw.exists(f"{prefix}:go"), 30, interval=0.005, what="the parent's go")


class _CountLockAttempts:
    """A cache observer that counts every ended lock acquire, of any racer, in ``{prefix}:acquires``."""

    def __init__(self, raw: AnyRedis, prefix: str) -> None:
        self._raw, self._key = raw, f"{prefix}:acquires"
        self._pending: set[asyncio.Task[object]] = set()

    def operation(self, name: str, namespace: str, backend: str, keys: int) -> CallEnded:
        """Count ``acquire`` once it ended (the observer is synchronous: the count is a task)."""

        def ended(error: BaseException | None, found: int | None) -> None:
            if name == "acquire":
                task = asyncio.get_running_loop().create_task(self._raw.incr(self._key))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)

        return ended


async def get_or_set_race(url: str, prefix: str, mode: str) -> None:
    """One of the racers for ``get_or_set`` (distributed lock when ``mode`` is ``lock``); prints the value.

    The factory finishes only once the other racer is in the race: with the lock, once it tried the
    lock too (a second acquire); without, once it called the factory too (no cross-process single-flight).
    """
    async with redis_cache_kernel(url, prefix, lock=mode == "lock") as kernel:
        raw = kernel.get(RedisService).client
        manager = kernel.get(CacheManager)
        manager.set_observer(_CountLockAttempts(raw, prefix))
        cache = manager.namespace("reports")

        async def other_racer_arrived() -> bool:
            if mode == "lock":
                return int(await raw.get(f"{prefix}:acquires") or 0) >= 2
            return int(await raw.get(f"{prefix}:factory-calls") or 0) >= 2

        async def factory() -> dict[str, int]:
            await raw.incr(f"{prefix}:factory-calls")
            await wait_until(other_racer_arrived, 30, interval=0.005, what="the other racer")
            return {"computed_by": os.getpid()}

        await _ready_then_go(raw, prefix)
        print(json.dumps(await cache.get_or_set("monthly", factory)), flush=True)


async def counters(url: str, prefix: str) -> None:
    """500 concurrent increments and 100 decrements by 2 of ``hits`` (ttl 60 s), once released."""
    # 600 concurrent operations share the pool: on a loaded 2-core machine a connect can take
    # longer than the 0.5 s default; this test is about exact counts, not latency.
    async with redis_cache_kernel(url, prefix, timeout=10.0) as kernel:
        raw = kernel.get(RedisService).client
        cache = kernel.get(CacheManager)
        await _ready_then_go(raw, prefix)
        await asyncio.gather(*(cache.increment("hits", ttl=60) for _ in range(500)))
        await asyncio.gather(*(cache.decrement("hits", 2) for _ in range(100)))


async def failover(url: str, prefix: str) -> None:
    """Write a key and print it; once a line on stdin says its primary was killed, print (JSON) what
    the cache did meanwhile and how long until writes worked again."""
    async with redis_cache_kernel(url, prefix, outage_backoff=0.2) as kernel:
        users = kernel.get(CacheManager).namespace("user")
        assert await users.set("before", 1) is True
        print(users.key("before"), flush=True)
        sys.stdin.readline()  # the parent killed the primary of that key's slot
        t0 = time.monotonic()
        out: dict[str, object] = {
            "get": await users.get("before", "miss"),
            "set": await users.set("during", 2),
        }
        try:
            await users.increment("n")
        except CacheUnavailableError:
            out["increment"] = "CacheUnavailableError"
        # The replica takes over the slot; the client finds it on its own (no restart).
        await wait_until(lambda: users.set("after", 3), timeout=60, what="writes after the failover")
        out["recovered"] = time.monotonic() - t0
        out["after"] = await users.get("after")
        out["counter"] = await users.increment("n")
        out["errors"] = users.get_stats().errors
        print(json.dumps(out), flush=True)


CHILDREN: dict[str, Callable[..., Awaitable[None]]] = {
    "get_or_set_race": get_or_set_race,
    "counters": counters,
    "failover": failover,
}
"""The children by name: each takes the Redis URL, the key prefix and its own string arguments."""

if __name__ == "__main__":
    asyncio.run(CHILDREN[sys.argv[1]](*sys.argv[2:]))
