"""Fault tests: SIGKILLed consumer processes, poison events, a Redis crash, replay into an idempotent handler.

Figures (lost, duplicates, timings) are printed; run with ``pytest -s`` to see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from kernel_eventbus import EventMetadata, RetryPolicy
from kernel_eventbus._redis import RedisEventBus
from kernel_eventbus._redis_dlq import RedisDeadLetterStore
from kernel_redis import AnyRedis, connect
from kernel_redis.testing import private_redis_server
from redis import exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from kernel.process import terminate

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

APP = Path(__file__).with_name("consumer_app.py")


class Consumer:
    """A consumer subprocess (see consumer_app.py)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.proc: subprocess.Popen[str] | None = None
        self.kills = 0

    def start(self, may_die: bool = False) -> None:
        """Spawn and wait for ``ready``; with ``may_die`` a consumer that kills itself first is respawned."""
        while True:
            self._close_pipe()
            self.proc = subprocess.Popen(
                [sys.executable, str(APP), json.dumps(self.cfg)], stdout=subprocess.PIPE, text=True
            )
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if line.strip() == "ready":
                return
            code = self.proc.wait()
            assert may_die and code == -9, f"consumer did not start (exit {code})"
            self.kills += 1

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.kills += 1

    def _close_pipe(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
        self._close_pipe()


async def until(check: Callable[[], Awaitable[bool]], within: float, step: float = 0.05) -> None:
    """Poll ``check`` until it is true or ``within`` seconds passed (the assertions after it decide)."""
    deadline = time.monotonic() + within
    for _ in itertools.count():
        if await check() or time.monotonic() > deadline:
            return
        await asyncio.sleep(step)


async def _ge(value: Awaitable[int], minimum: int) -> bool:
    return await value >= minimum


async def _true(value: bool) -> bool:
    return value


def consumer_config(redis_url: str, prefix: str, mode: str, event: str, **bus: object) -> dict[str, Any]:
    """consumer_app.py's config: a Redis bus that reclaims a killed consumer's entries after ~1 s."""
    eventbus = {
        "adapter": "redis",
        "prefix": prefix,
        "visibility_timeout": 1.0,
        "reclaim_interval": 0.3,
        "read_block": 0.3,
        "new_group_start": "earliest",
    }
    return {"url": redis_url, "mode": mode, "event": event, "eventbus": eventbus | bus}


@contextlib.asynccontextmanager
async def consumer_and_publisher(cfg: dict[str, Any]) -> AsyncIterator[tuple[Consumer, RedisEventBus]]:
    """A started consumer subprocess and a bus that publishes to it; both stopped at exit."""
    consumer = Consumer(cfg)
    await anyio.to_thread.run_sync(consumer.start)
    client = connect(cfg["url"])
    try:
        yield consumer, RedisEventBus(client, prefix=cfg["eventbus"]["prefix"])
    finally:
        consumer.stop()
        await client.aclose()


async def test_sigkilled_consumer_loses_nothing(redis_url: str, prefix: str, client: AnyRedis) -> None:
    n, kill_at = 1000, (120, 300, 480, 660, 840)
    cfg = consumer_config(redis_url, prefix, "record", "job.created") | {"sleep": 0.003}
    async with consumer_and_publisher(cfg) as (consumer, bus):
        t0 = time.monotonic()
        ids = [(await bus.publish("job.created", {"i": i})).event_id for i in range(n)]
        for mark in kill_at:
            await until(lambda m=mark: _ge(client.hlen(f"{prefix}:handled"), m), 30, step=0.01)
            consumer.kill()  # mid-handler: the handler sleeps most of the time
            await anyio.to_thread.run_sync(consumer.start)
        await until(lambda: _ge(client.hlen(f"{prefix}:handled"), n), 60)
        # Late re-deliveries (entries the killed consumers held) land before the group is idle:
        # duplicates are then counted in full.
        await until(lambda: _idle(client, bus, "job.created", "recorder"), 30)
        assert await _idle(client, bus, "job.created", "recorder"), "unacknowledged entries remain"
    counts = {k.decode(): int(v) for k, v in (await client.hgetall(f"{prefix}:handled")).items()}
    lost = [i for i in ids if i not in counts]
    duplicates = sum(counts.values()) - len(counts)
    print(
        f"\nFAULT sigkill: events={n} kills={consumer.kills} lost={len(lost)} duplicates={duplicates} "
        f"handled_total={sum(counts.values())} elapsed={time.monotonic() - t0:.1f}s"
    )
    assert consumer.kills == len(kill_at)
    assert lost == []
    assert set(counts) == set(ids)


async def test_poison_events_dead_letter_after_retries_with_1_2_4_s_spacing(
    redis_url: str, prefix: str, client: AnyRedis
) -> None:
    n, poison = 40, {3, 11, 17, 29, 36}
    attempts: dict[str, list[float]] = defaultdict(list)
    handled: dict[str, int] = defaultdict(int)

    async def handler(data: Any, meta: EventMetadata) -> None:
        attempts[meta.event_id].append(time.monotonic())
        if data["poison"]:
            raise ValueError(f"cannot parse order {data['i']}")
        handled[meta.event_id] += 1

    bus = RedisEventBus(client, prefix=prefix, read_block=0.5)  # default policy: 3 retries, 1/2/4 s
    assert bus.policy == RetryPolicy()
    bus.subscribe("order.placed", handler, group="orders")
    await bus.start()
    try:
        metas = [await bus.publish("order.placed", {"i": i, "poison": i in poison}) for i in range(n)]
        await until(lambda: _ge(bus.dead_letter_count(), len(poison)), 20)
        # Everything acknowledged, no retry pending: the DLQ cannot change any more.
        await until(lambda: _idle(client, bus, "order.placed", "orders"), 20)
        assert await _idle(client, bus, "order.placed", "orders"), "unacknowledged entries remain"
        dlq = await bus.get_dead_letter_queue()
    finally:
        await bus.close()
    poison_ids = {metas[i].event_id for i in poison}
    assert {e.event_id for e in dlq} == poison_ids, "exactly the poison events, no healthy one"
    assert len(dlq) == len(poison)
    gaps_all: list[list[float]] = []
    for e in dlq:
        assert e.attempts == 4
        assert e.error_type == "ValueError"
        times = attempts[e.event_id]
        assert len(times) == 4, "max_retries + 1 attempts"
        gaps = [b - a for a, b in itertools.pairwise(times)]
        gaps_all.append(gaps)
        for gap, want in zip(gaps, (1.0, 2.0, 4.0), strict=True):
            # Lower bound exact (the backoff); the upper one allows a loaded 2-core CI machine's delays.
            assert want - 0.02 <= gap <= want + 1.0, f"retry spacing {gaps} not 1/2/4 s"
    healthy = [m.event_id for i, m in enumerate(metas) if i not in poison]
    assert all(handled[h] == 1 and len(attempts[h]) == 1 for h in healthy)
    worst = max(abs(g - w) for gaps in gaps_all for g, w in zip(gaps, (1.0, 2.0, 4.0), strict=True))
    print(
        f"\nFAULT poison: N={n} P={len(poison)} dlq={len(dlq)} attempts=4 each; gaps (s) "
        + "; ".join("/".join(f"{g:.3f}" for g in gaps) for gaps in gaps_all)
        + f"; worst deviation {worst * 1000:.0f} ms"
    )


@pytest.mark.standalone_only  # stops or hangs its own private server
async def test_redis_restart_mid_stream_loses_no_acknowledged_publish(prefix: str) -> None:
    n = 600
    with private_redis_server(appendonly=True, appendfsync="always") as server:
        client = aioredis.Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=1)
        blocking = aioredis.Redis.from_url(server.url, socket_timeout=5, socket_connect_timeout=1)
        handled: dict[str, int] = defaultdict(int)
        after_restart = {"count": 0, "restarted": False}

        async def handler(data: Any, meta: EventMetadata) -> None:
            handled[meta.event_id] += 1
            if after_restart["restarted"]:
                after_restart["count"] += 1

        consumer = RedisEventBus(
            client,
            blocking_client=blocking,
            prefix=prefix,
            read_block=0.2,
            reconnect_max_delay=0.5,
            visibility_timeout=2.0,
            reclaim_interval=0.5,
            policy=RetryPolicy(base_delay=0.1),
        )
        consumer.subscribe("payment.captured", handler, group="ledger")
        await consumer.start()
        # no client-side retries: a publish during the outage fails and is not acknowledged
        pub_client = aioredis.Redis.from_url(
            server.url, socket_timeout=2, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        producer = RedisEventBus(pub_client, prefix=prefix)
        acked: list[str] = []
        failed_publishes = 0
        downtime = {"s": 0.0}

        async def crash_and_restart() -> None:
            t = time.monotonic()
            await anyio.to_thread.run_sync(server.kill)  # a crash: no shutdown; the AOF was fsynced per write
            await asyncio.sleep(1.0)  # publishes keep coming meanwhile and fail
            await anyio.to_thread.run_sync(server.start)
            downtime["s"] = time.monotonic() - t
            after_restart["restarted"] = True

        restarter: asyncio.Task[None] | None = None
        try:
            i = 0
            while len(acked) < n:
                if len(acked) == n // 3 and restarter is None:
                    restarter = asyncio.create_task(crash_and_restart())
                    await asyncio.sleep(0.05)
                try:
                    acked.append((await producer.publish("payment.captured", {"i": i})).event_id)
                except (rexc.ConnectionError, rexc.TimeoutError, OSError):
                    failed_publishes += 1  # not acknowledged: the caller knows, and may publish again
                    await asyncio.sleep(0.02)
                i += 1
                await asyncio.sleep(0.001)
            assert restarter is not None
            await restarter
            await until(lambda: _true(set(acked) <= set(handled)), 30)
        finally:
            await consumer.close()
            await pub_client.aclose()
            await client.aclose()
            await blocking.aclose()
    lost = [e for e in acked if e not in handled]
    dups = sum(handled.values()) - len(handled)
    print(
        f"\nFAULT redis-restart: acknowledged={len(acked)} lost={len(lost)} duplicates={dups} "
        f"failed_publishes(not acknowledged)={failed_publishes} restart={downtime['s']:.2f}s "
        f"handled_after_restart={after_restart['count']}"
    )
    assert lost == []
    assert after_restart["count"] > 0, "the consumer resumed after the restart"


async def test_replay_into_idempotent_handler_applies_each_side_effect_once(
    redis_url: str, prefix: str, client: AnyRedis
) -> None:
    n, broken = 40, set(range(0, 40, 4))
    cfg = consumer_config(redis_url, prefix, "replay", "invoice.due", max_retries=1, retry_base_delay=0.05)
    async with consumer_and_publisher(cfg) as (consumer, bus):
        metas = [await bus.publish("invoice.due", {"i": i, "broken": i in broken}) for i in range(n)]
        await until(lambda: _ge(bus.dead_letter_count(), len(broken)), 20)
        assert await bus.dead_letter_count() == len(broken)
        await client.set(f"{prefix}:fixed", 1)
        # two operators replay at once: each entry is re-delivered once (atomic take-out of the DLQ)
        replayed = await asyncio.gather(bus.replay_all(), bus.replay_all())
        assert sum(replayed) == len(broken)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if consumer.proc is not None and consumer.proc.poll() is not None:
                consumer.kills += 1  # it killed itself after a side effect, before the ack
                await anyio.to_thread.run_sync(consumer.start, True)
            applied = await client.hgetall(f"{prefix}:applied")
            if len(applied) == n and consumer.kills >= len(broken) // 2 and await _settled(client, prefix):
                break
            await asyncio.sleep(0.05)
        # Nothing unacknowledged or awaiting a retry: no further delivery can change the counts.
        await until(lambda: _idle(client, bus, "invoice.due", "billing"), 30)
        assert await _idle(client, bus, "invoice.due", "billing"), "unacknowledged entries remain"
    applied = {k.decode(): int(v) for k, v in (await client.hgetall(f"{prefix}:applied")).items()}
    deliveries = {k.decode(): int(v) for k, v in (await client.hgetall(f"{prefix}:deliveries")).items()}
    ids = [m.event_id for m in metas]
    replayed_ids = [metas[i].event_id for i in sorted(broken)]
    crashed = {k.decode() for k in await client.hkeys(f"{prefix}:crashed")}
    # 2 failed attempts, the replay, and the redelivery after the crash
    redelivered = sum(1 for e in replayed_ids if deliveries[e] >= 4)
    print(
        f"\nFAULT replay: events={n} dead-lettered={len(broken)} replayed={sum(replayed)} "
        f"consumer_crashes_after_side_effect={consumer.kills} redelivered_after_crash={redelivered} "
        f"side_effects={sum(applied.values())} (once each: {all(v == 1 for v in applied.values())})"
    )
    assert set(applied) == set(ids)
    assert all(v == 1 for v in applied.values()), applied
    assert len(crashed) == len(broken) // 2
    assert all(deliveries[e] >= 4 for e in crashed), deliveries
    assert redelivered >= len(crashed)
    assert await RedisDeadLetterStore(client, prefix).count() == 0


async def _idle(client: AnyRedis, bus: RedisEventBus, event: str, group: str) -> bool:
    """No entry of ``group`` is unread, delivered but unacknowledged, or waiting for a retry."""
    unacked = 0
    try:
        for g in await client.xinfo_groups(bus.stream_key(event)):
            if g["name"] in (group, group.encode()):
                unacked += int(g["pending"] or 0) + int(g.get("lag") or 0)
    except rexc.ResponseError:
        return False  # no stream yet
    with contextlib.suppress(rexc.ResponseError):  # no retry stream: nothing failed
        unacked += int((await client.xpending(bus.retry_key(group, event), group))["pending"])
    return unacked == 0 and await client.zcard(bus.schedule_key(group, event)) == 0


async def _settled(client: AnyRedis, prefix: str) -> bool:
    crashed = await client.hlen(f"{prefix}:crashed")
    deliveries = {k: int(v) for k, v in (await client.hgetall(f"{prefix}:deliveries")).items()}
    return crashed > 0 and sum(1 for v in deliveries.values() if v >= 4) >= crashed
