"""The plugin on a real Redis Cluster and a real Sentinel group: clients, health, info, replicated writes,
mismatched URLs, and failover (private groups, killed with SIGKILL)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import cast

import pytest
import redis
import redis.asyncio as aioredis
from kernel_redis import (
    CrossSlotWriteError,
    RedisConnection,
    RedisService,
    ReplicationTimeoutError,
    hash_tag,
    inspect_topology,
)
from kernel_redis.testing import (
    FAILOVER_LEAKS_IGNORED,
    PrivateRedisCluster,
    PrivateRedisSentinel,
    RedisServer,
    close_dropped_cluster_connections,
    private_redis_cluster,
    private_redis_sentinel,
    redis_cluster,  # noqa: F401
    redis_sentinel,  # noqa: F401
)
from redis.asyncio.cluster import RedisCluster

from kernel import BootError, Kernel
from kernel.testing import boot_kernel, wait_until

pytestmark = pytest.mark.anyio

TAGS = [hash_tag(f"kctest-topo-{os.getpid()}-{n}") for n in range(12)]


def _kernel_cli(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "kernel.toml"
    config.write_text(f'[kernel]\nplugins = ["redis"]\n\n[plugins.redis]\nurl = "{url}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL")}
    return subprocess.run(
        [sys.executable, "-m", "kernel", "-c", str(config), "redis", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


async def test_cluster_client_spreads_keys_over_the_primaries(
    redis_cluster: PrivateRedisCluster,  # noqa: F811
) -> None:
    async with boot_kernel("redis", config={"redis": {"url": redis_cluster.url}}) as kernel:
        service = kernel.get(RedisService)
        assert service.topology == "cluster"
        client = service.client
        assert isinstance(client, RedisCluster)
        assert kernel.registry.get("redis") is client
        assert kernel.registry.find(aioredis.Redis) is None  # a RedisCluster is registered by name only
        keys = [f"{tag}:k" for tag in TAGS]
        try:
            for key in keys:
                assert await client.set(key, key) is True
            assert {await client.get(k) for k in keys} == {k.encode() for k in keys}
            assert len({redis_cluster.primary_of(k).port for k in keys}) >= 2
            blocking = service.new_client(socket_timeout=None)
            assert isinstance(blocking, RedisCluster)
            assert await blocking.blpop([f"{TAGS[0]}:list"], timeout=0.05) is None
        finally:
            await client.delete(*keys[:1])
            for key in keys[1:]:
                await client.delete(key)
        report = await kernel.health()
        assert report.status == "ok"
        assert [c.name for c in report.checks] == ["redis"]


async def test_sentinel_client_talks_to_the_master(redis_sentinel: PrivateRedisSentinel) -> None:  # noqa: F811
    async with boot_kernel("redis", config={"redis": {"url": redis_sentinel.url}}) as kernel:
        service = kernel.get(RedisService)
        assert service.topology == "sentinel"
        client = cast("aioredis.Redis", service.client)
        key = f"{TAGS[0]}:sentinel"
        await client.set(key, "v")
        with redis_sentinel.client(redis_sentinel.master_port()) as master:
            assert master.get(key) == "v"
        await client.delete(key)
        report = await kernel.health()
        assert report.status == "ok"
        assert [c.name for c in report.checks] == ["redis", "redis.sentinels"]


async def test_info_describes_the_cluster(redis_cluster: PrivateRedisCluster, tmp_path: Path) -> None:  # noqa: F811
    result = await asyncio.to_thread(_kernel_cli, tmp_path, redis_cluster.url, "info", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["topology"], report["state"], report["problems"]) == ("cluster", "ok", [])
    primaries = [n for n in report["nodes"] if n["role"] == "primary"]
    replicas = [n for n in report["nodes"] if n["role"] == "replica"]
    assert len(primaries) == 3 and len(replicas) == 3
    assert sum(b - a + 1 for n in primaries for a, b in n["slots"]) == 16384
    assert {r["primary"] for r in replicas} == {p["address"] for p in primaries}
    assert all(n["latency"] is not None for n in report["nodes"])
    text = await asyncio.to_thread(_kernel_cli, tmp_path, redis_cluster.url, "info")
    assert "topology:   cluster" in text.stdout and "0-" in text.stdout


async def test_info_describes_the_sentinel_group(
    redis_sentinel: PrivateRedisSentinel,  # noqa: F811
    tmp_path: Path,
) -> None:
    result = await asyncio.to_thread(_kernel_cli, tmp_path, redis_sentinel.url, "info", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["topology"], report["service"], report["problems"]) == ("sentinel", "kernel-test", [])
    assert (report["sentinels_answering"], report["sentinels_total"]) == (3, 3)
    (primary,) = [n for n in report["nodes"] if n["role"] == "primary"]
    assert primary["address"] == f"127.0.0.1:{redis_sentinel.master_port()}"
    assert [n["primary"] for n in report["nodes"] if n["role"] == "replica"] == [primary["address"]]


async def test_replicated_writes_on_the_cluster(redis_cluster: PrivateRedisCluster) -> None:  # noqa: F811
    async with boot_kernel("redis", config={"redis": {"url": redis_cluster.url}}) as kernel:
        service = kernel.get(RedisService)
        for tag in TAGS:
            key = f"{tag}:w"
            results, acknowledged = await service.wait_replicated(
                key, lambda pipe, key=key: pipe.set(key, "1").sadd(f"{key}:set", "m"), replicas=1, timeout=5
            )
            assert (results, acknowledged) == ([True, 1], 1)
            # On the replica of the key's primary once WAIT returned (READONLY: read a replica).
            primary = redis_cluster.primary_of(key)
            (replica,) = [n for n in redis_cluster.nodes if n.primary_id == primary.node_id]
            with redis_cluster.client(replica.port) as direct:
                direct.execute_command("READONLY")
                assert direct.get(key) == "1"
        with pytest.raises(ReplicationTimeoutError):
            await service.wait_replicated(
                f"{TAGS[0]}:w", lambda p: p.set(f"{TAGS[0]}:w", "2"), replicas=2, timeout=0.2
            )
        with pytest.raises(CrossSlotWriteError, match="must share the hash tag"):
            await service.wait_replicated(
                f"{TAGS[0]}:w", lambda p: p.set(f"{TAGS[1]}:w", "x"), replicas=1, timeout=1
            )
        for tag in TAGS:
            await service.client.delete(f"{tag}:w")
            await service.client.delete(f"{tag}:w:set")


async def test_replicated_writes_on_the_sentinel_master(redis_sentinel: PrivateRedisSentinel) -> None:  # noqa: F811
    async with boot_kernel("redis", config={"redis": {"url": redis_sentinel.url}}) as kernel:
        service = kernel.get(RedisService)
        key = f"{TAGS[0]}:sw"
        assert await service.wait_replicated(key, lambda p: p.incr(key), replicas=1, timeout=5) == ([1], 1)
        with pytest.raises(ReplicationTimeoutError) as info:
            await service.wait_replicated(key, lambda p: p.incr(key), replicas=2, timeout=0.2)
        assert info.value.results == [2]
        await service.client.delete(key)


async def test_a_plain_url_to_a_cluster_node_or_a_sentinel_is_refused(
    redis_cluster: PrivateRedisCluster,  # noqa: F811
    redis_sentinel: PrivateRedisSentinel,  # noqa: F811
) -> None:
    node = f"redis://127.0.0.1:{redis_cluster.ports[0]}/0"
    sentinel = f"redis://127.0.0.1:{redis_sentinel.sentinel_addresses[0][1]}/0"
    for url, problem in [(node, "reaches a Redis Cluster node"), (sentinel, "reaches a Sentinel")]:
        with pytest.raises(BootError, match=problem):
            async with boot_kernel("redis", config={"redis": {"url": url}}):
                pass


async def test_a_cluster_url_to_a_plain_server_fails_the_boot(redis_server: RedisServer) -> None:
    url = f"redis+cluster://{redis_server.url.partition('://')[2].rsplit('/', 1)[0]}"
    with pytest.raises(BootError, match="cannot reach Redis"):
        async with boot_kernel("redis", config={"redis": {"url": url, "retries": 0}}):
            pass


@pytest.mark.slow
@FAILOVER_LEAKS_IGNORED
async def test_cluster_failover_health_and_replicated_writes() -> None:
    with private_redis_cluster(node_timeout_ms=1000) as cluster:
        async with _failover_kernel(cluster.url) as kernel:
            service = kernel.get(RedisService)
            key = f"{TAGS[0]}:failover"
            await _write_replicated(service, key)
            killed = await asyncio.to_thread(cluster.kill_primary_of, key)
            report = await kernel.health()
            assert report.status == "fail"
            assert f"127.0.0.1:{killed}" in (report.checks[0].error or "")
            await asyncio.to_thread(cluster.wait_promoted, killed)
            await wait_until(
                lambda: _health_ok(kernel), what="cluster health ok after the promotion", timeout=30
            )
            # The acknowledged write survived; replicated writes go to the promoted replica.
            assert await service.client.get(key) == b"1"
            with pytest.raises(ReplicationTimeoutError):  # the new primary has no replica left
                await service.wait_replicated(key, lambda p: p.set(key, 2), replicas=1, timeout=0.3)
            assert await service.client.get(key) == b"2"
        await close_dropped_cluster_connections()  # what redis-py left open of the killed node


async def _health_ok(kernel: Kernel) -> bool:
    return (await kernel.health()).status == "ok"


def _failover_kernel(url: str) -> AbstractAsyncContextManager[Kernel]:
    """A booted kernel with the redis plugin on ``url``, each health probe bounded to 1 s."""
    return boot_kernel("redis", config={"redis": {"url": url, "health_timeout": 1.0}})


async def _write_replicated(service: RedisService, key: str) -> None:
    """``SET key 1``, acknowledged by one replica."""
    _results, acknowledged = await service.wait_replicated(
        key, lambda p: p.set(key, 1), replicas=1, timeout=5
    )
    assert acknowledged == 1


@pytest.mark.slow
@FAILOVER_LEAKS_IGNORED
async def test_sentinel_failover_is_followed_by_the_client() -> None:
    with private_redis_sentinel() as group:
        async with _failover_kernel(group.url) as kernel:
            service = kernel.get(RedisService)
            key = f"{TAGS[0]}:sfailover"
            await _write_replicated(service, key)
            old = await asyncio.to_thread(group.kill_master)
            new = await asyncio.to_thread(group.wait_new_master, old)
            assert new != old
            await wait_until(lambda: _health_ok(kernel), what="health ok on the new master", timeout=30)
            assert await service.client.get(key) == b"1"
            report = await inspect_topology(kernel.get(RedisConnection))
            assert report.primaries[0].address == f"127.0.0.1:{new}"
        await close_dropped_cluster_connections()


def test_connect_sync_reaches_every_topology(
    redis_cluster: PrivateRedisCluster,  # noqa: F811
    redis_sentinel: PrivateRedisSentinel,  # noqa: F811
) -> None:
    from kernel_redis import connect_sync

    for url, kind in ((redis_cluster.url, redis.cluster.RedisCluster), (redis_sentinel.url, redis.Redis)):
        client = connect_sync(url)
        assert isinstance(client, kind)
        try:
            key = f"{TAGS[0]}:sync"
            assert client.set(key, "v") is True
            assert client.get(key) == b"v"
            client.delete(key)
        finally:
            client.close()


@pytest.mark.slow
async def test_sentinels_without_a_majority_degrade_the_kernel() -> None:
    with private_redis_sentinel() as group:
        async with _failover_kernel(group.url) as kernel:
            for sentinel in group.sentinels[:2]:
                sentinel.kill()
            report = await kernel.health()
            assert report.status == "degraded"  # the master still answers: only redis.sentinels fails
            checks = {c.name: c for c in report.checks}
            assert checks["redis"].ok
            assert "1 of 3 sentinels answer: no majority" in (checks["redis.sentinels"].error or "")
