"""A cluster client's first commands sent concurrently, before it knows the cluster (a private Redis Cluster).

redis-py 7.4.1's ``RedisCluster`` routes a command sent while it is uninitialized to a random primary
(MOVED), and every ``reinitialize_steps``-th MOVED closes every connection, in-flight ones too
(``AttributeError: 'NoneType' object has no attribute 'writelines'``, ``ConnectionError``). The plugin's
cluster clients initialize before they route (``InitializingRedisCluster``): no MOVED, no failure.
"""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any

import kernel_redis
import pytest
from kernel_redis import RedisService
from kernel_redis.testing import PrivateRedisCluster, redis_cluster  # noqa: F401
from redis.asyncio.cluster import RedisCluster

from kernel.testing import boot_kernel

pytestmark = pytest.mark.anyio

BURST = 1500
"""Concurrent first commands per client (the burst that failed 12 of 1,500 on a raw client)."""
ROUNDS = 3


def _moved_replies(cluster: PrivateRedisCluster) -> int:
    """MOVED errors the cluster's nodes have replied so far (``INFO errorstats``)."""
    total = 0
    for port in cluster.ports:
        with cluster.client(port) as node:
            stats: dict[str, Any] = node.info("errorstats")
        total += int(stats.get("errorstat_MOVED", {}).get("count", 0))
    return total


async def _burst(client: RedisCluster, prefix: str) -> list[object]:
    """``BURST`` concurrent SETs of keys spread over the slots; each result or exception."""
    return await asyncio.gather(
        *(client.set(f"{prefix}:{n}", n) for n in range(BURST)), return_exceptions=True
    )


def _cluster(client: kernel_redis.AnyRedis) -> RedisCluster:
    assert isinstance(client, RedisCluster)
    return client


async def _delete(client: RedisCluster, prefix: str) -> None:
    # One DEL per key, routed by slot (client.delete would split into per-slot pipelines).
    await asyncio.gather(*(client.execute_command("DEL", f"{prefix}:{n}") for n in range(BURST)))


def _raw_burst_in_own_loop(port: int, prefix: str) -> None:
    """The burst on a raw client, in an event loop of its own that is closed when it returns."""

    async def burst() -> None:
        raw = RedisCluster(host="127.0.0.1", port=port, max_connections=BURST)
        try:
            await _burst(raw, prefix)
        finally:
            await raw.aclose()

    asyncio.run(burst())


# The raw client's failed connections may be left unclosed (redis-py), reported when collected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_raw_client_sends_its_first_concurrent_commands_to_random_primaries(
    redis_cluster: PrivateRedisCluster,  # noqa: F811
) -> None:
    """The cause, shown reliably: redis-py's own uninitialized client gets MOVED for most keys (it
    fails some of them only sometimes: ~0-30 of 1,500 here, so that is not asserted)."""
    prefix = f"kctest-first-raw-{os.getpid()}"
    before = _moved_replies(redis_cluster)
    await asyncio.to_thread(_raw_burst_in_own_loop, redis_cluster.ports[0], prefix)
    # Its event loop is closed now, so nothing keeps the raw client's leaked connections alive:
    # they are collected and reported here, under this test's filter, not in a later test.
    gc.collect()
    assert _moved_replies(redis_cluster) - before > BURST // 10
    cleaner = kernel_redis.connect(redis_cluster.url, max_connections=BURST)
    try:
        await _delete(_cluster(cleaner), prefix)
    finally:
        await cleaner.aclose()


async def _no_moved_no_failure(cluster: PrivateRedisCluster, client: RedisCluster, prefix: str) -> None:
    before = _moved_replies(cluster)
    results = await _burst(client, prefix)
    assert [r for r in results if r is not True] == []
    assert _moved_replies(cluster) - before == 0
    await _delete(client, prefix)


async def test_the_plugins_cluster_clients_initialize_before_their_first_commands(
    redis_cluster: PrivateRedisCluster,  # noqa: F811
) -> None:
    """Fresh ``connect`` and ``new_client`` clients, ``BURST`` concurrent first commands each: all
    succeed, none is redirected."""
    prefix = f"kctest-first-{os.getpid()}"
    async with boot_kernel("redis", config={"redis": {"url": redis_cluster.url}}) as kernel:
        service = kernel.get(RedisService)
        for n in range(ROUNDS):
            for kind in ("connect", "new_client"):
                client = _cluster(
                    kernel_redis.connect(redis_cluster.url, max_connections=BURST)
                    if kind == "connect"
                    else service.new_client(max_connections=BURST)
                )
                try:
                    await _no_moved_no_failure(redis_cluster, client, f"{prefix}-{kind}-{n}")
                finally:
                    await client.aclose()
