"""Failure behaviour with a real redis-server: outage, hung server, recovery, and cross-process locks."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import pytest
from cache_children import child_argv, redis_cache_kernel
from cache_keys import all_keys, scan
from kernel_cache import CacheManager, CacheUnavailableError
from kernel_redis import AnyRedis, connect
from kernel_redis.testing import private_redis_server

from kernel.testing import boot_kernel, wait_until

pytestmark = pytest.mark.anyio


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


@asynccontextmanager
async def redis_cache(url: str, **cache: object) -> AsyncIterator[CacheManager]:
    async with redis_cache_kernel(url, **cache) as kernel:
        yield kernel.get(CacheManager)


@pytest.mark.slow
@pytest.mark.standalone_only  # stops its own server
async def test_outage_fails_open_then_recovers_after_restart(caplog: pytest.LogCaptureFixture) -> None:
    with private_redis_server() as server:
        async with redis_cache(server.url, timeout=0.5, outage_backoff=0.2, log_interval=60) as cache:
            assert await cache.set("a", 1) is True
            server.stop()
            calls = 0

            async def factory() -> str:
                nonlocal calls
                calls += 1
                return "fresh"

            with caplog.at_level(logging.WARNING, logger="kernel.plugins.cache"):
                t0 = time.perf_counter()
                assert await cache.get("a") is None  # a miss, not an exception
                assert await cache.set("b", 2) is False  # the write is skipped
                assert await cache.get_or_set("c", factory) == "fresh"
                assert await cache.get_or_set("c", factory) == "fresh"
                assert await cache.has("a") is False
                assert await cache.get_many(["a", "b"]) == {}
                assert await cache.set_many({"x": 1}) is False
                assert await cache.invalidate("*") == 0
                assert await cache.count_matching("*") is None  # unknown, not "no keys"
                assert await cache.delete("a") is False
                for _ in range(50):
                    await cache.get("a")
                elapsed = time.perf_counter() - t0
                with pytest.raises(CacheUnavailableError):
                    await cache.increment("n")  # counters never pretend
            assert calls == 2
            assert elapsed < 1.5  # fails fast: connection refused, then the circuit stays open
            stats = cache.get_stats()
            assert stats.errors >= 59
            assert stats.hits == 0
            outage_lines = [r for r in caplog.records if "unavailable" in r.getMessage()]
            assert len(outage_lines) == 1  # rate-limited: one line per log_interval

            server.start()  # same port; no persistence, so it comes back empty
            # Writes are skipped until outage_backoff has passed, then they reach the server again.
            await wait_until(lambda: cache.set("b", 2), what="writes after the outage")
            assert await cache.get("b") == 2
            assert await cache.get_or_set("c", factory) == "fresh"
            assert calls == 3
            assert await cache.increment("n") == 1


@pytest.mark.slow
@pytest.mark.standalone_only  # stops its own server
async def test_a_hung_server_bounds_writes_by_the_timeout() -> None:
    with private_redis_server() as server:
        async with redis_cache(server.url, timeout=0.3, outage_backoff=0.2) as cache:
            assert await cache.set("k", "v") is True
            assert server.pid is not None
            os.kill(server.pid, signal.SIGSTOP)  # alive but unresponsive
            try:
                # Bounded by the 0.3 s timeout, plus slack for a loaded 2-core CI machine.
                t0 = time.perf_counter()
                assert await cache.set("k", "w") is False
                assert time.perf_counter() - t0 < 0.3 + 1.0
                t0 = time.perf_counter()
                assert await cache.get_or_set("slow", lambda: 1) == 1
                assert time.perf_counter() - t0 < 0.3 + 1.0
            finally:
                os.kill(server.pid, signal.SIGCONT)
            # The timed-out SET had reached the server's socket buffer: it was applied once the
            # server resumed. A timed-out write is "unknown", not "not done" (documented). Reads
            # are misses until outage_backoff has passed.
            await wait_until(lambda: _equals(cache.get("k"), "w"), what="the resumed server's value")
            assert await cache.set("k", "x") is True
            assert await cache.get("k") == "x"


@pytest.mark.standalone_only  # stops its own server
async def test_fail_closed_raises(prefix: str) -> None:
    with private_redis_server() as server:
        async with redis_cache(server.url, fail_open=False, key_prefix=prefix) as cache:
            server.stop()
            with pytest.raises(CacheUnavailableError, match="during get"):
                await cache.get("a")
            with pytest.raises(CacheUnavailableError):
                await cache.set("a", 1)
            with pytest.raises(CacheUnavailableError):
                await cache.get_or_set("a", lambda: 1)


@pytest.mark.standalone_only  # stops its own server
async def test_a_counter_outage_is_exported_as_an_error_too() -> None:
    kernel_metrics = pytest.importorskip("kernel_metrics")
    with private_redis_server() as server:
        config = {"redis": {"url": server.url}, "cache": {"backend": "redis"}}
        async with boot_kernel("metrics", "redis", "cache", config=config) as kernel:
            cache = kernel.get(CacheManager)
            server.stop()
            with pytest.raises(CacheUnavailableError, match="during increment"):
                await cache.increment("n")
            assert cache.get_stats().errors == 1
            body, _ = kernel.get(kernel_metrics.MetricsCollector).render()
            # cache_errors_total counts what get_stats().errors counts
            assert 'cache_errors_total{namespace="default"} 1.0' in body.decode()


async def test_lock_release_is_token_checked(cache: CacheManager) -> None:
    backend = cache.backend
    key = cache.key("lock-test")
    assert await backend.acquire(key, "A", 0.5) is True
    assert await backend.acquire(key, "B", 5) is False
    # A's lock expires (A was too slow, or crashed): then B gets it.
    await wait_until(lambda: backend.acquire(key, "B", 5), what="A's lock to expire")
    assert await backend.release(key, "A") is False  # A must not free B's lock
    assert await backend.acquire(key, "C", 5) is False
    assert await backend.release(key, "B") is True
    assert await backend.acquire(key, "C", 5) is True
    assert await backend.release(key, "C") is True


async def test_lock_left_by_a_crashed_holder_expires(redis_url: str, prefix: str) -> None:
    async with redis_cache(redis_url, key_prefix=prefix, lock=True, lock_ttl=0.5) as cache:
        # A process that took the lock and died: its lock stays until lock_ttl.
        assert await cache.backend.acquire(f"{{{prefix}:__lock__:default}}:report", "dead", 0.5)
        calls = 0

        async def factory() -> int:
            nonlocal calls
            calls += 1
            return 42

        t0 = time.perf_counter()
        assert await cache.get_or_set("report", factory) == 42
        assert 0.3 < time.perf_counter() - t0 < 2.0
        assert calls == 1
        await cache.delete("report")


@asynccontextmanager
async def released_together(
    child: str, url: str, prefix: str, *args: str, n: int
) -> AsyncIterator[tuple[list[asyncio.subprocess.Process], AnyRedis]]:
    """``n`` processes running the child ``child`` (of ``cache_children``) with ``url prefix *args``,
    released at once once all are ready.

    Each worker increments ``{prefix}:ready``, then waits for ``{prefix}:go``. Yields the workers
    (output piped) and a Redis client; at exit kills any worker left and deletes the ``prefix`` keys
    (the race's own and the cache's).
    """
    procs = [
        await asyncio.create_subprocess_exec(
            *child_argv(child, url, prefix, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(n)
    ]
    raw = connect(url)
    try:
        deadline = time.monotonic() + 30
        while int(await raw.get(f"{prefix}:ready") or 0) < n:
            assert time.monotonic() < deadline, "workers did not start"
            assert all(p.returncode is None for p in procs), "a worker died before the race"
            await asyncio.sleep(0.01)
        await raw.set(f"{prefix}:go", 1)
        yield procs, raw
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.communicate()
        for pattern in (f"{prefix}:*", all_keys(prefix)):
            if keys := [k async for k in scan(raw, pattern)]:
                await raw.delete(*keys)
        await raw.aclose()


async def outputs_of(procs: list[asyncio.subprocess.Process]) -> list[bytes]:
    """Each worker's stdout once it exits; a worker that fails fails the test with its stderr."""
    outputs = [await asyncio.wait_for(p.communicate(), 30) for p in procs]
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err.decode()
    return [out for out, _err in outputs]


