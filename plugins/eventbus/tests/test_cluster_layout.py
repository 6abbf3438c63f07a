"""Key layout and durability on every topology: one hash slot per stream, streams spread, WAIT.

Runs on the ``redis_url`` topology (standalone, cluster or sentinel; ``KERNEL_REDIS_TOPOLOGIES``).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest
from kernel_eventbus import EventMetadata, NonRetryableError, PublishNotReplicatedError, RetryPolicy
from kernel_eventbus._keys import LegacyKeyLayout, check_prefix, retry_key, schedule_key, stream_key
from kernel_eventbus._redis import RedisEventBus
from kernel_redis import AnyRedis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from kernel.testing import boot_kernel

pytestmark = pytest.mark.anyio


def topology(url: str) -> str:
    """``standalone``, ``cluster`` or ``sentinel``, from the URL's scheme."""
    scheme = urlsplit(url).scheme
    return scheme.split("+", 1)[1] if "+" in scheme else "standalone"


async def test_every_key_of_a_stream_shares_one_slot_and_streams_spread(
    client: AnyRedis, prefix: str, wait: Any
) -> None:
    """12 streams with a retry, a scheduled retry and a dead letter each: every key of one stream
    (stream, retry stream, schedule, DLQ and its index) sits in that stream's slot; on a cluster
    the 12 streams' keys live on at least 2 of the 3 primaries."""
    bus = RedisEventBus(
        client, prefix=prefix, read_block=0.2, policy=RetryPolicy(max_retries=1, base_delay=30)
    )
    failed: Counter[str] = Counter()

    async def fails(data: Any, meta: EventMetadata) -> None:
        failed[meta.event_name] += 1
        if data["dead"]:
            raise NonRetryableError("to the DLQ")
        raise RuntimeError("retried in 30 s: stays scheduled")

    events = [f"order.{n}" for n in range(12)]
    for event in events:
        bus.subscribe(event, fails, group=f"g-{event}")
    await bus.start()
    try:
        for event in events:
            await bus.publish(event, {"dead": False})
            await bus.publish(event, {"dead": True})
        await wait(lambda: len(failed) == 12 and all(v == 2 for v in failed.values()), what="24 failures")
        await wait(lambda: _dlq_size(bus, 12), what="12 dead letters")
        await bus.replay_from_dlq((await bus.get_dead_letter_queue(1))[0].event_id)  # fills a retry stream
    finally:
        await bus.close()

    keys = [k.decode() async for k in client.scan_iter(match=f"{{{prefix}:*", count=1000)]
    by_stream: dict[str, set[int]] = {}
    for key in keys:
        by_stream.setdefault(key.partition("}")[0] + "}", set()).add(key_slot(key.encode()))
    assert set(by_stream) == {"{" + f"{prefix}:{e}" + "}" for e in events}
    assert all(len(slots) == 1 for slots in by_stream.values()), by_stream
    kinds = Counter(key.partition("}:")[2].split(":")[0] for key in keys)
    assert kinds["stream"] == 12 and kinds["schedule"] == 12 and kinds["dlq"] == 24, kinds
    assert kinds["retry"] >= 12
    if isinstance(client, RedisCluster):
        holding = {}
        for node in client.get_primaries():
            n = len(await client.keys(f"{{{prefix}:*", target_nodes=node))  # type: ignore[call-arg]
            holding[node.name] = n
        print(f"\nCLUSTER spread: keys of 12 streams per primary {holding}")
        assert sum(holding.values()) == len(keys)
        assert sum(1 for n in holding.values() if n) >= 2, holding


async def _dlq_size(bus: RedisEventBus, n: int) -> bool:
    return await bus.dead_letter_count() >= n


async def test_replicated_durability_waits_for_a_replica_or_says_it_did_not(
    redis_url: str, client: AnyRedis, prefix: str
) -> None:
    """``durability = "replicated"``: a publish returns once a replica has the event; asking for more
    replicas than exist raises ``PublishNotReplicatedError`` after ``replication_timeout``, and the
    event is on the primary anyway (as the error says)."""
    too_many = RedisEventBus(
        client, prefix=prefix, durability="replicated", replicas=5, replication_timeout=0.2
    )
    t0 = time.perf_counter()
    with pytest.raises(PublishNotReplicatedError) as caught:
        await too_many.publish("paid", {"n": 1})
    waited = time.perf_counter() - t0
    error = caught.value
    assert error.wanted == 5 and error.acknowledged < 5 and waited >= 0.19
    assert "stored on the primary only" in str(error) and "plugins.eventbus.replicas" in str(error)
    [(_id, fields)] = await client.xrange(stream_key(prefix, "paid"))
    assert f"\t{error.event_id}\t".encode() in fields[b"e"], "the event is on the primary"

    config = {
        "redis": {"url": redis_url},
        "eventbus": {
            "adapter": "redis",
            "prefix": prefix,
            "durability": "replicated",
            "replication_timeout": 2.0,
        },
    }
    async with boot_kernel("redis", "eventbus", config=config) as k:
        bus = k.registry.get(RedisEventBus)
        if topology(redis_url) == "standalone":  # no replica to wait for
            with pytest.raises(PublishNotReplicatedError, match="0 of 1 replica"):
                await bus.publish("paid", {"n": 2})
        else:  # cluster and sentinel groups have a replica per primary
            meta = await bus.publish("paid", {"n": 2})
            assert meta.event_id
    assert await client.xlen(stream_key(prefix, "paid")) == 2


def test_a_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ValueError, match="hash tag"):
        check_prefix("app{1}")


def test_the_legacy_layout_maps_streams_and_known_subscriptions() -> None:
    layout = LegacyKeyLayout("app", {"billing": "order.paid"})
    assert layout.owner == "eventbus"
    assert layout.legacy_patterns() == ["app:stream:*", "app:retry:*", "app:schedule:*"]
    assert layout.new_name("app:stream:order.paid") == "{app:order.paid}:stream"
    assert layout.new_name("app:retry:billing") == retry_key("app", "order.paid", "billing")
    assert layout.new_name("app:schedule:billing") == schedule_key("app", "order.paid", "billing")
    assert layout.new_name("app:retry:unknown") is None, "the bus moves those when the subscription starts"
    assert layout.new_name("app:dlq") is None
    assert layout.new_name("other:stream:x") is None
