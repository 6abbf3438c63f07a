"""Failover: SIGKILL the primary holding a stream's slot while 1,000 events are published and consumed.

A private Redis Cluster (3 primaries, 1 replica each, ``cluster-node-timeout`` 2 s) per case; 8
publishers at once. The primary serving the stream's slot is SIGKILLed after 300 acknowledged
publishes; an operator's restart is simulated once its replica took over (the killed node rejoins
as the new primary's replica).
Reported per durability setting (a ``FAILOVER`` line): acknowledged publishes lost, duplicates,
publishes refused, events stored although their publish raised, and the time until publishing and
consuming worked again. With ``durability = "replicated"`` no acknowledged publish may be lost.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any, Literal

import anyio
import anyio.abc
import pytest
from kernel_eventbus import EventMetadata, PublishNotReplicatedError, PublishTimeoutError
from kernel_eventbus._redis import RedisEventBus
from kernel_redis import AnyRedis, connect
from kernel_redis.testing import (
    FAILOVER_ITEMS,
    FAILOVER_KILL_AT,
    FAILOVER_MARKS,
    FailoverRun,
    PrivateRedisCluster,
    PrivateRedisSentinel,
    close_dropped_cluster_connections,
    private_redis_cluster,
    private_redis_sentinel,
)

from kernel.testing import wait_until

pytestmark = FAILOVER_MARKS  # slow; redis-py drops connections to the killed node unclosed (#4053)
N, KILL_AT = FAILOVER_ITEMS, FAILOVER_KILL_AT
PUBLISHERS = 8
"""Publishes in flight at once (more writes the replica may not have when the primary dies)."""
EVENT = "failover.e"


Run = FailoverRun[int]
"""What one failover run saw of the events ``0..N-1`` and the end marker ``N`` (by number)."""


async def _settled(client: AnyRedis, bus: RedisEventBus, run: Run) -> bool:
    """The end marker was handled and nothing is pending in the group (entries delivered by the dead
    primary are reclaimed after ``visibility_timeout``)."""
    if N not in run.seen:
        return False
    return int((await client.xpending(bus.stream_key(EVENT), "g"))["pending"]) == 0


class Group:
    """A private cluster or sentinel group: its URL, and how to kill and restart the primary of a key."""

    def __init__(self, group: PrivateRedisCluster | PrivateRedisSentinel) -> None:
        self.group = group
        self.url = group.url

    def kill_primary_of(self, key: str) -> int:
        """SIGKILL the primary serving ``key`` (the master of a sentinel group); its port."""
        if isinstance(self.group, PrivateRedisCluster):
            return self.group.kill_primary_of(key)
        return self.group.kill_master()

    def wait_promoted(self, port: int) -> None:
        """Until a replica replaced the primary killed on ``port``."""
        if isinstance(self.group, PrivateRedisCluster):
            self.group.wait_promoted(port)
        else:
            self.group.wait_new_master(port)

    def revive(self, port: int) -> None:
        """Restart the killed node: it comes back as a replica."""
        self.group.revive(port)


@contextlib.contextmanager
def private_group(topology: str) -> Iterator[Group]:
    """A cluster of 3 primaries with a replica each (``cluster-node-timeout`` 2 s), or a sentinel group
    of a master, a replica and 3 sentinels (``down-after-milliseconds`` 1 s)."""
    if topology == "cluster":
        with private_redis_cluster(primaries=3, replicas=1, node_timeout_ms=2000) as cluster:
            yield Group(cluster)
    else:
        with private_redis_sentinel(replicas=1, sentinels=3) as sentinel:
            yield Group(sentinel)


@pytest.mark.parametrize("durability", ["default", "replicated"])
@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
async def test_sigkilled_primary_mid_stream(
    topology: str, durability: Literal["default", "replicated"], prefix: str
) -> None:
    run = Run()
    with private_group(topology) as cluster:
        client = connect(cluster.url, socket_timeout=2.0, socket_connect_timeout=0.5)
        blocking = connect(cluster.url, socket_timeout=4.0, socket_connect_timeout=0.5)
        bus = RedisEventBus(
            client,
            blocking_client=blocking,
            prefix=prefix,
            read_block=0.5,
            reconnect_max_delay=0.5,
            visibility_timeout=3.0,
            reclaim_interval=0.5,
            durability=durability,
            replication_timeout=1.0,
            publish_timeout=30.0,
        )

        async def handler(data: Any, meta: EventMetadata) -> None:
            run.read(data["n"])

        bus.subscribe(EVENT, handler, group="g")
        await bus.start()
        try:
            numbers = iter(range(N))
            async with anyio.create_task_group() as tg:
                for _ in range(PUBLISHERS):
                    tg.start_soon(_publisher, bus, cluster, numbers, run, tg)
            await _publish(bus, N, run)  # the end marker, after every event
            await wait_until(
                lambda: _settled(client, bus, run), 90, what="the end marker and no pending entry"
            )
        finally:
            await bus.close()
            await client.aclose()
            await blocking.aclose()
            await close_dropped_cluster_connections()

    events = set(range(N))
    lost = sorted((run.acked & events) - set(run.seen))
    duplicates = sum(c - 1 for c in run.seen.values() if c > 1)
    stored_anyway = len((set(run.seen) & events) - run.acked)
    print(
        f"\nFAILOVER {topology} durability={durability}: published={N} "
        f"acknowledged={len(run.acked & events)} "
        f"refused={dict(run.refused)} stored_although_refused={stored_anyway} lost_acknowledged={len(lost)} "
        f"duplicates={duplicates} replica_promoted_after={run.promoted:.2f}s "
        f"publish_recovered_after={run.write_back:.2f}s consume_recovered_after={run.read_back:.2f}s"
    )
    assert set(run.seen) <= events | {N}, "only published events are handled"
    assert run.write_back and run.read_back, "publishing and consuming recovered"
    assert len(run.acked & events) >= N - 100, "the bus kept publishing around the failover"
    if durability == "replicated":
        assert lost == [], f"acknowledged publishes lost with durability=replicated: {lost}"


async def _publisher(
    bus: RedisEventBus, cluster: Group, numbers: Iterator[int], run: Run, tg: anyio.abc.TaskGroup
) -> None:
    """Publish the next numbers; the one that sees ``KILL_AT`` acknowledged publishes kills the primary."""
    for n in numbers:
        if len(run.acked) >= KILL_AT and not run.killed_at:
            run.killed_at = time.monotonic()
            port = cluster.kill_primary_of(bus.stream_key(EVENT))
            tg.start_soon(_restart_after_failover, cluster, port, run)
        await _publish(bus, n, run)


async def _publish(bus: RedisEventBus, n: int, run: Run) -> None:
    started = run.writing(n)
    try:
        await bus.publish(EVENT, {"n": n})
    except (PublishTimeoutError, PublishNotReplicatedError) as exc:
        run.refused[type(exc).__name__] += 1
        return
    run.acknowledged(n, started)


async def _restart_after_failover(cluster: Group, port: int, run: Run) -> None:
    """Wait for a replica to take over, then restart the killed node (it rejoins as a replica)."""
    await anyio.to_thread.run_sync(cluster.wait_promoted, port)
    run.promoted = time.monotonic() - run.killed_at
    await anyio.to_thread.run_sync(cluster.revive, port)
