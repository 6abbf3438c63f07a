"""Queue overhead: ``QueueManager`` vs raw SAQ ``RedisQueue``/``Worker`` on the same Redis client.

- ``add_job``: ours (validation, priority-ordered waiting set, dedupe, ``waiting`` event) vs
  ``saq`` ``queue.enqueue(name, data=...)``.
- ``throughput_c10``: N no-op jobs already enqueued, then one worker with concurrency 10 runs
  them all; time per job. Ours has the automatic heartbeat, persisted stats, priorities and
  events on; raw is a stock ``saq.Worker``.
- ``add_bulk``: ``add_bulk_jobs`` of 100 jobs (one round trip) vs 100 sequential raw enqueues;
  time per job.

- ``cluster_*`` (a private Redis Cluster, 3 primaries + 3 replicas; ``QUEUE_BENCH_CLUSTER=0`` skips
  it): ``add_job`` on the cluster vs SAQ's enqueue work done raw on the ``RedisCluster`` client (its
  enqueue script -- ZSCORE/EXISTS, SET, ZADD, RPUSH -- on the queue's hash-tagged keys, after
  building and serializing a SAQ job: stock SAQ cannot enqueue on a cluster, its abort key has no
  tag); vs stock SAQ's ``RedisQueue.enqueue`` on the cluster client with only the job's abort key
  moved into the queue's slot (what the standalone ``add_job`` case compares with);
  ``durability = "replicated"`` vs the same raw script plus ``WAIT 1`` on the slot's primary, and
  vs default. Each side makes one round trip per ``add_job``: the suite counts the commands each
  side sends and prints them.

Target (cost ratio): add_job <= 1.10. Ceiling: ``enqueue_pipelined_100`` -- the Redis work of a SAQ
enqueue done raw at its best: ``SET`` of the serialized job, ``ZADD`` to the incomplete set and
``RPUSH`` to the queued list, for 100 jobs in one non-transactional pipeline; µs per job.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from kernel_queue import JobContext, QueueManager
from kernel_redis.testing import private_redis_server
from redis.asyncio.connection import AbstractConnection
from saq import Job, Worker
from saq.queue.redis import RedisQueue

from kernel.testing import boot_kernel

from ._harness import Early, acompare, acompare_batches, ceiling, emit, redis_server, rounds

SUITE = "queue"
DATA = {"notification_id": "123", "user_id": "456", "type": "push"}
FAST = {
    "heartbeat_interval": 2.0,
    "stall_timeout": 10.0,
    "sweep_interval": 2.0,
    "schedule_interval": 0.5,
    "poll_interval": 0.5,
}


async def run(quick: bool) -> None:
    from kernel_redis.testing import private_redis_cluster

    # In quick mode the cluster starts now, in a thread, and forms while the standalone cases run.
    clustered = os.environ.get("QUEUE_BENCH_CLUSTER", "1") != "0"
    cluster = Early(private_redis_cluster(primaries=3, replicas=1)) if clustered else None
    try:
        with private_redis_server() as server:
            config = {"redis": {"url": server.url}, "queue": FAST}
            async with boot_kernel("redis", "queue", config=config) as k:
                manager = k.get(QueueManager)
                raw_client: aioredis.Redis = k.registry.get("redis")
                await redis_server(SUITE, raw_client)
                await _add_job(manager, raw_client, quick)
                await _ceiling(raw_client)
                await _bulk(manager, raw_client, quick)
                # SAQ's idle workers block in BLMOVE: like ours (BLPOP), they get a client without a
                # socket read timeout, else every idle read times out after 5 s.
                blocking = k.registry.get("redis.connection").new_client(socket_timeout=None)
                await _throughput(manager, blocking, quick)
        if cluster is not None:
            await _cluster(cluster, quick)
    finally:
        if cluster is not None:
            cluster.close()


# SAQ 0.26's enqueue step (``RedisQueue._enqueue``), for the raw side of the cluster case.
_SAQ_ENQUEUE = """
if not redis.call('ZSCORE', KEYS[1], KEYS[2]) and redis.call('EXISTS', KEYS[4]) == 0 then
    redis.call('SET', KEYS[2], ARGV[1])
    redis.call('ZADD', KEYS[1], ARGV[2], KEYS[2])
    if ARGV[2] == '0' then redis.call('RPUSH', KEYS[3], KEYS[2]) end
    return 1
