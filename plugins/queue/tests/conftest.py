"""Fixtures: a private redis-server (kernel_redis.testing), a booted kernel with a QueueManager."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from kernel_queue import QueueManager, queue_tag
from kernel_queue._manager import QUEUES_KEY
from kernel_queue.testing import FAST_TIMERS
from kernel_redis import AnyRedis, connect
from kernel_redis.testing import (  # noqa: F401
    redis_cluster,
    redis_keys_left_behind,
    redis_server,
    redis_topology,
    redis_url,
)
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from kernel.testing import boot_kernel


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def subscribers(client: AnyRedis, channel: str) -> int:
    """``PUBSUB NUMSUB channel``; on a cluster ``PUBSUB SHARDNUMSUB`` (the queue's events are a shard
    channel there), summed over every node (each counts its own)."""
    if isinstance(client, RedisCluster):
        await client.initialize()
        try:
            counts = [
                (await client.execute_command("PUBSUB", "SHARDNUMSUB", channel, target_nodes=node))[1]
                for node in client.get_nodes()
            ]
        except ResponseError:  # Redis < 7: no shard channels, the queue subscribes classically on a node
            counts = [
                (await client.execute_command("PUBSUB", "NUMSUB", channel, target_nodes=node))[1]
                for node in client.get_nodes()
            ]
        return sum(int(c) for c in counts)
    ((_, count),) = await client.pubsub_numsub(channel)
    return int(count)


async def wait_subscribed(manager: QueueManager, qname: str, within: float = 10.0) -> None:
    """Wait until something subscribes to ``qname``'s event channel (``PUBSUB NUMSUB``), not a fixed sleep."""
    channel = manager.get_queue(qname).events_channel
    with anyio.fail_after(within):
        while True:
            if await subscribers(manager.redis, channel):
                return
            await anyio.sleep(0.01)


async def publish_after_events(manager: QueueManager, qname: str, message: str) -> None:
    """Publish ``message`` on ``qname``'s event channel from the node of the queue's slot.

    The queue's scripts publish its events there: a message published after them arrives after
    them (from another cluster node it could overtake them).
    """
    q = manager.get_queue(qname)
    script = "redis.call('PUBLISH', ARGV[1], ARGV[2])"
    if q.sharded_events:  # as the queue's scripts do: SPUBLISH, PUBLISH on a Redis < 7
        script = "if not pcall(redis.call, 'SPUBLISH', ARGV[1], ARGV[2]) then " + script + " end"
    await manager.redis.eval(script, 1, q.keys.events, q.events_channel, message)


@pytest.fixture
def subscribed() -> Callable[[QueueManager, str], Awaitable[None]]:
    """:func:`wait_subscribed` for tests (test modules cannot import conftest under importlib mode)."""
    return wait_subscribed


@pytest.fixture
def barrier() -> Callable[[QueueManager, str, str], Awaitable[None]]:
    """:func:`publish_after_events` for tests."""
    return publish_after_events


@pytest.fixture
def fast_config() -> dict[str, Any]:
    return dict(FAST_TIMERS)


async def delete_queue_keys(url: str, qname: str) -> None:
    """Remove every key of queue ``qname`` (SAQ's sets and job records, the fault tests' run log)."""
    client = connect(url)
    tag = queue_tag(qname)
    patterns = (f"saq:{tag}:*", f"saq:job:{tag}:*", f"saq:abort:{tag}:*", f"kqtest:{qname}:*")
    try:
        for pattern in patterns:
            keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
            for i in range(0, len(keys), 500):
                await client.delete(*keys[i : i + 500])
        await client.srem(QUEUES_KEY, qname)
    finally:
        await client.aclose()


@pytest.fixture
def delete_keys() -> Callable[[str, str], Awaitable[None]]:
    """:func:`delete_queue_keys` for tests."""
    return delete_queue_keys


@pytest.fixture
async def qname(redis_url: str) -> AsyncIterator[str]:  # noqa: F811
    """A fresh queue name per test (no flushing of a server the tests may share); its keys are removed after.

    Fixtures that run workers on the queue take ``qname`` so that they stop before this cleanup.
    """
    name = f"kqtest{uuid.uuid4().hex[:10]}"
    yield name
    await delete_queue_keys(redis_url, name)


@pytest.fixture
async def manager(
    redis_url: str,  # noqa: F811
    fast_config: dict[str, Any],
    qname: str,
) -> AsyncIterator[QueueManager]:
    """A booted kernel's manager, shut down (workers stopped) before ``qname``'s keys are removed."""
    async with boot_kernel("redis", "queue", config={"redis": {"url": redis_url}, "queue": fast_config}) as k:
        yield k.get(QueueManager)
