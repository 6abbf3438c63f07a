"""Event bus: publish vs raw XADD, consume vs a raw XREADGROUP + XACK loop, memory adapter throughput.

Raw baselines do the same work without our layer: ``XADD`` of the JSON-encoded data
with the same trimming; a consumer-group loop reading ``COUNT`` entries, decoding
each payload, calling the handler and acknowledging the batch in one ``XACK``; an
``asyncio.Queue`` with one worker task for the in-process case. A private
redis-server is started for the run (or ``$REDIS_URL`` is used, with a unique prefix).

Targets (cost ratios): publish <= 1.10, consume batch 100 <= 1.10, memory <= 1.5.

Cluster cases (a private Redis Cluster of 3 primaries with 1 replica each is started for them;
``EVENTBUS_BENCH_CLUSTER=0`` skips them): publish and consume through a ``RedisCluster`` client vs
the same raw cluster calls (target 1.10 as on one server), and the cost of
``durability = "replicated"``: our replicated publish vs a raw ``XADD`` + ``WAIT 1`` pipelined on
the primary of the stream's slot, and vs our default publish (a cost, no target).

Otel cases (:mod:`benchmarks._eventbus_otel`): ``otel_publish``, ``otel_publish_unsampled``,
``otel_publish_handle`` (memory bus) and ``redis_otel_publish`` -- the same work with the otel plugin
tracing (``ours``) vs without it (``raw``); target 1.15, see that module.

Ceilings (raw, the same work at its best): ``xadd_pipelined`` -- XADDs of the same entry sent
1,000 per pipeline, µs per entry; ``xreadgroup_batch1000`` -- a consumer group reading
``COUNT 1000`` and acknowledging each batch with one XACK (no decoding, no handler), µs per
entry. Instruction mode (:func:`cpu_bound`) counts the memory case only; the client-side
instructions of ``publish_vs_xadd`` and ``consume_batch100_vs_xreadgroup_xack`` (what our layer
adds, whatever the machine's load) come from ``python -m benchmarks._eventbus_client_ir``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from typing import Any

import redis.asyncio as aioredis
from kernel_eventbus import EventMetadata, MemoryEventBus
from kernel_eventbus._redis import RedisEventBus
from kernel_redis import RedisServer

from ._harness import Early, acompare, acompare_batches, ceiling, emit, redis_server, rounds

DATA = {"user_id": "123", "email": "user@example.com", "plan": "pro", "tags": ["a", "b"]}


async def _noop(data: Any, meta: EventMetadata) -> None:
    return None


async def _consume_ours(client: aioredis.Redis, prefix: str, n: int, batch: int) -> float:
    bus = RedisEventBus(client, prefix=prefix, batch_size=batch, new_group_start="earliest", read_block=0.05)
    done = asyncio.Event()
    count = 0

    async def handler(data: Any, meta: EventMetadata) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    bus.subscribe("bench.consume", handler, group=f"g-{secrets.token_hex(4)}")
    t0 = time.perf_counter()
    await bus.start()
    await done.wait()
    # the last batch's acknowledgement is part of the work
    for _ in range(10_000):
        if not (await client.xpending(bus.stream_key("bench.consume"), bus.subscriptions[0].name))["pending"]:
            break
    elapsed = time.perf_counter() - t0
    await bus.close()
    await client.xgroup_destroy(bus.stream_key("bench.consume"), bus.subscriptions[0].name)
    return elapsed / n * 1e6


async def _consume_raw(client: aioredis.Redis, stream: str, n: int, batch: int) -> float:
    group = f"raw-{secrets.token_hex(4)}"
    await client.xgroup_create(stream, group, id="0")
    t0 = time.perf_counter()
    handled = 0
    while handled < n:
        resp = await client.xreadgroup(group, "c1", {stream: ">"}, count=batch, block=50)
        for _stream, entries in resp:
            ids = []
            for entry_id, fields in entries:
                await _noop(json.loads(fields[b"e"].partition(b"\n")[2]), None)  # type: ignore[arg-type]
                ids.append(entry_id)
            handled += len(ids)
            await client.xack(stream, group, *ids)
    elapsed = time.perf_counter() - t0
    await client.xgroup_destroy(stream, group)
    return elapsed / n * 1e6


async def _memory(quick: bool) -> None:
    """Memory adapter publish + delivery of a batch vs an ``asyncio.Queue`` with one worker."""
    bus = MemoryEventBus()
    bus.subscribe("bench.mem", _noop, group="g")
    queue: asyncio.Queue[str] = asyncio.Queue()
    batch = 1000

    async def worker() -> None:
        while True:
            body = await queue.get()
            await _noop(json.loads(body), None)  # type: ignore[arg-type]
            queue.task_done()

    async def ours() -> int:
        for _ in range(batch):
            await bus.publish("bench.mem", DATA)
        await bus.join()
        return batch

    async def raw() -> int:
        for _ in range(batch):
            queue.put_nowait(json.dumps(DATA))
        await queue.join()
        return batch

    task = asyncio.create_task(worker())
    try:
        res = await acompare_batches(
            "eventbus",
            "memory_publish_deliver_vs_asyncio_queue",
            ours,
            raw,
            rounds_=rounds(5, 3),
            calls=rounds(20, 5),
            target=1.5,
        )
    finally:
        task.cancel()
        await bus.close()
    if res.unit == "us" and res.ours_us != res.raw_us:
        print(
            f"  memory adapter: {1e6 / res.ours_us:,.0f} events/s published and handled "
            f"(asyncio.Queue baseline {1e6 / res.raw_us:,.0f}/s)"
        )


async def cpu_bound(quick: bool) -> None:
    """The CPU-bound cases (instruction mode): the memory adapter, then its otel cases."""
    await _memory(quick)
    from . import _eventbus_otel  # imported late: the cases above count as before

    await _eventbus_otel.memory(quick)


async def _ceilings(client: aioredis.Redis, prefix: str, consume_stream: str, n: int) -> None:
    """The raw best case of publishing (pipelined XADD) and consuming (batches of 1,000)."""
    stream = f"{prefix}:ceiling:xadd"
    body = json.dumps(DATA)
    per_pipe, pipes = 1000, rounds(5, 1)
    times: list[float] = []
    for _ in range(rounds(7, 3)):
        t0 = time.perf_counter()
        for _ in range(pipes):
            pipe = client.pipeline(transaction=False)
            for _ in range(per_pipe):
                pipe.xadd(stream, {"d": body}, maxlen=100_000, approximate=True)
            await pipe.execute()
        times.append((time.perf_counter() - t0) / (per_pipe * pipes) * 1e6)
    ceiling("eventbus", "xadd_pipelined", times)

    times = []
    for _ in range(rounds(5, 3)):
        group = f"ceil-{secrets.token_hex(4)}"
        await client.xgroup_create(consume_stream, group, id="0")
        read = 0
        t0 = time.perf_counter()
        while read < n:
            resp = await client.xreadgroup(group, "c1", {consume_stream: ">"}, count=1000, block=50)
            for _stream, entries in resp:
                read += len(entries)
                await client.xack(consume_stream, group, *[entry_id for entry_id, _ in entries])
        times.append((time.perf_counter() - t0) / n * 1e6)
        await client.xgroup_destroy(consume_stream, group)
    ceiling("eventbus", "xreadgroup_batch1000", times)


def _private_cluster() -> Early[Any]:
    """The cluster cases' private Redis Cluster (3 primaries, 1 replica each), started early in quick mode."""
    from kernel_redis.testing import private_redis_cluster

    return Early(private_redis_cluster(primaries=3, replicas=1))


