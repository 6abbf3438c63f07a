"""Failover: SIGKILL the primary holding a queue's slot while 1,000 jobs are enqueued and run.

A private Redis Cluster (3 primaries, 1 replica each, ``cluster-node-timeout`` 2 s) per case; 8
producers add jobs with ids ``j0..j999`` (an add that raises is retried with the same id: the id
dedupes it), a worker in this process runs them. After 300 acknowledged adds the primary serving
the queue's slot is SIGKILLed. Reported per durability setting (a ``FAILOVER`` line): acknowledged
enqueues lost (never ran, no record), jobs run more than once, adds refused during the failover,
and the time until adding and running worked again (``add_outage``: the longest gap between two
acknowledged adds after the kill). With ``durability = "replicated"`` no
acknowledged enqueue may be lost. A ``listen_to_queue_events`` listener (a shard channel on the
killed primary) must hear the queue's events again afterwards (``events_back``: from the kill to
the first event heard of the probe jobs added once the queue drained, an upper bound).
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Literal

import anyio
import pytest
from kernel_queue import JobContext, QueueManager, queue_tag
from kernel_redis.testing import (
    FAILOVER_ITEMS,
    FAILOVER_KILL_AT,
    FAILOVER_MARKS,
    FailoverRun,
    close_dropped_cluster_connections,
    private_redis_cluster,
)

from kernel.testing import boot_kernel, wait_until

pytestmark = FAILOVER_MARKS  # slow; redis-py drops connections to the killed node unclosed (#4053)
N, KILL_AT = FAILOVER_ITEMS, FAILOVER_KILL_AT
PRODUCERS = 8
QUEUE = "kqtestfailover"


Run = FailoverRun[str]
"""What one failover run saw: jobs added (by id) and run, and when each add was acknowledged."""


async def _produce(qm: QueueManager, run: Run, ids: list[str]) -> None:
    for jid in ids:
        started = run.writing(jid)
        deadline = started + 60
        while True:
            try:
                await qm.add_job(QUEUE, "n", {"id": jid}, job_id=jid)
                break
            except Exception as exc:  # the failover window: connection errors, CLUSTERDOWN, not replicated
                run.refused[type(exc).__name__] += 1
                if time.monotonic() > deadline:
                    raise AssertionError(f"adds fail for 60 s: {exc!r}") from exc
                await anyio.sleep(0.05)
        run.acknowledged(jid, started)


@pytest.mark.parametrize("durability", ["default", "replicated"])
async def test_sigkilled_primary_while_jobs_run(durability: Literal["default", "replicated"]) -> None:
    run = Run()
    with private_redis_cluster(primaries=3, replicas=1) as cluster:
        settings: dict[str, Any] = {
            "heartbeat_interval": 0.2,
            "stall_timeout": 1.0,
            "sweep_interval": 0.25,
            "schedule_interval": 0.05,
            "poll_interval": 0.2,
            "durability": durability,
            "replication_timeout": 2.0,
        }
        config = {"redis": {"url": cluster.url}, "queue": settings}
        try:
            async with boot_kernel("redis", "queue", config=config) as k:
                qm = k.get(QueueManager)
                events: list[tuple[float, str]] = []
                qm.listen_to_queue_events(QUEUE, lambda e: events.append((time.monotonic(), e["job_id"])))

                async def proc(job: JobContext) -> None:
                    run.read(job.id)

                await qm.create_worker(QUEUE, proc, concurrency=8)
                ids = [f"j{i}" for i in range(N)]
                async with anyio.create_task_group() as tg:
                    for p in range(PRODUCERS):
                        tg.start_soon(_produce, qm, run, ids[p::PRODUCERS])
                    await wait_until(lambda: len(run.acked) >= KILL_AT, 60, what=f"{KILL_AT} adds")
                    port = await anyio.to_thread.run_sync(cluster.kill_primary_of, queue_tag(QUEUE))
                    run.killed_at = time.monotonic()
                    await anyio.to_thread.run_sync(cluster.wait_promoted, port)
                    run.promoted = time.monotonic() - run.killed_at
                    # The operator restarts the dead node: it rejoins as the new primary's replica (until
                    # then a replicated add finds no replica and raises EnqueueNotReplicatedError).
                    await anyio.to_thread.run_sync(cluster.revive, port)
                    revived = time.monotonic() - run.killed_at

                async def drained() -> bool:
                    return (await qm.get_queue_stats(QUEUE))["total"] == 0

                await wait_until(drained, 90, interval=0.2, what="the queue to drain after the failover")
                if durability == "replicated":
                    await wait_until(lambda: len(run.seen) == N, 10, interval=0.2, what="every job to run")
                probes = itertools.count()

                async def heard_again() -> bool:  # the listener subscribed again on the promoted primary
                    await qm.add_job(QUEUE, "probe", {}, job_id=f"probe{next(probes)}")
                    return any(jid.startswith("probe") for _, jid in events)

                await wait_until(heard_again, 30, interval=0.2, what="queue events after the failover")
                events_back = min(t for t, jid in events if jid.startswith("probe")) - run.killed_at
        finally:  # also when the run failed: no socket of the killed node reaches a later test
            await close_dropped_cluster_connections()
        lost = sorted(run.acked - set(run.seen))
        duplicates = sum(1 for c in run.seen.values() if c > 1)
        acks = sorted(run.ack_times)
        add_outage = max(b - a for a, b in itertools.pairwise(acks) if b > run.killed_at)
        print(
            f"\nFAILOVER queue durability={durability}: jobs={N} acknowledged={len(run.acked)} "
            f"lost={len(lost)} duplicates={duplicates} refused={dict(run.refused)} "
            f"promoted_after={run.promoted:.2f}s revived_after={revived:.2f}s "
            f"add_outage={add_outage:.2f}s add_back={run.write_back:.2f}s run_back={run.read_back:.2f}s "
            f"events_back={events_back:.2f}s"
        )
    assert len(run.acked) == N
    assert run.write_back and run.read_back, "adding and running recovered"
    if durability == "replicated":
        assert lost == []