end
return nil
"""


async def _cluster(private: Early[Any], quick: bool) -> None:
    """``add_job`` on a private Redis Cluster, default and replicated, vs SAQ's work done raw."""
    from kernel_queue import queue_tag

    with private as cluster:
        config: dict[str, dict[str, Any]] = {"redis": {"url": cluster.url}, "queue": FAST}
        replicated_config = {**config, "queue": {**FAST, "durability": "replicated"}}
        async with (
            boot_kernel("redis", "queue", config=config) as k,
            boot_kernel("redis", "queue", config=replicated_config) as kr,
        ):
            manager, durable = k.get(QueueManager), kr.get(QueueManager)
            client: Any = manager.redis
            await client.initialize()
            ours_q, raw_name = _name("o"), _name("r")
            tag = queue_tag(raw_name)
            node = client.get_node_from_key(tag)
            primary = aioredis.Redis(host=node.host, port=node.port)  # the slot's primary, for raw WAIT
            shape = RedisQueue(primary, name=tag)  # SAQ's job building and serialization only
            script = client.register_script(_SAQ_ENQUEUE)
            incomplete, queued = f"saq:{tag}:incomplete", f"saq:{tag}:queued"

            stock = RedisQueue(primary, name=tag)
            stock.redis = client  # SAQ's own enqueue path, on the cluster client

            class TaggedJob(Job):
                @property
                def abort_id(self) -> str:  # SAQ's ``saq:abort:<key>`` is in no queue's slot
                    return f"saq:abort:{tag}:{self.key}"

            def saq_job() -> tuple[list[str], list[Any]]:
                job = Job("send-notification", kwargs={"data": DATA}, queue=shape)
                job.queued = int(time.time() * 1000)
                keys = [incomplete, shape.job_id(job.key), queued, f"saq:abort:{tag}:{job.key}"]
                return keys, [shape.serialize(job), job.scheduled]

            async def ours() -> Any:
                return await manager.add_job(ours_q, "send-notification", DATA)

            async def raw() -> Any:
                keys, args = saq_job()
                return await script(keys=keys, args=args)

            async def raw_enqueue() -> Any:
                return await stock.enqueue(TaggedJob("send-notification", kwargs={"data": DATA}))

            async def ours_replicated() -> Any:
                return await durable.add_job(ours_q, "send-notification", DATA)

            async def raw_replicated() -> Any:
                keys, args = saq_job()
                pipe = primary.pipeline(transaction=False)
                pipe.evalsha(script.sha, len(keys), *keys, *args)
                pipe.execute_command("WAIT", 1, 1000)
                return await pipe.execute()

            ops, n = (60, 5) if quick else (300, 31)
            await raw()  # loads the script on the slot's primary (EVALSHA in the raw pipeline)
            sides = {"ours": ours, "raw script": raw, "raw enqueue": raw_enqueue}
            sides |= {"ours replicated": ours_replicated, "raw script+WAIT": raw_replicated}
            counts = [f"{side} {await _sent(fn):.2f}" for side, fn in sides.items()]
            print("  commands sent per add_job: " + ", ".join(counts))
            await acompare(
                SUITE, "cluster_add_job_vs_saq_script", ours, raw, ops=ops, rounds_=rounds(n, n), target=1.10
            )
            await acompare(
                SUITE,
                "cluster_add_job_vs_saq_enqueue",
                ours,
                raw_enqueue,
                ops=ops,
                rounds_=rounds(n, n),
                target=1.10,
            )
            await acompare(
                SUITE,
                "cluster_add_job_replicated_vs_saq_script_wait",
                ours_replicated,
                raw_replicated,
                ops=ops,
                rounds_=rounds(n, n),
                target=1.10,
            )
            cost = await acompare(
                SUITE,
                "cluster_add_job_replicated_vs_default",
                ours_replicated,
                ours,
                ops=ops,
                rounds_=rounds(n, n),
            )
            if cost.unit == "us":
                print(
                    f"  durability=replicated: {cost.ours_us:.0f} µs per add_job vs {cost.raw_us:.0f} µs "
                    f"(default), {cost.ours_us / cost.raw_us:.2f}x"
                )
            await shape.disconnect()
            stock.redis = primary
            await stock.disconnect()
            await primary.aclose()
            for pattern in (f"saq:*{queue_tag(ours_q)}*", f"saq:*{tag}*"):
                keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
                for i in range(0, len(keys), 500):
                    await client.delete(*keys[i : i + 500])
            await client.srem("kernel_queue:queues", ours_q)


