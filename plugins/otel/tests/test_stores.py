"""Cache and Redis CLIENT spans (opt-in), on a real redis-server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kernel_cache import CacheManager
from kernel_otel import Tracing
from kernel_redis import RedisConnection
from kernel_redis.testing import redis_keys_left_behind, redis_server, redis_url  # noqa: F401
from opentelemetry.trace import SpanKind, StatusCode

from kernel.testing import boot_kernel

pytestmark = pytest.mark.anyio


def _config(url: str, prefix: str, **otel: Any) -> dict[str, dict[str, Any]]:
    return {
        "otel": {"exporter": "memory", **otel},
        "redis": {"url": url},
        "cache": {"backend": "redis", "key_prefix": prefix},
    }


async def test_cache_and_redis_calls_inside_a_span_are_client_spans(redis_url: str) -> None:  # noqa: F811
    prefix = f"kctest{uuid.uuid4().hex[:12]}"
    config = _config(redis_url, prefix, cache_spans=True, redis_spans=True)
    async with boot_kernel("otel", "redis", "cache", config=config) as kernel:
        tracing = kernel.get(Tracing)
        users = kernel.get(CacheManager).namespace("users")
        client = kernel.get(RedisConnection).client
        await users.get("outside")  # outside any span: no span, no trace of its own
        with tracing.tracer.start_as_current_span("work") as work:
            await users.set("ada@example.com", {"name": "Ada"})
            assert await users.get_many(["ada@example.com", "bob@example.com"]) == {
                "ada@example.com": {"name": "Ada"}
            }
            with pytest.raises(Exception, match="not an integer"):
                await client.incr(users.key("ada@example.com"))
        await users.clear()
        spans = tracing.memory.get_finished_spans()
    by_name = {s.name: s for s in spans}
    assert [s.name for s in spans] == [
        "SET",
        "cache.set users",
        "MGET",
        "cache.get_many users",
        "INCRBY",
        "work",
    ]
    work_id = work.get_span_context().span_id
    cache_set, cache_get = by_name["cache.set users"], by_name["cache.get_many users"]
    assert cache_set.kind is SpanKind.CLIENT and cache_set.parent.span_id == work_id  # type: ignore[union-attr]
    assert dict(cache_get.attributes or {}) == {
        "kernel.cache.operation": "get_many",
        "kernel.cache.namespace": "users",
        "kernel.cache.backend": "redis",
        "kernel.cache.keys": 2,
        "kernel.cache.hits": 1,
    }
    redis_set = by_name["SET"]
    assert redis_set.kind is SpanKind.CLIENT
    assert redis_set.parent.span_id == cache_set.context.span_id  # type: ignore[union-attr]
    attributes = dict(redis_set.attributes or {})
    assert attributes["db.system.name"] == "redis"
    assert attributes["db.operation.name"] == "SET"
    assert attributes["db.namespace"] == "0"
    if redis_url.startswith("redis://"):  # a standalone server: the client knows where it goes
        assert attributes["server.address"] == "127.0.0.1" and isinstance(attributes["server.port"], int)
    failed = by_name["INCRBY"]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "redis.exceptions.ResponseError"  # type: ignore[index]
    recorded = " ".join(str(v) for s in spans for v in (s.attributes or {}).values())
    assert "ada@" not in recorded and "bob@" not in recorded  # no key or value in any attribute


async def test_a_pipeline_is_one_batch_span(redis_url: str) -> None:  # noqa: F811
    prefix = f"kctest{uuid.uuid4().hex[:12]}"
    async with boot_kernel(
        "otel", "redis", "cache", config=_config(redis_url, prefix, redis_spans=True)
    ) as kernel:
        tracing = kernel.get(Tracing)
        users = kernel.get(CacheManager).namespace("users")
        with tracing.tracer.start_as_current_span("work"):
            await users.set_many({"a": 1, "b": 2})
        await users.clear()
        spans = tracing.memory.get_finished_spans()
    names = [s.name for s in spans]
    batch = next(s for s in spans if s.name.startswith("BATCH"))
    assert names[-1] == "work" and "cache.set_many users" not in names  # cache spans stay off
    assert (batch.attributes or {})["db.operation.batch.size"] == 2


async def test_off_by_default(redis_url: str) -> None:  # noqa: F811
    prefix = f"kctest{uuid.uuid4().hex[:12]}"
    async with boot_kernel("otel", "redis", "cache", config=_config(redis_url, prefix)) as kernel:
        tracing = kernel.get(Tracing)
        assert kernel.get(RedisConnection).observer is None
        users = kernel.get(CacheManager).namespace("users")
        with tracing.tracer.start_as_current_span("work"):
            await users.set("k", 1)
            assert await users.get("k") == 1
        await users.clear()
        assert [s.name for s in tracing.memory.get_finished_spans()] == ["work"]
