"""Outbox: a create with its event in one transaction, then the relay's publish, vs insert then XADD.

Both sides run in one process on one private redis-server and one MongoDB wire server (or
``$REDIS_URL`` / ``$MONGODB_URL``), through the same motor and redis-py clients:

- ``create_relay_batch``: *ours* creates 20 users with ``events=`` (each: the document and its
  outbox entry in one transaction), then one ``OutboxRelay.run_once()`` publishes the 20 entries
  (claim with a lease, ``EventBus.publish`` each with its original event id, mark done) -- what a
  relay under steady load does. *Raw*: 20 times ``insert_one`` of the same document, then ``XADD``
  of the event (no transaction, no outbox: an event lost if the process dies in between).
  µs per user. Target <= 1.25.
- ``create_relay_each``: the same with one relay pass per create (a relay that never batches,
  the worst case: claim and mark-done round trips for every event). No target.

Then the end-to-end lag, printed as ``lag outbox.commit_to_handler p50=<ms> p99=<ms>``: the relay
running in the background (as in every web and worker process, woken by the commits of its
process), a subscriber on the Redis bus, creates at a steady rate from 16 concurrent callers;
the time from a create's commit (its call returned) to the handler's start.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from kernel_eventbus import EventBus, EventMetadata
from kernel_outbox import OutboxRelay
from kernel_redis import RedisServer
from kernel_repository import BaseRepository, MongoWireServer, OutboxEvent, RepositoryManager
from kernel_repository.testing import unique_database
from odmantic import Field, Model

from kernel.testing import boot_kernel

from ._harness import acompare_batches, counting, redis_server, rounds

SUITE = "outbox"
TARGET = 1.25
BATCH = 20
EVENT = "bench.user.created"


class OutboxUser(Model):
    name: str
    email: str = Field(index=True)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    created_by: str | None = None
    updated_by: str | None = None
    schema_version: int = 1

    model_config = {"collection": "bench_outbox_users"}


class OutboxUserRepository(BaseRepository[OutboxUser]):
    pass


def _events(user: OutboxUser) -> list[OutboxEvent]:
    return [OutboxEvent(EVENT, {"user_id": str(user.id), "email": user.email}, source="bench")]


async def run(quick: bool) -> None:
    if counting():  # I/O-bound: nothing to count
        return
    redis_url, mongo_url = os.environ.get("REDIS_URL"), os.environ.get("MONGODB_URL")
    redis_srv = None if redis_url else RedisServer().start()
    mongo_srv = None if mongo_url else MongoWireServer().start()
    url = redis_url or redis_srv.url  # type: ignore[union-attr]
    client = aioredis.Redis.from_url(url)  # the raw side's client (and the clean-up's)
    database = unique_database("bench")
    prefix = f"bench-outbox-{database[-8:]}"
    config: dict[str, Any] = {
        "redis": {"url": url},
        "eventbus": {"adapter": "redis", "prefix": prefix},
        "repository": {"uri": mongo_url or mongo_srv.uri, "database": database},  # type: ignore[union-attr]
        # The relay is driven by hand in the cost cases; the lag case runs it in the background.
        "outbox": {"relay": False},
    }
    plugins = ("errors", "redis", "eventbus", "repository", "outbox")
    try:
        await redis_server(SUITE, client)
        async with boot_kernel(*plugins, config=config) as kernel:
            manager = kernel.get(RepositoryManager)
            try:
                await _costs(manager, kernel.get(OutboxRelay), client, f"{prefix}:raw", quick)
            finally:
                await manager.client.drop_database(database)
        config["outbox"] = {"relay": True}
        async with boot_kernel(*plugins, config=config) as kernel:
            manager = kernel.get(RepositoryManager)
            try:
                await _lag(manager, kernel.get(EventBus), quick)
            finally:
                await kernel.get(OutboxRelay).stop()  # before its collection goes
                await manager.client.drop_database(database)
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        for srv in (redis_srv, mongo_srv):
            if srv is not None:
                srv.close()


async def _costs(
    manager: RepositoryManager, relay: OutboxRelay, client: Any, stream: str, quick: bool
) -> None:
    repo = manager.repository(OutboxUserRepository)
    coll = manager.database[OutboxUser.__collection__]
    await manager.ensure_indexes([OutboxUser])
    counter = 0

    def fresh() -> dict[str, Any]:
        nonlocal counter
        counter += 1
        return {"name": f"user{counter}", "email": f"u{counter}@example.com"}

    async def ours_create() -> None:
        await repo.create(fresh(), created_by="bench", events=_events)

    async def raw_create() -> None:
        doc = fresh()
        stamp = datetime.now(UTC)
        doc.update(
            created_at=stamp, updated_at=stamp, created_by="bench", updated_by="bench", schema_version=1
        )
        result = await coll.insert_one(doc)
        body = json.dumps({"user_id": str(result.inserted_id), "email": doc["email"]})
        await client.xadd(stream, {"e": body}, maxlen=100_000, approximate=True)

    async def ours_batch() -> int:
        for _ in range(BATCH):
            await ours_create()
        published = 0
        while published < BATCH:  # one claim takes the batch; loop only if a claim came back short
            published += await relay.run_once()
        return BATCH

    async def raw_batch() -> int:
        for _ in range(BATCH):
            await raw_create()
        return BATCH

    async def ours_each() -> int:
        await ours_create()
        while not await relay.run_once():
            pass
        return 1

    async def raw_each() -> int:
        await raw_create()
        return 1

    n = rounds(9, 3)
    await acompare_batches(
        SUITE, "create_relay_batch", ours_batch, raw_batch, rounds_=n, calls=rounds(4, 1), target=TARGET
    )
    await acompare_batches(SUITE, "create_relay_each", ours_each, raw_each, rounds_=n, calls=rounds(60, 10))
    status = await manager.outbox.status()
    assert status.backlog == 0, status


async def _lag(manager: RepositoryManager, bus: EventBus, quick: bool) -> None:
    repo = manager.repository(OutboxUserRepository)
    total = rounds(2000, 100)
    rate = 100.0  # creates per second, from 16 callers
    committed: dict[str, float] = {}
    handled: dict[str, float] = {}
    all_handled = asyncio.Event()

    async def handler(data: Any, meta: EventMetadata) -> None:
        handled.setdefault(data["user_id"], time.perf_counter())
        if len(handled) >= total:
            all_handled.set()

    bus.subscribe(EVENT, handler, group="bench-lag")
    await asyncio.sleep(0)
    sem = asyncio.Semaphore(16)
    t0 = time.perf_counter()

    async def one(i: int) -> None:
        await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        async with sem:
            user = await repo.create(
                {"name": f"lag{i}", "email": f"lag{i}@example.com"}, created_by="bench", events=_events
            )
            committed[str(user.id)] = time.perf_counter()

    await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = time.perf_counter() - t0
    await asyncio.wait_for(all_handled.wait(), 60)
    lags = sorted((handled[k] - committed[k]) * 1000 for k in committed)
    p50, p99 = statistics.median(lags), lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    print(
        f"lag {SUITE}.commit_to_handler p50={p50:.1f}ms p99={p99:.1f}ms max={lags[-1]:.1f}ms "
        f"({total} creates at {total / elapsed:.0f}/s, 16 callers, relay in-process)",
        flush=True,
    )