async def _race(url: str, prefix: str, mode: str) -> tuple[int, list[dict[str, int]]]:
    async with released_together("get_or_set_race", url, prefix, mode, n=2) as (procs, raw):
        outputs = await outputs_of(procs)
        calls = int(await raw.get(f"{prefix}:factory-calls") or 0)
    return calls, [json.loads(out) for out in outputs]


@pytest.mark.slow
async def test_two_processes_with_the_distributed_lock_call_the_factory_once(
    redis_url: str, prefix: str
) -> None:
    calls, results = await _race(redis_url, prefix, "lock")
    assert calls == 1
    assert results[0] == results[1]  # both got the one computed value
    # Control: without the lock each process computes it (single-flight is per process).
    calls, _ = await _race(redis_url, prefix + "n", "nolock")
    assert calls == 2


@pytest.mark.slow
async def test_counters_are_exact_across_processes(redis_url: str, prefix: str) -> None:
    n = 3
    async with released_together("counters", redis_url, prefix, n=n) as (procs, raw):
        await outputs_of(procs)
        assert int(await raw.get(f"{{{prefix}:default}}:hits")) == n * (500 - 200)
        ttl = await raw.ttl(f"{{{prefix}:default}}:hits")
        assert 0 < ttl <= 60  # set once by whichever increment created it
