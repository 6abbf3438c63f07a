"""The key layout on a cluster: namespaces spread over the primaries, batches split by node, invalidation
on every primary; round trips counted on the wire (every request redis-py writes to a socket). And a
primary killed under the cache, on a cluster and under Sentinel."""

from __future__ import annotations

import asyncio
import json
from asyncio.subprocess import PIPE
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from cache_children import child_argv, redis_cache_kernel
from cache_keys import all_keys
from kernel_cache import CacheManager, RedisBackend
from kernel_redis.testing import PrivateRedisCluster, private_redis_cluster, private_redis_sentinel
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection

pytestmark = pytest.mark.anyio

NAMESPACES = [f"ns{i}" for i in range(12)]
Node = tuple[str, int]


@pytest.fixture
def cluster_url(redis_cluster: PrivateRedisCluster) -> str:
    """The session's cluster (3 primaries, 3 replicas): the cluster ``redis_url``, started on first use."""
    return redis_cluster.url


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> Counter[Node]:
    """Requests written per server (host, port): one per command, one per pipeline -- one round trip each."""
    counts: Counter[Node] = Counter()
    send = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        counts[(self.host, self.port)] += 1  # type: ignore[attr-defined]  # TCP connections only here
        await send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return counts


@asynccontextmanager
async def redis_cache(url: str, prefix: str, **settings: object) -> AsyncIterator[CacheManager]:
    async with redis_cache_kernel(url, prefix, **settings) as kernel:
        cache = kernel.get(CacheManager)
        try:
            yield cache
        finally:
            await cache.backend.delete_matching(all_keys(prefix))


def client_of(cache: CacheManager) -> Any:
    backend = cache.backend
    assert isinstance(backend, RedisBackend)
    return backend.client


def one_each(sends: Counter[Node], client: Any, keys: list[str]) -> bool:
    """Whether each server holding some of ``keys`` got exactly one request, and no other server any.

    A cluster: the primaries of the keys' slots; one server (standalone, Sentinel's master): it alone.
    """
    if not isinstance(client, RedisCluster):
        return list(sends.values()) == [1]
    nodes = {(node.host, node.port) for node in map(client.get_node_from_key, keys)}
    return sends == dict.fromkeys(nodes, 1)


async def keys_per_primary(client: RedisCluster, pattern: str) -> dict[Node, int]:
    """How many keys matching ``pattern`` each primary holds (SCAN of that node alone)."""
    return {
        (node.host, node.port): len([k async for k in client.scan_iter(match=pattern, target_nodes=node)])
        for node in client.get_primaries()
    }


async def fill(cache: CacheManager, per_namespace: int = 3) -> list[tuple[str, bytes, float | None]]:
    """``per_namespace`` keys in each of the 12 namespaces, written through the backend; the rows."""
    rows: list[tuple[str, bytes, float | None]] = [
        (cache.namespace(ns).key(f"k{j}"), f'"{ns}/{j}"'.encode(), 60)  # JSON strings
        for ns in NAMESPACES
        for j in range(per_namespace)
    ]
    await cache.backend.set_many(rows)
    return rows


async def test_twelve_namespaces_spread_over_the_primaries(cluster_url: str, prefix: str) -> None:
    async with redis_cache(cluster_url, prefix) as cache:
        client = client_of(cache)
        assert isinstance(client, RedisCluster)
        await fill(cache)
        held = await keys_per_primary(client, all_keys(prefix))
        assert len(held) == 3
        assert sum(held.values()) == 3 * len(NAMESPACES)
        assert len([n for n in held.values() if n]) >= 2, held
        # ... and each namespace in one slot: its keys share the hash tag {<prefix>:<namespace>}.
        for ns in NAMESPACES:
            keys = [cache.namespace(ns).key(f"k{j}") for j in range(3)]
            assert len({client.keyslot(k) for k in keys}) == 1


async def test_batches_across_slots_take_one_round_trip_per_node(
    redis_url: str, redis_topology: str, prefix: str, sends: Counter[Node]
) -> None:
    # Runs on every topology: one server (standalone, Sentinel's master) takes exactly one round trip.
    async with redis_cache(redis_url, prefix) as cache:
        client = client_of(cache)
        backend = cache.backend
        rows = await fill(cache)  # also opens a connection to every node
        keys = [key for key, _, _ in rows]
        await backend.get_many(keys)
        if redis_topology == "cluster":
            assert len({client.get_node_from_key(k).name for k in keys}) >= 2

        sends.clear()
        await backend.set_many(rows)
        assert one_each(sends, client, keys), sends

        sends.clear()
        assert await backend.get_many(keys) == [value for _, value, _ in rows]
        assert one_each(sends, client, keys), sends

        # Through the manager a batch is one namespace: one slot, one MGET, one round trip.
        users = cache.namespace(NAMESPACES[0])
        sends.clear()
        assert await users.get_many(["k0", "k1", "k2", "missing"]) == {
            f"k{j}": f"{NAMESPACES[0]}/{j}" for j in range(3)
        }
        assert one_each(sends, client, [users.key("k0")]), sends


