"""Cache overhead: ``CacheManager`` on Redis vs raw redis-py on the very same client.

Raw baselines do what a user writes by hand to cache the same values with redis-py: ``GET`` +
decode, encode + ``SET EX``, ``MGET`` + decode of each value, encode of each value + a
non-transactional pipeline of ``SET EX``, and a ``SCAN MATCH`` + ``UNLINK`` loop. They encode and
decode with orjson, the JSON library the cache's serializer uses (a dependency of the plugin), so
the ratio is the cost of our layer alone -- key building, stats, fail-open handling, the integer
check of the serializer -- not of a different JSON library (the stdlib ``json`` would make the raw
side slower, ours look cheaper). Before 2026-12-01 the raw side sent and received pre-encoded bytes
without encoding or decoding: ``get_many_20`` then charged our layer for decoding 20 values that
any caller has to decode. aiocache and cashews (when installed) run the same workload against the
same server, each with its own client, and are printed with the same raw baseline, so their
ratios compare directly with ours. The memory backend is compared with aiocache's
``SimpleMemoryCache`` when installed, else with a bare dict + JSON.

Targets (cost ratios): get/set <= 1.05, get_many/set_many <= 1.10. Ceiling: ``mget_100`` -- raw
``MGET`` of 100 keys, µs per key: the best the client and server do at reading cached values.

``cluster_*`` cases: the same work on a private Redis Cluster (3 primaries, 1 replica each, on this
machine) through the cache's ``RedisCluster`` client, against raw redis-py on that client: ``GET`` +
decode, encode + ``SET EX``, ``MGET`` of a namespace's 20 keys (one hash tag: one slot, one node) +
decode, and a cluster pipeline of ``SET EX`` (one round trip to the namespace's node). Target: the
standalone ones (issue 15: <= 1.10 for every case).

``otel_*`` cases (:mod:`benchmarks._cache_otel`): the cost of the otel plugin's opt-in cache and Redis
spans (``cache_spans``, ``redis_spans``) on a get inside a traced request; instruction mode
(``--instructions cache``) counts the memory one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from kernel_cache import CacheManager, MemoryBackend
from kernel_redis.testing import PrivateRedisCluster, private_redis_cluster, private_redis_server
from redis.asyncio.cluster import RedisCluster

from kernel.testing import boot_kernel

from ._harness import PROFILE, Early, acompare, ceiling, emit, redis_server, rounds

SUITE = "cache"
VALUE = PROFILE
Operation = Callable[[], Awaitable[Any]]
"""An awaited benchmark step."""
PAYLOAD = json.dumps(VALUE, separators=(",", ":")).encode()
BATCH = 20
AnyRedis = aioredis.Redis | RedisCluster
"""The raw client the Redis cases compare with: the cache backend's own (standalone or cluster)."""
loads, dumps = orjson.loads, orjson.dumps
"""How the raw baselines decode and encode: as the cache's JsonSerializer does (orjson)."""


async def run(quick: bool) -> None:
    # One private redis-server for every standalone case (the otel one included); in quick mode
    # the cluster starts now, in a thread, and forms while the standalone cases run.
    cluster = Early(private_redis_cluster(primaries=3, replicas=1))
    try:
        with private_redis_server() as server:
            config = {"redis": {"url": server.url}, "cache": {"backend": "redis", "key_prefix": "bench"}}
            async with boot_kernel("redis", "cache", config=config) as kernel:
                cache = kernel.get(CacheManager).namespace("user", default_ttl=3600)
                raw: aioredis.Redis = cache.backend.client  # type: ignore[attr-defined]
                await redis_server(SUITE, raw)
                await _single(cache, raw, quick)
                await _batches(cache, raw, quick)
                await _ceiling(raw, quick)
                await _invalidate(cache, raw, quick)
                await _others(server.url, server.port, raw, quick)
            await _cluster(cluster, quick)
            await _memory(quick)
            from . import _cache_otel  # the otel cases, last and imported late: the others run as before

            await _cache_otel.memory(quick)
            await _cache_otel.redis(server.url, quick)
    finally:
        cluster.close()


async def cpu_bound(quick: bool) -> None:
    """The CPU-bound case (instruction mode): the otel plugin's cache spans on the memory backend."""
    from . import _cache_otel

    await _cache_otel.memory(quick)


