"""The worker side: the ``send-notification`` processor, run by ``kernel worker``.

``[plugins.queue] processors = ["examples.service.notifications:register"]`` makes every
process that boots the queue plugin register it; only ``kernel worker`` processes run it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from kernel_queue import JobContext, QueueManager, notification_processor

from kernel.logging import trace_context

log = logging.getLogger("examples.service.notifications")

QUEUE = "notifications"
JOB = "send-notification"
SENT_KEY = "example:notifications:sent"
"""Redis hash: notification id -> ``sent_at`` of its first completed delivery."""
RUNS_KEY = "example:notifications:runs"
"""Redis hash: notification id -> how many times the processor ran it (> 1 only after a crash)."""
LATENCY_ENV = "EXAMPLE_SEND_LATENCY"
"""Seconds the simulated provider call takes (default 0); load and fault tests set it."""


def register(manager: QueueManager) -> None:
    """Register the processor on the ``notifications`` queue (the queue plugin calls this)."""

    latency = float(os.environ.get(LATENCY_ENV, "0") or 0)

    async def send_notification(job: JobContext) -> dict[str, Any]:
        data = job.data or {}
        # The queue does not carry trace ids: the publisher put the request's into the job data.
        with trace_context(data.get("trace_id")):
            log.info("sending notification", extra={"job_id": job.id, "attempt": job.attempts})
            await manager.redis.hincrby(RUNS_KEY, data.get("notification_id", job.id), 1)
            if latency:
                await asyncio.sleep(latency)  # the provider's API call in a real service
            result = await notification_processor(job)  # the sample processor: progress 10 -> 100
            await manager.redis.hsetnx(SENT_KEY, data.get("notification_id", job.id), result["sent_at"])
            log.info(
                "notification sent",
                extra={"user_id": data.get("user_id"), "job_id": job.id, "attempt": job.attempts},
            )
            return result

    send_notification.__qualname__ = "send_notification"
    manager.register_processor(QUEUE, JOB, send_notification, replace=True)
