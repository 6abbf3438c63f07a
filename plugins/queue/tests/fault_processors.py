"""Processors the fault tests run inside real ``kernel worker`` processes.

Loaded through ``[plugins.queue] processors = ["fault_processors:register"]``; every run is
logged to a Redis list so the test process can count runs, completions and timings.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from kernel_queue import JobContext, QueueManager
from kernel_redis import connect


def register(manager: QueueManager) -> None:
    queue = os.environ["KQ_TEST_QUEUE"]
    client = connect(os.environ["KQ_TEST_REDIS"])
    log_key = f"kqtest:{queue}:log"
    pid = os.getpid()
    started = asyncio.Event()
    starting = asyncio.Lock()

    async def record(event: str, job: JobContext) -> None:
        if not started.is_set():
            # The worker's first jobs log at once. redis-py 7.4's asyncio cluster client fails some
            # commands sent while it is still starting (AttributeError on a connection it closes):
            # start it once, first (a failed log write fails the job the test counts on).
            async with starting:
                if not started.is_set():
                    await client.initialize()
                    started.set()
        entry = {"e": event, "id": job.id, "pid": pid, "t": time.time(), "attempts": job.attempts}
        await client.rpush(log_key, json.dumps(entry))

    async def work(job: JobContext) -> int:
        await record("start", job)
        await asyncio.sleep(float(job.data.get("sleep", 0.05)))
        await record("done", job)
        return pid

    async def silent(job: JobContext) -> int:
        # Longer than stall_timeout, never reports progress: only the automatic heartbeat keeps it.
        await record("start", job)
        await asyncio.sleep(float(job.data["sleep"]))
        await record("done", job)
        return pid

    async def tick(job: JobContext) -> Any:
        await record("start", job)
        return pid

    manager.register_processor(queue, "work", work)
    manager.register_processor(queue, "silent", silent)
    manager.register_processor(queue, "tick", tick)
