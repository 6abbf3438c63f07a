"""``RedisService.wait_replicated`` on a real standalone master with a real replica (REPLICAOF)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import cast

import pytest
import redis
import redis.asyncio as aioredis
from kernel_redis import (
    HostClient,
    RedisConfig,
    RedisConnection,
    RedisServer,
    RedisService,
    ReplicationTimeoutError,
    connect,
    inspect_topology,
)
from kernel_redis.testing import private_redis_server
from redis.asyncio.client import Pipeline

from kernel import Secret
from kernel.testing import boot_kernel, wait_until

pytestmark = pytest.mark.anyio


def _link_up(replica_url: str) -> bool:
    with redis.Redis.from_url(replica_url) as replica:
        return replica.info("replication").get("master_link_status") == "up"


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A master and one replica of it (password-protected, loopback)."""
    with (
        private_redis_server(password=True) as master,
        private_redis_server(
            password=True, replicaof=f"127.0.0.1 {master.port}", masterauth=str(master.password)
        ) as replica,
    ):
        yield master, replica


@pytest.fixture
async def service(pair: tuple[RedisServer, RedisServer]) -> AsyncIterator[RedisConnection]:
    master, replica = pair
    await wait_until(lambda: _link_up(replica.url), what="replica linked to its master")
    conn = RedisConnection(Secret(master.url), RedisConfig(url=Secret(master.url)))
    try:
        yield conn
    finally:
        await conn.aclose()


def _key(name: str) -> str:
    return f"kctest-durability:{os.getpid()}:{name}"


async def test_acknowledged_writes_are_on_the_replica(
    service: RedisConnection, pair: tuple[RedisServer, RedisServer]
) -> None:
    key = _key("ok")

    def write(pipe: Pipeline) -> None:
        pipe.set(key, "v1")
        pipe.hset(key + ":h", "f", "1")

    results, acknowledged = await service.wait_replicated(key, write, replicas=1, timeout=5.0)
    assert results == [True, 1]
    assert acknowledged == 1
    # WAIT returned once the replica had both writes: they are there, without polling.
    with redis.Redis.from_url(pair[1].url) as replica:
        assert replica.get(key) == b"v1"
        assert replica.hget(key + ":h", "f") == b"1"
    await service.client.delete(key, key + ":h")


async def test_more_replicas_than_exist_times_out_with_the_write_on_the_master(
    service: RedisConnection,
) -> None:
    key = _key("two")
    with pytest.raises(ReplicationTimeoutError) as info:
        await service.wait_replicated(key, lambda pipe: pipe.incr(key), replicas=2, timeout=0.2)
    error = info.value
    assert (error.acknowledged, error.required, error.results) == (1, 2, [1])
    assert "acknowledged by 1 of 2 replica(s) within 0.2s" in str(error)
    assert await service.client.get(key) == b"1"
    await service.client.delete(key)


async def test_a_replica_that_is_down_acknowledges_nothing() -> None:
    with (
        private_redis_server() as master,
        private_redis_server(replicaof=f"127.0.0.1 {master.port}") as replica,
    ):
        await wait_until(lambda: _link_up(replica.url), what="replica linked")
        conn = RedisConnection(Secret(master.url), RedisConfig(url=Secret(master.url)))
        try:
            key = _key("down")
            assert (await conn.wait_replicated(key, lambda p: p.set(key, 1), replicas=1, timeout=5))[1] == 1
            replica.stop()
            with pytest.raises(ReplicationTimeoutError) as info:
                await conn.wait_replicated(key, lambda p: p.set(key, 2), replicas=1, timeout=0.3)
            assert info.value.acknowledged == 0
            assert await conn.client.get(key) == b"2"
        finally:
            await conn.aclose()


@pytest.mark.parametrize(
    ("replicas", "seconds", "problem"),
    [
        (0, 1.0, "replicas must be >= 1"),
        (1, 0.0, "timeout must be"),
        (1, -1.0, "timeout must be"),
        (1, float("inf"), "timeout must be"),
    ],
)
async def test_bad_arguments_are_refused_before_any_write(
    service: RedisConnection, replicas: int, seconds: float, problem: str
) -> None:
    key = _key("bad")
    with pytest.raises(ValueError, match=problem):
        await service.wait_replicated(key, lambda p: p.set(key, 1), replicas=replicas, timeout=seconds)
    assert await service.client.exists(key) == 0


async def test_a_wait_longer_than_the_socket_timeout_is_not_cut_short(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master = pair[0]
    cfg = RedisConfig(url=Secret(master.url), socket_timeout=0.2)
    conn = RedisConnection(cfg.url, cfg)
    try:
        key = _key("long")
        with pytest.raises(ReplicationTimeoutError):  # WAIT blocks 0.6 s on a 0.2 s socket timeout
            await conn.wait_replicated(key, lambda p: p.set(key, 1), replicas=2, timeout=0.6)
        await conn.client.delete(key)
    finally:
        await conn.aclose()


async def test_the_booted_service_and_a_host_client_replicate_alike(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = pair
    await wait_until(lambda: _link_up(replica.url), what="replica linked")
    key = _key("booted")
    async with boot_kernel("redis", config={"redis": {"url": master.url}}) as kernel:
        service = kernel.get(RedisService)
        assert service.topology == "standalone"
        assert (await service.wait_replicated(key, lambda p: p.set(key, 1), replicas=1, timeout=5))[1] == 1
    client = cast("aioredis.Redis", connect(master.url))
    try:
        host = HostClient(client)
        results, acknowledged = await host.wait_replicated(
            key, lambda p: p.delete(key), replicas=1, timeout=5
        )
        assert (results, acknowledged) == ([1], 1)
    finally:
        await client.aclose()


async def test_info_shows_the_master_and_its_replica(
    service: RedisConnection, pair: tuple[RedisServer, RedisServer]
) -> None:
    async def replica_online() -> bool:
        return [n.flags for n in (await inspect_topology(service)).nodes[1:]] == ["online"]

    await wait_until(replica_online, what="the master to report its replica online")
    report = await inspect_topology(service)
    assert report.topology == "standalone" and report.problems() == []
    primary, replica = report.nodes
    assert (primary.role, primary.address, primary.ok) == ("primary", f"127.0.0.1:{pair[0].port}", True)
    assert (replica.role, replica.address, replica.primary) == (
        "replica",
        f"127.0.0.1:{pair[1].port}",
        primary.address,
    )
