"""Fixtures: a private redis-server (kernel_redis.testing), a booted kernel with a QueueManager."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kernel_queue import QueueManager
from kernel_redis.testing import redis_server, redis_url  # noqa: F401

from kernel.testing import boot_kernel

# Short timers so fault tests finish fast; the docs explain the production defaults.
FAST: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "stall_timeout": 1.0,
    "sweep_interval": 0.25,
    "schedule_interval": 0.05,
    "poll_interval": 0.2,
    "shutdown_grace": 5.0,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fast_config() -> dict[str, Any]:
    return dict(FAST)


@pytest.fixture
def qname() -> str:
    """A fresh queue name per test: no flushing of a server the tests may share."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def manager(redis_url: str, fast_config: dict[str, Any]) -> AsyncIterator[QueueManager]:  # noqa: F811
    async with boot_kernel("redis", "queue",
                           config={"redis": {"url": redis_url}, "queue": fast_config}) as k:
        yield k.get(QueueManager)