async def _single(
    cache: CacheManager, raw: AnyRedis, quick: bool, *, case: str = "", target: float = 1.05
) -> None:
    """get and set of one value; ``case`` prefixes the case names (``cluster_``)."""
    key = "profile:123"
    full = cache.key(key)
    await cache.set(key, VALUE)
    # Many short interleaved rounds: this box shares two cores with redis-server, so drift is
    # the main noise; medians of short rounds absorb it.
    ops, n = (80, 11) if quick else (200, 61)

    async def ours_get() -> Any:
        return await cache.get(key)

    async def raw_get() -> Any:
        return loads(await raw.get(full))

    async def ours_set() -> Any:
        return await cache.set(key, VALUE, 3600)

    async def raw_set() -> Any:
        return await raw.set(full, dumps(VALUE), ex=3600)

    await acompare(SUITE, f"{case}get", ours_get, raw_get, ops=ops, rounds_=n, target=target)
    await acompare(SUITE, f"{case}set", ours_set, raw_set, ops=ops, rounds_=n, target=target)


async def _batches(cache: CacheManager, raw: AnyRedis, quick: bool, *, case: str = "") -> None:
    """get_many and set_many of ``BATCH`` values; ``case`` prefixes the case names (``cluster_``)."""
    keys = [f"item:{i}" for i in range(BATCH)]
    full = [cache.key(k) for k in keys]
    items = dict.fromkeys(keys, VALUE)
    await cache.set_many(items)
    ops, n = (30, 7) if quick else (50, 41)

    async def ours_get_many() -> Any:
        return await cache.get_many(keys)

    async def raw_mget() -> Any:
        return [loads(data) for data in await raw.mget(full)]

    async def ours_set_many() -> Any:
        return await cache.set_many(items, 3600)

    async def raw_pipeline() -> Any:
        async with raw.pipeline(transaction=False) as pipe:
            for k, value in zip(full, items.values(), strict=True):
                pipe.set(k, dumps(value), ex=3600)
            return await pipe.execute()

    for name, ours, raw_side in (
        ("get_many", ours_get_many, raw_mget),
        ("set_many", ours_set_many, raw_pipeline),
    ):
        await acompare(SUITE, f"{case}{name}_{BATCH}", ours, raw_side, ops=ops, rounds_=n, target=1.10)


async def _ceiling(raw: aioredis.Redis, quick: bool) -> None:
    """Raw ``MGET`` of 100 keys: µs per key read at best."""
    keys = [f"bench:ceiling:{i}" for i in range(100)]
    await raw.mset(dict.fromkeys(keys, PAYLOAD))
    ops = 50
    times: list[float] = []
    for _ in range(rounds(15, 7)):
        t0 = time.perf_counter()
        for _ in range(ops):
            await raw.mget(keys)
        times.append((time.perf_counter() - t0) / (ops * len(keys)) * 1e6)
    await raw.delete(*keys)
    ceiling(SUITE, "mget_100", times)


async def _invalidate(cache: CacheManager, raw: aioredis.Redis, quick: bool) -> None:
    # 1,000 keys of the namespace to delete among 5,000 keys of others that SCAN must skip.
    size = 1000
    others = {f"bench:other:{i}": b"x" for i in range(5000)}
    await raw.mset(others)
    pattern = cache.key("page:*")

    async def fill() -> None:
        async with raw.pipeline(transaction=False) as pipe:
            for i in range(size):
                pipe.set(cache.key(f"page:{i}"), PAYLOAD, ex=3600)
            await pipe.execute()

    async def raw_invalidate() -> int:
        deleted = 0
        batch: list[bytes] = []
        async for k in raw.scan_iter(match=pattern, count=1000):
            batch.append(k)
            if len(batch) >= 500:
                deleted += await raw.unlink(*batch)
                batch = []
        if batch:
            deleted += await raw.unlink(*batch)
        return deleted

    ours_t: list[float] = []
    raw_t: list[float] = []
    for i in range(rounds(9, 3)):  # each round deletes 1,000 keys, so a few rounds suffice
        for label in ("ours", "raw") if i % 2 == 0 else ("raw", "ours"):
            await fill()
            t0 = time.perf_counter()
            deleted = await (cache.invalidate("page:*") if label == "ours" else raw_invalidate())
            elapsed = (time.perf_counter() - t0) / size * 1e6
            assert deleted == size, deleted
            (ours_t if label == "ours" else raw_t).append(elapsed)
    emit(SUITE, f"invalidate_{size}_of_{size + len(others)}", ours_t, raw_t)
    await raw.delete(*others)


