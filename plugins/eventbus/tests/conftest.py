"""Fixtures: a private Redis per session (or ``$REDIS_URL``), unique key prefixes, bus factories."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from kernel_eventbus import EventBus, MemoryEventBus, RetryPolicy
from kernel_eventbus._redis import RedisEventBus
from kernel_redis.testing import redis_keys_left_behind, redis_server, redis_url  # noqa: F401

FAST = RetryPolicy(max_retries=3, base_delay=0.05, factor=2.0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test (or other user of ``$REDIS_URL``) shares."""
    return f"evtest-{secrets.token_hex(5)}"


async def delete_prefix(client: aioredis.Redis, prefix: str) -> None:
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def client(redis_url: str, prefix: str) -> AsyncIterator[aioredis.Redis]:  # noqa: F811
    c = aioredis.Redis.from_url(redis_url)
    yield c
    await delete_prefix(c, prefix)  # only the keys this test created
    await c.aclose()


BusFactory = Callable[..., Awaitable[EventBus]]


@pytest.fixture(params=["memory", "redis"])
async def make_bus(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[BusFactory]:
    """Build started buses of the parametrized adapter (fast retries); closed after the test."""
    buses: list[EventBus] = []
    clients: list[aioredis.Redis] = []

    async def make(**kwargs: Any) -> EventBus:
        kwargs.setdefault("policy", FAST)
        bus: EventBus
        if request.param == "memory":
            bus = MemoryEventBus(**kwargs)
        else:
            url = request.getfixturevalue("redis_url")
            c = aioredis.Redis.from_url(url)
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


async def wait_until(cond: Callable[[], bool], within: float = 10.0, what: str = "condition") -> None:
    """Poll ``cond`` every 10 ms; fail with ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
def wait() -> Callable[..., Awaitable[None]]:
    """:func:`wait_until` for tests (test modules cannot import conftest under importlib mode)."""
    return wait_until
