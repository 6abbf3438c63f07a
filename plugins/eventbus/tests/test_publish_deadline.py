"""Bounded publish: one deadline over every retry, backoff and socket wait, and what a timeout means.

The Redis tests run a private ``redis-server`` that they stop (SIGSTOP: alive but silent, or a
real stop: connection refused). The bus is built as the plugins build it, so the redis plugin's
client defaults apply (5 s socket timeout, 3 retries) -- the settings under which a publish to a
hung server used to take 20 s. Figures are printed; run with ``pytest -s`` to see them.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from kernel_eventbus import (
    EventBusConfig,
    EventBusError,
    EventDataError,
    EventMetadata,
    MemoryEventBus,
    PublishTimeoutError,
    build_bus,
)
from kernel_eventbus._redis import RedisEventBus
from kernel_redis import RedisConfig, RedisConnection
from kernel_redis.testing import private_redis_server
from redis import exceptions as rexc

import kernel
from kernel import Secret
from kernel.testing import make_kernel

pytestmark = pytest.mark.anyio

SLACK = 2.0
"""Seconds a deadline may be overrun on a loaded 2-core CI machine."""


@asynccontextmanager
async def plugin_bus(
    url: str, prefix: str, **settings: Any
) -> AsyncIterator[tuple[RedisEventBus, aioredis.Redis]]:
    """A started Redis bus and its client, built by the plugins' own code from default settings."""
    conn = RedisConnection(Secret(url), RedisConfig(url=Secret(url)))
    bus = build_bus(EventBusConfig(adapter="redis", prefix=prefix, **settings), redis_connection=conn)
    assert isinstance(bus, RedisEventBus)
    await bus.start()
    try:
        yield bus, conn.client
    finally:
        await bus.close()
        keys = [k async for k in conn.client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await conn.client.delete(*keys)
        await conn.aclose()


async def copies(client: aioredis.Redis, bus: RedisEventBus, event: str, event_id: str) -> int:
    """How many entries of ``event``'s stream carry ``event_id`` (the id is the header's second field)."""
    entries = await client.xrange(bus.stream_key(event))
    return sum(1 for _id, fields in entries if fields[b"e"].split(b"\t", 2)[1].decode() == event_id)


async def poll(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    """Poll ``check`` every 20 ms; fail with ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


async def timed_publish(
    bus: RedisEventBus, event: str, data: Any, **kwargs: Any
) -> tuple[PublishTimeoutError, float]:
    """Publish, expecting a timeout; the error and the seconds it took."""
    t0 = time.perf_counter()
    with pytest.raises(TimeoutError) as info:  # a builtin TimeoutError, whatever the adapter
        await bus.publish(event, data, **kwargs)
    elapsed = time.perf_counter() - t0
    assert isinstance(info.value, PublishTimeoutError), repr(info.value)
    return info.value, elapsed


@pytest.mark.slow
@pytest.mark.standalone_only  # stops or hangs its own private server
async def test_hung_redis_publish_ends_at_the_default_deadline_and_may_be_stored(prefix: str) -> None:
    with private_redis_server() as server:
        assert server.pid is not None
        async with plugin_bus(server.url, prefix) as (bus, client):
            assert bus.publish_timeout == 10.0
            await bus.publish("order.placed", {"n": 0})  # a pooled connection to the healthy server
            os.kill(server.pid, signal.SIGSTOP)  # alive, accepting bytes, answering nothing
            try:
                error, elapsed = await timed_publish(bus, "order.placed", {"n": 1})
            finally:
                os.kill(server.pid, signal.SIGCONT)
            print(f"\nHUNG: publish raised {type(error).__name__} after {elapsed:.2f}s (deadline 10 s)")
            assert 10.0 * 0.9 < elapsed < 10.0 + SLACK
            assert error.may_be_stored is True
            assert error.event == "order.placed"
            assert (
                "MAY HAVE BEEN STORED (it was sent and no reply came in time; last error: TimeoutError"
                in str(error)
            )
            assert error.event_id in str(error)
            assert error.metadata.event_id == error.event_id
            # What the error said: the XADD had reached the stopped server, which applies it on resuming.
            await poll(
                lambda: _is(copies(client, bus, "order.placed", error.event_id), 1),
                10,
                "the timed-out XADD to be applied after SIGCONT",
            )
            # The same pool serves again, and no connection in it answers with the late XADD reply:
            # 20 concurrent INCRs (as many pooled connections) each get their own count.
            meta = await bus.publish("order.placed", {"n": 2})
            assert await copies(client, bus, "order.placed", meta.event_id) == 1
            counts = await asyncio.gather(*(client.incr(f"{prefix}:n") for _ in range(20)))
            assert sorted(counts) == list(range(1, 21))
            assert await copies(client, bus, "order.placed", error.event_id) == 1


@pytest.mark.standalone_only  # stops or hangs its own private server
async def test_a_caller_cancelling_mid_xadd_leaves_the_pool_clean(prefix: str) -> None:
    with private_redis_server() as server:
        assert server.pid is not None
        async with plugin_bus(server.url, prefix) as (bus, client):
            await bus.publish("order.placed", {"n": 0})
            os.kill(server.pid, signal.SIGSTOP)
            try:
                with anyio.move_on_after(1.0) as scope:  # e.g. a request's own deadline
                    await bus.publish("order.placed", {"n": 1}, timeout=30)
            finally:
                os.kill(server.pid, signal.SIGCONT)
            assert scope.cancelled_caught
            # the late XADD reply went nowhere: every pooled connection answers its own command
            counts = await asyncio.gather(*(client.incr(f"{prefix}:n") for _ in range(20)))
            assert sorted(counts) == list(range(1, 21))
            meta = await bus.publish("order.placed", {"n": 2})
            assert await copies(client, bus, "order.placed", meta.event_id) == 1


@pytest.mark.standalone_only  # stops or hangs its own private server
async def test_stopped_redis_publish_ends_at_the_deadline_not_stored(prefix: str) -> None:
    with private_redis_server() as server:
        async with plugin_bus(server.url, prefix, publish_timeout=1.5) as (bus, client):
            await bus.publish("order.placed", {"n": 0})
            await anyio.to_thread.run_sync(server.stop)  # connection refused
            error, elapsed = await timed_publish(bus, "order.placed", {"n": 1})
            print(f"\nREFUSED: publish raised {type(error).__name__} after {elapsed:.2f}s (deadline 1.5 s)")
            assert 1.5 * 0.9 < elapsed < 1.5 + SLACK
            assert error.may_be_stored is False
            assert isinstance(error.last_error, rexc.ConnectionError)
            assert isinstance(error.__cause__, rexc.ConnectionError)
            assert "the event was NOT STORED (it was never sent; last error: ConnectionError" in str(error)
            assert "timed out after 1.5 s (plugins.eventbus.publish_timeout or timeout=)" in str(error)
            # a per-call deadline overrides the setting
            error, elapsed = await timed_publish(bus, "order.placed", {"n": 2}, timeout=0.5)
            assert 0.5 * 0.9 < elapsed < 0.5 + SLACK
            assert error.may_be_stored is False
            assert error.timeout == 0.5
            # Redis back (same port, empty: no persistence): the same pool reconnects.
            await anyio.to_thread.run_sync(server.start)
            meta = await bus.publish("order.placed", {"n": 3})
            entries = await client.xrange(bus.stream_key("order.placed"))
            assert [f[b"e"].split(b"\t", 2)[1].decode() for _i, f in entries] == [meta.event_id]


@pytest.mark.standalone_only  # stops or hangs its own private server
async def test_publish_rides_out_a_short_outage(prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    with private_redis_server() as server:
        async with plugin_bus(server.url, prefix, publish_timeout=30.0) as (bus, client):
            await bus.publish("order.placed", {"n": 0})
            await anyio.to_thread.run_sync(server.stop)
            result: list[EventMetadata] = []

            async def publish() -> None:
                result.append(await bus.publish("order.placed", {"n": 1}))

            with caplog.at_level("DEBUG", logger="kernel.plugins.eventbus"):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(publish)
                    await poll(lambda: _value("retrying in" in caplog.text), 10, "a failed publish attempt")
                    await anyio.to_thread.run_sync(server.start)
            assert await copies(client, bus, "order.placed", result[0].event_id) == 1
            assert "Connection refused" in caplog.text or "Connect call failed" in caplog.text


@pytest.mark.standalone_only  # stops or hangs its own private server
async def test_hung_redis_during_group_setup_times_out_not_stored_and_the_consumer_survives(
    prefix: str,
) -> None:
    with private_redis_server() as server:
        assert server.pid is not None
        async with plugin_bus(server.url, prefix, publish_timeout=2.0, read_block=0.2) as (bus, client):
            await bus.publish("order.placed", {"n": 0})
            got: list[Any] = []

            async def handler(data: Any, meta: EventMetadata) -> None:
                got.append(data)

            os.kill(server.pid, signal.SIGSTOP)
            try:
                # The new subscription's consumer group is created in the background; publish waits
                # for it (a "latest" group must exist before the event), and the server is silent.
                bus.subscribe("order.placed", handler, group="g")
                error, elapsed = await timed_publish(bus, "order.placed", {"n": 1})
            finally:
                os.kill(server.pid, signal.SIGCONT)
            assert 2.0 * 0.9 < elapsed < 2.0 + SLACK
            assert error.may_be_stored is False  # cut before its XADD was sent
            # The deadline did not cancel the group setup: the consumer runs and gets new events.
            await bus.publish("order.placed", {"n": 2}, timeout=15)
            await poll(lambda: _value(got == [{"n": 2}]), 15, "the consumer to handle the next event")
            assert await copies(client, bus, "order.placed", error.event_id) == 0


async def test_memory_adapter_never_waits_so_never_times_out() -> None:
    bus = MemoryEventBus(publish_timeout=1e-9)
    got: list[Any] = []

    async def handler(data: Any, meta: EventMetadata) -> None:
        got.append(data)

    bus.subscribe("e", handler, group="g")
    await bus.start()
    try:
        await bus.publish("e", 1)
        await bus.publish("e", 2, timeout=1e-9)
        with anyio.fail_after(5):
            await bus.join()
    finally:
        await bus.close()
    assert got == [1, 2]


@pytest.mark.parametrize("bad", [0, -1, -math.inf, math.nan, "5", True])
async def test_a_bad_per_call_timeout_is_a_clear_error(bad: Any) -> None:
    bus = MemoryEventBus()
    with pytest.raises(EventDataError, match=r"cannot publish 'e': timeout must be a number of seconds > 0"):
        await bus.publish("e", 1, timeout=bad)


def test_publish_timeout_setting_is_validated() -> None:
    assert EventBusConfig().publish_timeout == 10.0
    with pytest.raises(kernel.ConfigError, match=r"plugins\.eventbus\.publish_timeout"):
        make_kernel("eventbus", config={"eventbus": {"publish_timeout": 0}})
    with pytest.raises(ValueError, match="publish_timeout must be a number of seconds > 0, got -1"):
        MemoryEventBus(publish_timeout=-1)
    assert make_kernel("eventbus", config={"eventbus": {"publish_timeout": 2.5}}) is not None


def test_publish_timeout_error_is_a_timeout_and_a_bus_error() -> None:
    meta = EventMetadata("0190-id", "e", "2026-01-01T00:00:00.000Z", None, "t" * 32)
    error = PublishTimeoutError(meta, 2.0, may_be_stored=False)
    assert isinstance(error, TimeoutError)
    assert isinstance(error, OSError)  # caught where connection errors are (example service: 503)
    assert isinstance(error, EventBusError)
    assert str(error) == (
        "publish of 'e' (event 0190-id) timed out after 2 s "
        "(plugins.eventbus.publish_timeout or timeout=): the event was NOT STORED "
        "(it was never sent); it is safe to publish it again"
    )


async def _is(value: Awaitable[int], want: int) -> bool:
    return await value == want


async def _value(value: bool) -> bool:
    return value