async def _others(url: str, port: int, raw: aioredis.Redis, quick: bool) -> None:
    """aiocache and cashews on the same workload, each against the same raw baseline."""
    ops, n = (80, 3) if quick else (200, 41)
    full = "bench:raw:profile"
    await raw.set(full, PAYLOAD)

    async def raw_get() -> Any:
        return loads(await raw.get(full))

    async def raw_set() -> Any:
        return await raw.set(full, dumps(VALUE), ex=3600)

    async def against_raw(library: str, get: Operation, set_: Operation) -> None:
        """One library's get and set, each against the raw baseline."""
        await acompare(SUITE, f"{library}_get", get, raw_get, ops=ops, rounds_=n)
        await acompare(SUITE, f"{library}_set", set_, raw_set, ops=ops, rounds_=n)

    try:
        from aiocache import RedisCache
        from aiocache.serializers import JsonSerializer
    except ImportError:
        print("# aiocache not installed: skipped", flush=True)
    else:
        ac = RedisCache(serializer=JsonSerializer(), endpoint="127.0.0.1", port=port, namespace="bench-ac")
        await ac.set("p", VALUE)
        await against_raw("aiocache", lambda: ac.get("p"), lambda: ac.set("p", VALUE, ttl=3600))
        await ac.close()

    try:
        from cashews import Cache
    except ImportError:
        print("# cashews not installed: skipped", flush=True)
    else:
        cw = Cache()
        cw.setup(url, client_side=False)
        await cw.init()
        key = "bench-cw:p"
        await cw.set(key, VALUE)
        await against_raw("cashews", lambda: cw.get(key), lambda: cw.set(key, VALUE, expire=3600))
        await cw.close()


async def _cluster(private: Early[PrivateRedisCluster], quick: bool) -> None:
    """get, set, get_many and set_many on a Redis Cluster: ours vs raw ``RedisCluster``, same client."""
    with private as cluster:
        config = {"redis": {"url": cluster.url}, "cache": {"backend": "redis", "key_prefix": "bench"}}
        async with boot_kernel("redis", "cache", config=config) as kernel:
            cache = kernel.get(CacheManager).namespace("user", default_ttl=3600)
            raw: RedisCluster = cache.backend.client  # type: ignore[attr-defined]
            await _single(cache, raw, quick, case="cluster_", target=1.10)
            await _batches(cache, raw, quick, case="cluster_")
            await cache.clear()


async def _memory(quick: bool) -> None:
    cache = CacheManager(MemoryBackend(10_000), namespace="user")
    await cache.set("k", VALUE)
    ops, n = (1000, rounds(9, 5)) if quick else (20000, rounds(9, 5))
    try:
        from aiocache import SimpleMemoryCache
        from aiocache.serializers import JsonSerializer
    except ImportError:
        store: dict[str, tuple[bytes, float]] = {}
        label = "dict+json"

        async def other_get() -> Any:
            item = store.get("k")
            return json.loads(item[0]) if item and item[1] > time.monotonic() else None

        async def other_set() -> Any:
            store["k"] = (json.dumps(VALUE).encode(), time.monotonic() + 3600)
    else:
        label = "aiocache"
        mem = SimpleMemoryCache(serializer=JsonSerializer())
        await mem.set("k", VALUE)

        async def other_get() -> Any:
            return await mem.get("k")

        async def other_set() -> Any:
            return await mem.set("k", VALUE, ttl=3600)

    async def ours_get() -> Any:
        return await cache.get("k")

    async def ours_set() -> Any:
        return await cache.set("k", VALUE)

    get = await acompare(SUITE, f"memory_get_vs_{label}", ours_get, other_get, ops=ops, rounds_=n)
    put = await acompare(SUITE, f"memory_set_vs_{label}", ours_set, other_set, ops=ops, rounds_=n)
    print(f"# cache.memory ops/s: get={1e6 / get.ours_us:,.0f} set={1e6 / put.ours_us:,.0f}", flush=True)
