"""Fixtures: a private Redis per session (or ``$REDIS_URL``), unique key prefixes, bus factories."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from kernel_eventbus import EventBus, EventMetadata, MemoryEventBus, NonRetryableError, RetryPolicy
from kernel_eventbus._redis import RedisEventBus
from kernel_redis import AnyRedis, connect
from kernel_redis.testing import redis_keys_left_behind, redis_server, redis_url  # noqa: F401

from kernel.testing import wait_until as kernel_wait_until

FAST = RetryPolicy(max_retries=3, base_delay=0.05, factor=2.0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test (or other user of ``$REDIS_URL``) shares."""
    return f"evtest-{secrets.token_hex(5)}"


async def delete_prefix(client: AnyRedis, prefix: str) -> None:
    """Delete the keys of a test's ``prefix`` (``{prefix:...}`` and ``prefix:...``; every primary)."""
    for pattern in (f"{prefix}:*", f"{{{prefix}*"):
        keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
        if keys:
            await client.delete(*keys)


@pytest.fixture
async def client(redis_url: str, prefix: str) -> AsyncIterator[AnyRedis]:  # noqa: F811
    c = connect(redis_url)
    yield c
    await delete_prefix(c, prefix)  # only the keys this test created
    await c.aclose()


BusFactory = Callable[..., Awaitable[EventBus]]


@pytest.fixture(params=["memory", "redis"])
async def make_bus(
    request: pytest.FixtureRequest,
    prefix: str,
    redis_url: str,  # noqa: F811 - requested up front: a topology-parametrised fixture cannot be fetched later
) -> AsyncIterator[BusFactory]:
    """Build started buses of the parametrized adapter (fast retries); closed after the test."""
    buses: list[EventBus] = []
    clients: list[AnyRedis] = []

    async def make(**kwargs: Any) -> EventBus:
        kwargs.setdefault("policy", FAST)
        bus: EventBus
        if request.param == "memory":
            bus = MemoryEventBus(**kwargs)
        else:
            c = connect(redis_url)
            clients.append(c)
            kwargs.setdefault("read_block", 0.2)
            bus = RedisEventBus(c, prefix=prefix, **kwargs)
        await bus.start()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close()
    for c in clients:
        await delete_prefix(c, prefix)
        await c.aclose()


async def wait_until(cond: Callable[[], object], within: float = 10.0, what: str = "condition") -> None:
    """Poll ``cond`` every 10 ms; fail with ``what`` after ``within`` seconds (kernel.testing.wait_until)."""
    await kernel_wait_until(cond, within, what=what)


@pytest.fixture
def wait() -> Callable[..., Awaitable[None]]:
    """:func:`wait_until` for tests (test modules cannot import conftest under importlib mode)."""
    return wait_until


DlqCli = Callable[..., Awaitable["subprocess.CompletedProcess[str]"]]


@pytest.fixture
def dlq_cli(redis_url: str, prefix: str, tmp_path: Path) -> DlqCli:  # noqa: F811
    """``await dlq_cli("list")``: ``kernel dlq list`` in a subprocess, on this test's Redis and prefix."""
    config = tmp_path / "kernel.toml"
    config.write_text(
        f'[kernel]\nplugins = ["redis", "eventbus"]\n\n[plugins.redis]\nurl = "{redis_url}"\n\n'
        f'[plugins.eventbus]\nadapter = "redis"\nprefix = "{prefix}"\n'
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kernel", "-c", str(config), "dlq", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run, *args)

    return cli


async def _dead_letter_orders(client: AnyRedis, prefix: str, n: int = 3) -> list[EventMetadata]:
    bus = RedisEventBus(client, prefix=prefix, read_block=0.2)

    async def reject(data: Any, meta: EventMetadata) -> None:
        raise NonRetryableError(f"invalid order {data['n']}")

    bus.subscribe("order.created", reject, group="orders")
    await bus.start()
    try:
        metas = [await bus.publish("order.created", {"n": i}) for i in range(n)]
        await kernel_wait_until(
            lambda: _at_least(bus.dead_letter_count(), n), 20, what=f"the {n} events to be dead-lettered"
        )
    finally:
        await bus.close()
    return metas


@pytest.fixture
def dead_letter_orders() -> Callable[..., Awaitable[list[EventMetadata]]]:
    """``await dead_letter_orders(client, prefix, n=3)``: ``n`` sound DLQ entries of ``order.created``
    (subscription ``orders``), made the real way: a handler that rejects every event."""
    return _dead_letter_orders


class ConcurrencyProbe:
    """A handler that records how many of its runs overlapped at most (``peak``) and what it got."""

    def __init__(self, seconds: float = 0.02) -> None:
        self.seconds = seconds
        self.running = 0
        self.peak = 0
        self.done: list[Any] = []

    async def __call__(self, data: Any, meta: EventMetadata) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(self.seconds)
        self.running -= 1
        self.done.append(data)


@pytest.fixture
def probe() -> ConcurrencyProbe:
    """A fresh :class:`ConcurrencyProbe` (20 ms per run)."""
    return ConcurrencyProbe()


async def _at_least(count: Awaitable[int], n: int) -> bool:
    return await count >= n
