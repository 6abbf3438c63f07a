"""Console page render times with 10,000 jobs and 1,000 dead-letter entries present.

The kernel (redis, eventbus on Redis Streams, queue, console) runs on a private Redis holding
10,000 jobs (one queue with 6,000 waiting and 2,000 delayed, another with 2,000 failed) and 1,000
dead-letter entries. Each console page is requested in-process through its ASGI app (httpx), which includes
every Redis round trip the page makes; one line per page::

    page console.<page> p50=<ms> p95=<ms> max=<ms> target=200ms <met|missed> (<rounds> requests)

``met`` when p95 is at or below the target (the issue's "each page renders in under 200 ms").
This suite has no raw side to compare with: it prints no ``bench`` line.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from typing import Any

import httpx
from kernel_eventbus import EventBus, EventMetadata, NonRetryableError
from kernel_queue import JobContext, QueueManager, list_jobs
from kernel_redis.testing import private_redis_server

from kernel import Kernel
from kernel.testing import boot_kernel, wait_until
from kernel.web import KernelApp, Receive, Scope, Send

from ._harness import counting, redis_server, rounds

SUITE = "console"
TARGET_MS = 200.0
QUEUE = "bench-console"
WAITING, DELAYED, FAILED, DEAD = 6_000, 2_000, 2_000, 1_000


async def run(quick: bool) -> None:
    if counting():  # I/O-bound: nothing to count in instruction mode
        return
    with private_redis_server() as server:
        config = {
            "redis": {"url": server.url},
            "eventbus": {"adapter": "redis", "prefix": "bench-console", "read_block": 0.1, "max_retries": 0},
            "queue": {"poll_interval": 0.1, "schedule_interval": 0.5},
        }
        async with boot_kernel("redis", "eventbus", "queue", "console", config=config) as kernel:
            await redis_server(SUITE, kernel.registry.get("redis"))
            event_id, failing, job_id = await _fill(kernel)
            pages = {
                "overview": "/console",
                "queues": "/console/queues",
                "queue_delayed": f"/console/queue?name={QUEUE}&state=delayed",
                "queue_waiting_page_50": f"/console/queue?name={QUEUE}&state=waiting&page=50",
                "queue_text_filter": f"/console/queue?name={QUEUE}&state=waiting&text=nomatch",
                "queue_failed_2000": f"/console/queue?name={failing}&state=failed",
                "job": f"/console/job?queue={failing}&id={job_id}",
                "events": "/console/events",
                "events_text_filter": "/console/events?text=nomatch",
                "dlq_entry": f"/console/dlq?id={event_id}",
            }
            async with _client(kernel) as http:
                for name, path in pages.items():
                    await _time_page(http, name, path, rounds(30, 5))


async def _fill(kernel: Kernel) -> tuple[str, str, str]:
    """The jobs and dead letters; the id of one dead-lettered event, the failing queue, a failed job.

    The failing queue's jobs go first: its worker fails them while the waiting and delayed jobs
    and the dead-lettered events are written (the same data as one step after another, sooner).
    """
    qm, bus = kernel.get(QueueManager), kernel.get(EventBus)
    failing = f"{QUEUE}-failing"

    async def fail(job: JobContext) -> None:
        raise RuntimeError(f"refused {job.data['n']}")

    async def reject(data: Any, meta: EventMetadata) -> None:
        raise NonRetryableError(f"no handler for {data['n']}")

    async def jobs() -> None:
        for start in range(0, WAITING, 1000):
            await qm.add_bulk_jobs(QUEUE, [{"name": "mail", "data": {"n": start + i}} for i in range(1000)])
        for start in range(0, DELAYED, 1000):
            await qm.add_bulk_jobs(
                QUEUE, [{"name": "digest", "data": {"n": start + i}, "delay": 3600} for i in range(1000)]
            )

    async def dead_letters() -> None:
        for n in range(DEAD):
            await bus.publish("bench.event", {"n": n, "text": "x" * 200})

    async def all_failed() -> bool:
        return bool((await qm.get_queue_stats(failing))["failed"] == FAILED)

    async def all_dead() -> bool:
        return await bus.dead_letter_count() == DEAD

    for start in range(0, FAILED, 1000):
        await qm.add_bulk_jobs(failing, [{"name": "charge", "data": {"n": start + i}} for i in range(1000)])
    saq_log, bus_log = logging.getLogger("saq"), logging.getLogger("kernel.plugins.eventbus")
    saq_level, saq_log.level = saq_log.level, logging.CRITICAL  # not 2,000 tracebacks of failing jobs
    bus_level, bus_log.level = bus_log.level, logging.CRITICAL  # not 1,000 dead-letter lines
    try:
        await qm.create_worker(failing, fail, concurrency=50)
        bus.subscribe("bench.event", reject, group="bench.event:reject")
        await asyncio.gather(jobs(), dead_letters())
        await wait_until(all_failed, timeout=300, interval=0.1, what="the failing jobs")
        await qm.stop_workers()
        await wait_until(all_dead, timeout=300, interval=0.1, what="the dead letters")
    finally:
        saq_log.level = saq_level
        bus_log.setLevel(bus_level)
    job_id = (await list_jobs(qm, failing, "failed", limit=1))[0].id
    event_id = (await bus.get_dead_letter_queue(1))[0].event_id
    return event_id, failing, job_id


def _client(kernel: Kernel) -> httpx.AsyncClient:
    app = KernelApp(kernel)

    async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, "state": {"kernel": kernel}}, receive, send)

    transport = httpx.ASGITransport(app=with_state, client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://bench")


async def _time_page(http: httpx.AsyncClient, name: str, path: str, n: int) -> None:
    first = await http.get(path)  # warm-up (and a check)
    if first.status_code != 200:
        raise RuntimeError(f"{path}: HTTP {first.status_code}")
    times: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = await http.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200
    times.sort()
    p50 = statistics.median(times)
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    verdict = "met" if p95 <= TARGET_MS else "missed"
    print(
        f"page {SUITE}.{name} p50={p50:.1f}ms p95={p95:.1f}ms max={times[-1]:.1f}ms "
        f"target={TARGET_MS:.0f}ms {verdict} ({n} requests, {WAITING + DELAYED + FAILED} jobs, "
        f"{DEAD} dead letters)",
        flush=True,
    )
