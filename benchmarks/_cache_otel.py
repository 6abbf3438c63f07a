"""The ``cache`` suite's otel cases: what the otel plugin's opt-in cache and Redis spans cost.

Kept out of :mod:`benchmarks.cache` so that importing it does not change that suite's other cases
(the otel code is imported late). Every side runs inside a sampled span of its kernel's tracer
(``sampler = "always_on"``, exporter ``none``), as a cache call in a traced request does; ``raw``
is the same kernel with the otel plugin but its store spans off (the default), ``ours`` with them on:

- ``otel_memory_get_spans``: ``get`` of a cached value on the memory backend, ``cache_spans = true``
  (CPU-bound: also counted in instruction mode);
- ``otel_redis_get_spans`` (timed mode only): ``get`` on the Redis backend (a private
  redis-server) with ``cache_spans`` and ``redis_spans`` (a cache span and its ``GET`` span).

No target: the cost per span is the figure (docs/plugins/otel.md, "Cost").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from kernel_cache import CacheManager

from kernel.testing import boot_kernel

from ._harness import acompare, rounds

SUITE = "cache"
VALUE = {"id": "7", "name": "Ada", "plan": "pro"}


@asynccontextmanager
async def _cache(spans: dict[str, bool], redis_url: str | None) -> AsyncIterator[CacheManager]:
    """A namespace of a booted kernel's cache, used inside a sampled span of the otel plugin."""
    from kernel_otel import Tracing

    config: dict[str, dict[str, Any]] = {
        "otel": {"sampler": "always_on", "exporter": "none", **spans},
        "cache": {"backend": "memory" if redis_url is None else "redis", "key_prefix": "bench-otel"},
    }
    plugins: tuple[str, ...] = ("otel", "cache")
    if redis_url is not None:
        plugins += ("redis",)
        config["redis"] = {"url": redis_url}
    async with boot_kernel(*plugins, config=config) as kernel:
        cache = kernel.get(CacheManager).namespace("user")
        await cache.set("k", VALUE)
        with kernel.get(Tracing).tracer.start_as_current_span("request"):
            yield cache
        await cache.clear()


async def _get(case: str, spans: dict[str, bool], redis_url: str | None, ops: int) -> None:
    async with _cache(spans, redis_url) as traced, _cache({}, redis_url) as plain:

        async def ours() -> Any:
            return await traced.get("k")

        async def raw() -> Any:
            return await plain.get("k")

        await acompare(SUITE, case, ours, raw, ops=ops, rounds_=rounds(9, 3))


async def memory(quick: bool) -> None:
    """``otel_memory_get_spans`` (CPU-bound)."""
    await _get("otel_memory_get_spans", {"cache_spans": True}, None, rounds(20_000, 1_000))


async def redis(url: str, quick: bool) -> None:
    """``otel_redis_get_spans``: cache and Redis spans on a Redis-backed get."""
    spans = {"cache_spans": True, "redis_spans": True}
    await _get("otel_redis_get_spans", spans, url, rounds(3000, 200))
