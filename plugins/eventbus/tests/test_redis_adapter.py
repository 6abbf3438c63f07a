"""Redis Streams specifics on a real server: persisted retries, reclaim, poison entries, groups, trimming."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import types
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from kernel_eventbus import EventMetadata, RetryPolicy
from kernel_eventbus._keys import retry_key, schedule_key
from kernel_eventbus._redis import RedisEventBus
from kernel_redis import AnyRedis, connect
from kernel_redis.testing import private_redis_server

from kernel.testing import wait_until

pytestmark = pytest.mark.anyio


def make(client: AnyRedis, prefix: str, **kw: Any) -> RedisEventBus:
    kw.setdefault("read_block", 0.2)
    return RedisEventBus(client, prefix=prefix, **kw)


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def _unacked(client: AnyRedis, stream: str, group: str, expected: int) -> bool:
    """Whether ``group`` has ``expected`` delivered-but-unacknowledged entries on ``stream``."""
    return bool((await client.xpending(stream, group))["pending"] == expected)


async def test_a_scheduled_retry_survives_the_process(client: AnyRedis, prefix: str, wait: Any) -> None:
    calls: list[int] = []

    async def fails_first(data: Any, meta: EventMetadata) -> None:
        calls.append(meta.attempt)
        raise RuntimeError("first process dies before retrying")

    first = make(client, prefix, policy=RetryPolicy(base_delay=0.5))
    first.subscribe("e", fails_first, group="g")
    await first.start()
    meta = await first.publish("e", {"k": 1})
    await wait(lambda: calls == [1])
    schedule = schedule_key(prefix, "e", "g")
    await wait_until(lambda: _equals(client.zcard(schedule), 1), what="the scheduled retry")
    await first.close()
    assert await client.zcard(schedule) == 1, "the retry lives in Redis, not in the process"

    got: list[EventMetadata] = []

    async def works(data: Any, meta: EventMetadata) -> None:
        got.append(meta)

    second = make(client, prefix)
    second.subscribe("e", works, group="g")
    await second.start()
    try:
        await wait(lambda: len(got) == 1, what="the retry, by the next process")
    finally:
        await second.close()
    assert got[0].event_id == meta.event_id
    assert got[0].attempt == 2
    assert await client.zcard(schedule_key(prefix, "e", "g")) == 0
    assert await client.xlen(retry_key(prefix, "e", "g")) == 0, "acknowledged re-deliveries are deleted"


async def test_entries_of_a_dead_consumer_are_reclaimed(client: AnyRedis, prefix: str, wait: Any) -> None:
    bus = make(client, prefix, visibility_timeout=0.3, reclaim_interval=0.1)
    got: list[Any] = []

    async def handler(data: Any, meta: EventMetadata) -> None:
        got.append(data)

    stream = bus.stream_key("e")
    await client.xgroup_create(stream, "g", id="0", mkstream=True)
    await bus.publish("e", {"n": 1})
    # a consumer reads it and dies without acknowledging
    assert await client.xreadgroup("g", "dead-consumer", {stream: ">"}, count=10)
    bus.subscribe("e", handler, group="g")
    await bus.start()
    try:
        await wait(lambda: got == [{"n": 1}], what="reclaim after the visibility timeout")
        await wait_until(lambda: _unacked(client, stream, "g", 0), what="the reclaimed entry's ack")
    finally:
        await bus.close()


async def test_an_entry_delivered_too_often_is_dead_lettered(client: AnyRedis, prefix: str) -> None:
    bus = make(client, prefix, visibility_timeout=0.1, reclaim_interval=0.05, max_deliveries=2)
    stream = bus.stream_key("e")
    await client.xgroup_create(stream, "g", id="0", mkstream=True)
    await bus.publish("e", {"crash": "loop"})
    # two consumers took it and died: delivered twice, never acknowledged
    ((_s, ((entry_id, _f),)),) = await client.xreadgroup("g", "dead-0", {stream: ">"})
    await client.xclaim(stream, "g", "dead-1", 0, [entry_id])
    calls: list[int] = []

    async def handler(data: Any, meta: EventMetadata) -> None:
        calls.append(1)

    bus.subscribe("e", handler, group="g")
    await bus.start()
    try:
        for _ in range(200):
            if await bus.dead_letter_count():
                break
            await asyncio.sleep(0.02)
        (entry,) = await bus.get_dead_letter_queue()
    finally:
        await bus.close()
    assert entry.error_type == "kernel_eventbus._errors.DeliveryLimitError"
    assert "delivered 3 times" in entry.error_message
    assert calls == [], "a crash-looping entry is not handed to the handler again"


async def test_undecodable_entries_go_to_the_dlq_without_blocking(
    client: AnyRedis, prefix: str, wait: Any, probe: Any
) -> None:
    bus = make(client, prefix)
    bus.subscribe("e", probe, group="g")  # records what it is handed
    await bus.start()
    try:
        await client.xadd(bus.stream_key("e"), {"e": "1\tx1\tt\t\t\n{not json"})
        await client.xadd(bus.stream_key("e"), {"foreign": "producer"})
        await bus.publish("e", {"ok": True})
        await wait(lambda: probe.done == [{"ok": True}])
        for _ in range(100):
            if await bus.dead_letter_count() == 2:
                break
            await asyncio.sleep(0.02)
        dlq = await bus.get_dead_letter_queue()
    finally:
        await bus.close()
    assert sorted(e.error_type for e in dlq) == ["kernel_eventbus._errors.UndecodableEventError"] * 2
    assert {e.event_id for e in dlq} >= {"x1"}
    assert any(e.data == {"foreign": "producer"} for e in dlq)


async def test_processes_in_one_group_share_the_work(
    redis_url: str, prefix: str, wait: Any, client: AnyRedis
) -> None:
    # ``client`` removes the streams and groups under ``prefix`` after the test.
    clients = [connect(redis_url) for _ in range(3)]
    seen: dict[str, list[str]] = {"a": [], "b": [], "audit": []}

    def handler(tag: str) -> Any:
        async def handle(data: Any, meta: EventMetadata) -> None:
            seen[tag].append(meta.event_id)
            await asyncio.sleep(0.001)

        return handle

    a, b = make(clients[0], prefix, batch_size=5), make(clients[1], prefix, batch_size=5)
    a.subscribe("job", handler("a"), group="workers")
    b.subscribe("job", handler("b"), group="workers")
    audit = make(clients[2], prefix)
    audit.subscribe("job", handler("audit"), group="audit")
    for bus in (a, b, audit):
        await bus.start()
    try:
        ids = [(await a.publish("job", i)).event_id for i in range(200)]
        await wait(lambda: len(seen["a"]) + len(seen["b"]) == 200 and len(seen["audit"]) == 200)
        for group in ("workers", "audit"):  # all acknowledged: nothing is left to deliver again
            await wait_until(
                lambda g=group: _unacked(client, a.stream_key("job"), g, 0), what=f"{group} acks"
            )
    finally:
        for bus in (a, b, audit):
            await bus.close()
        for c in clients:
            await c.aclose()
    assert sorted(seen["a"] + seen["b"]) == sorted(ids), "each event once per subscription"
    assert seen["a"] and seen["b"], "both processes got work"
    assert sorted(seen["audit"]) == sorted(ids)


async def test_streams_are_trimmed_to_about_stream_maxlen(client: AnyRedis, prefix: str) -> None:
    bus = make(client, prefix, stream_maxlen=100)
    for i in range(1000):
        await bus.publish("t", i)
    length = await client.xlen(bus.stream_key("t"))
    assert 100 <= length < 300


async def test_an_unsubscribed_loop_ends_even_if_its_cancel_was_lost(client: AnyRedis, prefix: str) -> None:
    """A cancel that meets a read's own timeout can come out as a TimeoutError (asyncio on 3.11): the
    loop of a removed subscription must still end, and not hand what it reads next to the handler."""
    bus = make(client, prefix)
    calls: list[Any] = []

    async def handler(data: Any, meta: EventMetadata) -> None:
        calls.append(data)

    sub = bus.subscribe("u", handler, group="gu")
    await bus.start()
    try:
        await bus.publish("u", 1)
        await wait_until(lambda: calls == [1], 10, what="the first event handled")
        state = bus._states[sub.name]
        loop_task = state.task
        assert loop_task is not None
        state.task = types.SimpleNamespace(cancel=lambda: None)  # type: ignore[assignment]  # the lost cancel
        assert bus.unsubscribe(sub)
        await bus.publish("u", 2)
        await wait_until(loop_task.done, 10, what="the removed subscription's loop to end by itself")
        assert calls == [1]
        # what it may have read stays pending for the group: nothing is lost
        stream = bus.stream_key("u")
        await wait_until(
            lambda: _unacked_or_unread(client, stream, "gu"), 10, what="event 2 kept for the group"
        )
    finally:
        await bus.close()


async def _unacked_or_unread(client: AnyRedis, stream: str, group: str) -> bool:
    """Whether ``group`` still has an entry to deliver: pending (delivered, unacknowledged) or unread."""
    info = {g["name"]: g for g in await client.xinfo_groups(stream)}[group.encode()]
    ((last_id, _fields),) = await client.xrevrange(stream, count=1)  # (XINFO's "lag" is Redis >= 7)
    return bool(info["pending"]) or info["last-delivered-id"] != last_id


async def test_published_entry_layout(client: AnyRedis, prefix: str) -> None:
    bus = make(client, prefix)
    meta = await bus.publish("user.created", {"id": "1"}, source="svc", trace_id="t1")
    ((_id, fields),) = await client.xrange(bus.stream_key("user.created"))
    head = f"1\t{meta.event_id}\t{meta.timestamp}\tt1\tsvc"
    assert fields == {b"e": f"{head}\n{json.dumps({'id': '1'}, separators=(',', ':'))}".encode()}


async def test_replay_works_from_a_process_without_the_subscription(
    client: AnyRedis, prefix: str, wait: Any
) -> None:
    failing = {"on": True}
    got: list[EventMetadata] = []

    async def handler(data: Any, meta: EventMetadata) -> None:
        if failing["on"]:
            raise RuntimeError("down")
        got.append(meta)

    worker = make(client, prefix, policy=RetryPolicy(max_retries=0))
    worker.subscribe("e", handler, group="g")
    await worker.start()
    try:
        meta = await worker.publish("e", 1)
        for _ in range(100):
            if await worker.dead_letter_count():
                break
            await asyncio.sleep(0.02)
        failing["on"] = False
        operator = make(client, prefix)  # e.g. `kernel dlq replay` in another process
        assert await operator.replay_from_dlq(meta.event_id) == 1
        await wait(lambda: len(got) == 1)
    finally:
        await worker.close()
    assert got[0].replayed_at is not None
    assert got[0].event_id == meta.event_id


async def test_pending_reports_the_backlog_of_a_subscription(client: AnyRedis, prefix: str) -> None:
    bus = make(client, prefix, policy=RetryPolicy(base_delay=60))
    failed = asyncio.Event()

    async def handler(data: Any, meta: EventMetadata) -> None:
        failed.set()
        raise RuntimeError("retry in a minute")

    bus.subscribe("e", handler, group="g")
    await bus.start()
    try:
        await bus.publish("e", 1)
        await asyncio.wait_for(failed.wait(), 5)
        for _ in range(100):
            if (await bus.pending("g"))["scheduled"] == 1:
                break
            await asyncio.sleep(0.02)
        assert await bus.pending("g") == {"lag": 0, "pending": 0, "scheduled": 1}
    finally:
        await bus.close()
    await client.xgroup_create(bus.stream_key("e"), "other", id="0")
    assert (await bus.pending("other"))["scheduled"] == 0


@pytest.mark.standalone_only  # stops or hangs its own private server
async def test_redis_outage_backs_off_without_spinning(
    prefix: str, caplog: pytest.LogCaptureFixture, wait: Any
) -> None:
    with private_redis_server() as server:
        c = aioredis.Redis.from_url(server.url, socket_connect_timeout=0.5)
        got: list[Any] = []

        async def handler(data: Any, meta: EventMetadata) -> None:
            got.append(data)

        bus = make(c, prefix, reconnect_max_delay=0.4)
        bus.subscribe("e", handler, group="g")
        await bus.start()
        try:
            with caplog.at_level(logging.WARNING, logger="kernel.plugins.eventbus"):
                await anyio.to_thread.run_sync(server.stop)
                cpu0, t0 = time.process_time(), time.monotonic()
                await asyncio.sleep(2.0)
                cpu = time.process_time() - cpu0
                elapsed = time.monotonic() - t0
                await anyio.to_thread.run_sync(server.start)
                await bus.publish("e", "after")  # a server without persistence: the group is recreated
                await wait(lambda: got == ["after"], within=10, what="consumption after the outage")
        finally:
            await bus.close()
            await c.aclose()
    print(f"\nOUTAGE: {elapsed:.1f}s down, consumer loop used {cpu * 1000:.0f} ms CPU")
    assert cpu < 0.3 * elapsed, "the consumer loop must back off, not spin"
    assert caplog.text.count("lost Redis") == 1
    assert "reconnected to Redis" in caplog.text


async def test_concurrency_handles_a_batch_in_parallel(
    client: AnyRedis, prefix: str, wait: Any, probe: Any
) -> None:
    bus = make(client, prefix, concurrency=4)
    bus.subscribe("e", probe, group="g")
    await bus.start()
    try:
        for i in range(16):
            await bus.publish("e", i)
        await wait(lambda: len(probe.done) == 16)
        await wait_until(lambda: _unacked(client, bus.stream_key("e"), "g", 0), what="every ack")
    finally:
        await bus.close()
    assert sorted(probe.done) == list(range(16))
    assert 2 <= probe.peak <= 4


async def test_close_cancels_a_handler_still_running_after_the_grace(client: AnyRedis, prefix: str) -> None:
    bus = make(client, prefix)
    started: list[Any] = []
    cancelled: list[Any] = []

    async def handler(data: Any, meta: EventMetadata) -> None:
        started.append(data)
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(data)
            raise

    bus.subscribe("slow", handler, group="gs")
    await bus.start()
    await bus.publish("slow", 1)
    await wait_until(lambda: started == [1], 10, what="the handler to start")
    t0 = time.monotonic()
    with anyio.fail_after(10):
        await bus.close(grace=0.1)
    assert time.monotonic() - t0 < 5  # read_block 0.2 + grace 0.1, not the handler's forever
    assert cancelled == [1]
    # not acknowledged: delivered again later
    await wait_until(lambda: _unacked(client, bus.stream_key("slow"), "gs", 1), 10, what="the entry pending")