async def _sent(fn: Callable[[], Awaitable[Any]], calls: int = 50) -> float:
    """Commands (pipelines count once) ``fn`` sends to Redis per call, after a few warm-up calls (the
    first ones open connections): its round trips."""
    for _ in range(5):
        await fn()
    original = AbstractConnection.send_packed_command
    sent = 0

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        await original(self, command, check_health)

    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        for _ in range(calls):
            await fn()
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
    return sent / calls


def _name(tag: str) -> str:
    return f"bench{tag}{uuid.uuid4().hex[:6]}"


async def _add_job(manager: QueueManager, client: aioredis.Redis, quick: bool) -> None:
    ours_q, raw_q = _name("o"), RedisQueue(client, name=_name("r"))

    async def ours() -> Any:
        return await manager.add_job(ours_q, "send-notification", DATA)

    async def raw() -> Any:
        return await raw_q.enqueue("send-notification", data=DATA)

    ops, n = (80, 7) if quick else (300, 31)
    await acompare(SUITE, "add_job", ours, raw, ops=ops, rounds_=rounds(n, n), target=1.10)


async def _ceiling(client: aioredis.Redis) -> None:
    """An enqueue's Redis commands for 100 jobs in one pipeline: µs per job at best."""
    queue = RedisQueue(client, name=_name("c"))
    payload = queue.serialize(Job("send-notification", kwargs=DATA, queue=queue))
    incomplete, queued = queue.namespace("incomplete"), queue.namespace("queued")
    size = 100
    times: list[float] = []
    for r in range(rounds(15, 7)):
        ids = [queue.job_id(f"ceil-{r}-{i}") for i in range(size)]
        t0 = time.perf_counter()
        async with client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.set(job_id, payload)
                pipe.zadd(incomplete, {job_id: 0})
                pipe.rpush(queued, job_id)
            await pipe.execute()
        times.append((time.perf_counter() - t0) / size * 1e6)
        await client.delete(*ids)
    await client.delete(incomplete, queued)
    ceiling(SUITE, "enqueue_pipelined_100", times)


async def _bulk(manager: QueueManager, client: aioredis.Redis, quick: bool) -> None:
    size = 100
    ours_q, raw_q = _name("o"), RedisQueue(client, name=_name("r"))
    specs = [{"name": "send-notification", "data": DATA}] * size

    async def ours() -> int:
        await manager.add_bulk_jobs(ours_q, specs)
        return size

    async def raw() -> int:
        for _ in range(size):
            await raw_q.enqueue("send-notification", data=DATA)
        return size

    await acompare_batches(SUITE, "add_bulk_100_vs_100_enqueues", ours, raw, rounds_=rounds(21, 7))


async def _throughput(manager: QueueManager, client: aioredis.Redis, quick: bool) -> None:
    jobs = 100 if quick else 1000

    async def ours_batch() -> float:
        queue = _name("o")
        done = asyncio.Event()
        count = 0

        async def noop(job: JobContext) -> None:
            nonlocal count
            count += 1
            if count == jobs:
                done.set()

        await manager.add_bulk_jobs(queue, [{"name": "noop", "data": None}] * jobs)
        t0 = time.perf_counter()
        await manager.create_worker(queue, noop, concurrency=10)
        await done.wait()
        elapsed = time.perf_counter() - t0
        await manager.stop_workers()
        return elapsed

    async def raw_batch() -> float:
        queue = RedisQueue(client, name=_name("r"))
        done = asyncio.Event()
        count = 0

        async def noop(ctx: Any, **_: Any) -> None:
            nonlocal count
            count += 1
            if count == jobs:
                done.set()

        for _ in range(jobs):
            await queue.enqueue("noop")
        worker = Worker(queue, functions=[("noop", noop)], concurrency=10)
        t0 = time.perf_counter()
        task = asyncio.create_task(worker.start())
        await done.wait()
        elapsed = time.perf_counter() - t0
        worker.event.set()
        await task
        return elapsed

    await _interleaved("throughput_c10", ours_batch, raw_batch, jobs, rounds(9, 3))


async def _interleaved(
    case: str, ours: Callable[[], Awaitable[float]], raw: Callable[[], Awaitable[float]], per: int, n: int
) -> None:
    o: list[float] = []
    r: list[float] = []
    await ours()
    await raw()
    for i in range(n):
        if i % 2:
            r.append(await raw())
            o.append(await ours())
        else:
            o.append(await ours())
            r.append(await raw())
    emit(SUITE, case, [t / per * 1e6 for t in o], [t / per * 1e6 for t in r])
