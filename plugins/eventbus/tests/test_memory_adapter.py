"""Memory adapter specifics: ordering, concurrency, join, unsubscribe and close with pending work."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from kernel_eventbus import EventMetadata, MemoryEventBus, RetryPolicy

from kernel.testing import wait_until

pytestmark = pytest.mark.anyio


async def test_one_worker_keeps_publish_order() -> None:
    bus = MemoryEventBus()
    seen: list[int] = []

    async def handler(data: Any, meta: EventMetadata) -> None:
        await asyncio.sleep(0.001 * (data % 3))
        seen.append(data)

    bus.subscribe("e", handler, group="g")
    for i in range(30):
        await bus.publish("e", i)
    await asyncio.wait_for(bus.join(), 5)
    assert seen == list(range(30))
    await bus.close()


async def test_concurrency_runs_handlers_in_parallel(probe: Any) -> None:
    bus = MemoryEventBus(concurrency=5)
    bus.subscribe("e", probe, group="g")
    for i in range(20):
        await bus.publish("e", i)
    await asyncio.wait_for(bus.join(), 5)
    assert probe.peak == 5
    await bus.close()


async def test_join_waits_for_scheduled_retries() -> None:
    bus = MemoryEventBus(policy=RetryPolicy(max_retries=2, base_delay=0.05))
    attempts: list[int] = []

    async def handler(data: Any, meta: EventMetadata) -> None:
        attempts.append(meta.attempt)
        if meta.attempt < 3:
            raise RuntimeError("again")

    bus.subscribe("e", handler, group="g")
    await bus.publish("e", 0)
    await asyncio.wait_for(bus.join(), 5)
    assert attempts == [1, 2, 3]
    await bus.close()


async def test_unsubscribe_drops_its_scheduled_retries() -> None:
    bus = MemoryEventBus(policy=RetryPolicy(max_retries=3, base_delay=0.05))
    attempts: list[int] = []

    async def handler(data: Any, meta: EventMetadata) -> None:
        attempts.append(meta.attempt)
        raise RuntimeError("fails")

    sub = bus.subscribe("e", handler, group="g")
    await bus.publish("e", 0)
    for _ in range(100):
        if attempts:
            break
        await asyncio.sleep(0.005)
    bus.unsubscribe(sub)
    await asyncio.wait_for(bus.join(), 1)
    await asyncio.sleep(0.1)
    assert attempts == [1]
    assert await bus.dead_letter_count() == 0
    await bus.close()


async def test_close_reports_what_is_lost(caplog: pytest.LogCaptureFixture) -> None:
    bus = MemoryEventBus(policy=RetryPolicy(base_delay=30))
    calls: list[int] = []

    async def handler(data: Any, meta: EventMetadata) -> None:
        calls.append(data)
        raise RuntimeError("retry in 30 s")

    bus.subscribe("e", handler, group="g")
    await bus.publish("e", 1)
    await bus.publish("e", 2)
    await wait_until(lambda: len(calls) == 2, what="both first attempts")  # both now await a retry
    with caplog.at_level(logging.WARNING, logger="kernel.plugins.eventbus"):
        await bus.close()
    assert "closed with 2 deliveries queued, running or awaiting retry; they are lost" in caplog.text
    await asyncio.wait_for(bus.join(), 1)


async def test_dlq_is_bounded() -> None:
    bus = MemoryEventBus(policy=RetryPolicy(max_retries=0), dlq_max_len=3)

    async def handler(data: Any, meta: EventMetadata) -> None:
        raise RuntimeError("x")

    bus.subscribe("e", handler, group="g")
    for i in range(5):
        await bus.publish("e", i)
    await asyncio.wait_for(bus.join(), 5)
    assert [e.data for e in await bus.get_dead_letter_queue()] == [4, 3, 2]
    await bus.close()


async def test_every_join_returns_when_idle_and_a_later_one_waits_for_new_work() -> None:
    bus = MemoryEventBus()
    gate = asyncio.Event()
    handled: list[int] = []

    async def handler(data: Any, meta: EventMetadata) -> None:
        await gate.wait()
        handled.append(data)

    bus.subscribe("e", handler, group="g")
    await asyncio.wait_for(bus.join(), 1)  # nothing outstanding: returns at once
    for round_ in (1, 2):
        await bus.publish("e", round_)
        joins = [asyncio.create_task(bus.join()) for _ in range(3)]
        await wait_until(lambda: bus._idle is not None, what="the joins to wait")
        assert not any(j.done() for j in joins)
        gate.set()
        await asyncio.wait_for(asyncio.gather(*joins), 5)
        assert handled[-1] == round_
        gate.clear()
    await bus.close()


async def test_close_releases_a_waiting_join() -> None:
    bus = MemoryEventBus(policy=RetryPolicy(base_delay=30))

    async def handler(data: Any, meta: EventMetadata) -> None:
        raise RuntimeError("retry in 30 s")

    bus.subscribe("e", handler, group="g")
    await bus.publish("e", 1)
    join = asyncio.create_task(bus.join())
    await wait_until(lambda: bus._idle is not None, what="the join to wait")
    await bus.close()
    await asyncio.wait_for(join, 1)