async def _cluster(private: Early[Any], quick: bool) -> None:
    """Publish, consume and replicated publish on a private Redis Cluster (3 primaries, 1 replica each)."""
    from kernel_redis import connect

    prefix = f"bench-{secrets.token_hex(4)}"
    with private as cluster:
        client: Any = connect(cluster.url)
        try:
            await client.initialize()
            bus = RedisEventBus(client, prefix=prefix)
            replicated = RedisEventBus(client, prefix=prefix, durability="replicated", replicas=1)
            stream = bus.stream_key("bench.publish")
            node = client.get_node_from_key(stream)
            primary = aioredis.Redis(host=node.host, port=node.port)  # the slot's primary, for raw WAIT

            async def ours() -> None:
                await bus.publish("bench.publish", DATA)

            async def raw() -> None:
                await client.xadd(stream, {"d": json.dumps(DATA)}, maxlen=100_000, approximate=True)

            async def ours_replicated() -> None:
                await replicated.publish("bench.publish", DATA)

            async def raw_replicated() -> None:
                pipe = primary.pipeline(transaction=False)
                pipe.xadd(stream, {"d": json.dumps(DATA)}, maxlen=100_000, approximate=True)
                pipe.execute_command("WAIT", 1, 1000)
                await pipe.execute()

            ops, rounds_ = rounds(2000, 200), rounds(9, 5)
            await acompare(
                "eventbus", "cluster_publish_vs_xadd", ours, raw, ops=ops, rounds_=rounds_, target=1.10
            )
            await acompare(
                "eventbus",
                "cluster_publish_replicated_vs_xadd_wait",
                ours_replicated,
                raw_replicated,
                ops=ops,
                rounds_=rounds_,
                target=1.10,
            )
            cost = await acompare(
                "eventbus",
                "cluster_publish_replicated_vs_default",
                ours_replicated,
                ours,
                ops=ops,
                rounds_=rounds_,
            )
            if cost.unit == "us":
                print(
                    f"  durability=replicated: {cost.ours_us:.0f} µs per publish vs {cost.raw_us:.0f} µs "
                    f"(default), {cost.ours_us / cost.raw_us:.2f}x"
                )
            await primary.aclose()

            n, batch = rounds(10_000, 3_000), 100
            consume = bus.stream_key("bench.consume")
            pipe = client.pipeline(transaction=False)
            body = json.dumps(DATA)
            for i in range(n):
                pipe.xadd(consume, {"e": f"1\tbench-{i}\t2026-01-01T00:00:00.000Z\tt\t\n{body}"})
            await pipe.execute()
            o: list[float] = []
            r: list[float] = []
            await _consume_ours(client, prefix, n, batch)  # warm-up
            await _consume_raw(client, consume, n, batch)
            for i in range(rounds(7, 3)):
                if i % 2:
                    r.append(await _consume_raw(client, consume, n, batch))
                    o.append(await _consume_ours(client, prefix, n, batch))
                else:
                    o.append(await _consume_ours(client, prefix, n, batch))
                    r.append(await _consume_raw(client, consume, n, batch))
            emit("eventbus", f"cluster_consume_batch{batch}_vs_xreadgroup_xack", o, r, target=1.10)
        finally:
            await client.aclose()


