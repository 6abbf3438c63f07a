"""Shared by the console's httpx and browser tests: fast queue timers, key cleanup, test handlers."""

from __future__ import annotations

from typing import Any

from kernel_queue import queue_tag
from kernel_redis.testing import TEST_SET_MEMBERS

QUEUE_FAST: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "stall_timeout": 1.0,
    "sweep_interval": 0.25,
    "schedule_interval": 0.05,
    "poll_interval": 0.1,
    "shutdown_grace": 2.0,
}
"""Short queue timers: workers notice pause/resume and new jobs quickly."""


async def delete_test_keys(client: Any, prefix: str, *queues: str) -> None:
    """Remove the event bus keys of ``prefix`` and every key of ``queues``."""
    patterns = [f"{prefix}:*", f"{{{prefix}*"]  # the bus's keys: "prefix:..." and "{prefix:...}..."
    for q in queues:
        tag = queue_tag(q)  # every key of a queue carries its hash tag
        patterns += [f"saq:{tag}:*", f"saq:job:{tag}:*", f"saq:abort:{tag}:*"]
    for pattern in patterns:
        keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])
    for shared_set in TEST_SET_MEMBERS:  # the queue plugin's set of queue names
        if queues:
            await client.srem(shared_set, *queues)
