"""Fixtures of the otel tests: no OTEL_* environment; per-test Redis key prefixes and queues."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator

import pytest
from kernel_redis import AnyRedis, connect
from kernel_redis.testing import redis_server, redis_url  # noqa: F401


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin reads OTEL_* from the process environment: tests start from none."""
    import os

    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:  # noqa: F811
    """An event-bus key prefix of this test only; its keys are deleted afterwards."""
    name = f"oteltest-{secrets.token_hex(5)}"
    yield name
    client: AnyRedis = connect(redis_url)
    for pattern in (f"{name}:*", f"{{{name}*"):
        keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
        if keys:
            await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def qname(redis_url: str) -> AsyncIterator[str]:  # noqa: F811
    """A queue of this test only; its keys are removed afterwards."""
    from kernel_queue import queue_tag
    from kernel_queue._manager import QUEUES_KEY

    name = f"oteltest{uuid.uuid4().hex[:10]}"
    yield name
    client = connect(redis_url)
    tag = queue_tag(name)
    for pattern in (f"saq:{tag}:*", f"saq:job:{tag}:*", f"saq:abort:{tag}:*"):
        keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
        if keys:
            await client.delete(*keys)
    await client.srem(QUEUES_KEY, name)  # type: ignore[misc]  # (the client type spans sync and async)
    await client.aclose()