async def run(quick: bool) -> None:
    external = os.environ.get("REDIS_URL")
    server = None if external else RedisServer().start()
    url = external or server.url  # type: ignore[union-attr]
    prefix = f"bench-{secrets.token_hex(4)}"
    client = aioredis.Redis.from_url(url)
    clustered = os.environ.get("EVENTBUS_BENCH_CLUSTER", "1") != "0"
    cluster = _private_cluster() if clustered else None  # quick mode: forms while the cases below run
    try:
        await redis_server("eventbus", client)
        bus = RedisEventBus(client, prefix=prefix)
        stream = bus.stream_key("bench.publish")

        async def ours() -> None:
            await bus.publish("bench.publish", DATA)

        async def raw() -> None:
            await client.xadd(stream, {"d": json.dumps(DATA)}, maxlen=100_000, approximate=True)

        await acompare(
            "eventbus", "publish_vs_xadd", ours, raw, ops=rounds(2000, 400), rounds_=rounds(9, 5), target=1.10
        )

        n, batch = rounds(10_000, 5_000), 100
        pipe = client.pipeline(transaction=False)
        body = json.dumps(DATA)
        for i in range(n):
            pipe.xadd(
                bus.stream_key("bench.consume"), {"e": f"1\tbench-{i}\t2026-01-01T00:00:00.000Z\tt\t\n{body}"}
            )
        await pipe.execute()
        o: list[float] = []
        r: list[float] = []
        await _consume_ours(client, prefix, n, batch)  # warm-up
        await _consume_raw(client, bus.stream_key("bench.consume"), n, batch)
        for i in range(rounds(7, 3)):
            if i % 2:
                r.append(await _consume_raw(client, bus.stream_key("bench.consume"), n, batch))
                o.append(await _consume_ours(client, prefix, n, batch))
            else:
                o.append(await _consume_ours(client, prefix, n, batch))
                r.append(await _consume_raw(client, bus.stream_key("bench.consume"), n, batch))
        result = emit("eventbus", f"consume_batch{batch}_vs_xreadgroup_xack", o, r, target=1.10)
        print(
            f"  consume throughput: ours {1e6 / result.ours_us:,.0f} events/s, raw "
            f"{1e6 / result.raw_us:,.0f} events/s ({result.raw_us / result.ours_us:.2f}x of raw)"
        )
        await _ceilings(client, prefix, bus.stream_key("bench.consume"), n)

        await _memory(quick)
        from . import _eventbus_otel  # the otel cases, last and imported late: the others run as before

        await _eventbus_otel.memory(quick)
        await _eventbus_otel.redis_publish(url, prefix, quick)
        if cluster is not None:
            await _cluster(cluster, quick)
    finally:
        if cluster is not None:
            cluster.close()
        for pattern in (f"{prefix}:*", f"{{{prefix}*"):  # the bus's keys carry {prefix:event} hash tags
            keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
            if keys:
                await client.delete(*keys)
        await client.aclose()
        if server is not None:
            server.close()