async def test_pattern_invalidation_deletes_on_every_primary(cluster_url: str, prefix: str) -> None:
    async with redis_cache(cluster_url, prefix) as cache:
        client = client_of(cache)
        await fill(cache, per_namespace=5)
        before = await keys_per_primary(client, all_keys(prefix))
        assert len([n for n in before.values() if n]) >= 2, before
        # One pattern matching keys on several primaries: every primary is scanned.
        assert await cache.backend.delete_matching(all_keys(prefix)) == 5 * len(NAMESPACES)
        assert await keys_per_primary(client, all_keys(prefix)) == dict.fromkeys(before, 0)
        # A namespace's own invalidation and clear, on whichever primary holds it.
        await fill(cache, per_namespace=5)
        for ns in NAMESPACES:
            space = cache.namespace(ns)
            assert await space.invalidate("k[01]") == 2
            assert await space.clear() == 3
        assert await keys_per_primary(client, all_keys(prefix)) == dict.fromkeys(before, 0)


async def test_a_burst_past_max_connections_waits_for_its_turn(cluster_url: str, prefix: str) -> None:
    # redis-py's cluster client has no blocking pool: past max_connections on a node it raises
    # MaxConnectionsError (and drops its connections). The cache queues the burst instead.
    async with redis_cache(cluster_url, prefix, max_connections=4, timeout=10.0) as cache:
        users = cache.namespace("user")
        assert all(await asyncio.gather(*(users.set(f"k{i}", i) for i in range(200))))
        assert await asyncio.gather(*(users.get(f"k{i}") for i in range(200))) == list(range(200))
        assert await asyncio.gather(*(users.increment("n") for _ in range(200))) is not None
        assert await users.get("n") == 200
        assert users.get_stats().errors == 0
        nodes = client_of(cache).get_nodes()
        assert max(len(node._connections) for node in nodes) <= 4


# The cache runs in a child process (cache_children.failover): redis-py's asyncio cluster client leaks
# the sockets a command had open on a node the topology refresh after a failover drops
# (redis/redis-py#4053); their ResourceWarnings at exit are the library's, and stay out of this session.
@contextmanager
def killable(topology: str) -> Iterator[tuple[str, Callable[[str], object]]]:
    """A private cluster or Sentinel group of its own: its URL, and how to SIGKILL a key's primary."""
    if topology == "cluster":
        with private_redis_cluster(primaries=3, replicas=1) as cluster:
            yield cluster.url, cluster.kill_primary_of
    else:
        with private_redis_sentinel(replicas=1, sentinels=3) as group:
            yield group.url, lambda _key: group.kill_master()


@pytest.mark.slow
@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
async def test_a_primary_failover_fails_open_then_the_cache_recovers(topology: str, prefix: str) -> None:
    with killable(topology) as (url, kill_primary_of):
        child = await asyncio.create_subprocess_exec(
            *child_argv("failover", url, prefix), stdin=PIPE, stdout=PIPE, stderr=PIPE
        )
        try:
            assert child.stdin is not None and child.stdout is not None
            key = (await asyncio.wait_for(child.stdout.readline(), 30)).decode().strip()
            assert key, (await child.communicate())[1].decode()
            kill_primary_of(key)
            child.stdin.write(b"killed\n")
            out, err = await asyncio.wait_for(child.communicate(), 90)
        finally:
            if child.returncode is None:
                child.kill()
                await child.communicate()
        assert child.returncode == 0, err.decode()
        result = json.loads(out)
        print(
            f"cache failover, {topology}: writes back {result['recovered']:.2f}s after SIGKILL of the primary"
        )
        # Fails open while the key has no primary: a miss, a skipped write, a counter that raises.
        assert (result["get"], result["set"], result.get("increment")) == (
            "miss",
            False,
            "CacheUnavailableError",
        )
        # Then serves again by itself.
        assert (result["after"], result["counter"]) == (3, 1)
        assert result["errors"] >= 3
