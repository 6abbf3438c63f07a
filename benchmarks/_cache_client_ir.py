"""Client-side instruction counts of the cache's Redis cases: ``python -m benchmarks._cache_client_ir``.

The same cases as :mod:`benchmarks.cache` (``get``, ``set``, ``get_many_20``, ``set_many_20``: same
values, same raw baselines, decoding and encoding with orjson), counted in the client process by
:mod:`benchmarks._client_ir` (``python -m benchmarks --instructions cache`` records them as
``cache.<case>_client``). Counts move by a few tenths of a percent between runs (how often the
event loop finds a reply already there). Prints::

    client-ir cache.<case> ours=<Ir/op> raw=<Ir/op> ratio=<ours/raw>
"""

from __future__ import annotations

from typing import Any

from . import _client_ir

SUITE = "cache"
CALLS = 300
"""Calls per side and case (batch cases: calls of 20 keys; counts are per call)."""
WARM = 50

CASES = {"get": 1.05, "set": 1.05, "get_many_20": 1.10, "set_many_20": 1.10}
"""The cases and their targets (the issue's, as for the timed cases)."""


async def child(marks: _client_ir.Marks) -> None:
    """The counted process: both sides of every case, between markers."""
    from kernel_cache import CacheManager
    from kernel_redis.testing import private_redis_server

    from kernel.testing import boot_kernel

    from . import cache as suite

    with private_redis_server() as server:
        config = {"redis": {"url": server.url}, "cache": {"backend": "redis", "key_prefix": "bench"}}
        async with boot_kernel("redis", "cache", config=config) as kernel:
            cache = kernel.get(CacheManager).namespace("user", default_ttl=3600)
            raw: Any = cache.backend.client  # type: ignore[attr-defined]
            key, full = "profile:123", cache.key("profile:123")
            keys = [f"item:{i}" for i in range(suite.BATCH)]
            fulls = [cache.key(k) for k in keys]
            items = dict.fromkeys(keys, suite.VALUE)
            await cache.set(key, suite.VALUE)
            await cache.set_many(items)
            loads, dumps = suite.loads, suite.dumps

            async def raw_pipeline() -> Any:
                async with raw.pipeline(transaction=False) as pipe:
                    for k, value in zip(fulls, items.values(), strict=True):
                        pipe.set(k, dumps(value), ex=3600)
                    return await pipe.execute()

            cases = {
                "get": (lambda: cache.get(key), lambda: _loaded(raw.get(full), loads)),
                "set": (
                    lambda: cache.set(key, suite.VALUE, 3600),
                    lambda: raw.set(full, dumps(suite.VALUE), ex=3600),
                ),
                "get_many_20": (lambda: cache.get_many(keys), lambda: _loaded_many(raw.mget(fulls), loads)),
                "set_many_20": (lambda: cache.set_many(items, 3600), raw_pipeline),
            }
            for case, (ours, raw_side) in cases.items():
                await marks.calls(case, {"ours": ours, "raw": raw_side}, CALLS, WARM)


async def _loaded(reply: Any, loads: Any) -> Any:
    return loads(await reply)


async def _loaded_many(reply: Any, loads: Any) -> Any:
    return [loads(data) for data in await reply]


if __name__ == "__main__":
    raise SystemExit(_client_ir.main(__name__))
