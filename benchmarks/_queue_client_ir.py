"""Client-side instruction counts of the queue's ``add_job``: ``python -m benchmarks._queue_client_ir``.

The same case as :mod:`benchmarks.queue`'s ``add_job`` (a kernel booted with the suite's queue
config on a private redis-server; ours ``QueueManager.add_job``, raw SAQ's own
``RedisQueue.enqueue`` of the same job on the same client), counted in the client process by
:mod:`benchmarks._client_ir` (``python -m benchmarks --instructions queue`` records it as
``queue.add_job_client``). No worker runs, so nothing else is counted. Prints::

    client-ir queue.add_job ours=<Ir/op> raw=<Ir/op> ratio=<ours/raw>
"""

from __future__ import annotations

from typing import Any

from . import _client_ir

SUITE = "queue"
CALLS = 300
"""Calls per side."""
WARM = 50

CASES = {"add_job": 1.10}
"""The case and its target (the issue's, as for the timed case)."""


async def child(marks: _client_ir.Marks) -> None:
    """The counted process: both sides of ``add_job``, between markers."""
    from kernel_queue import QueueManager
    from kernel_redis.testing import private_redis_server
    from saq.queue.redis import RedisQueue

    from kernel.testing import boot_kernel

    from . import queue as suite

    with private_redis_server() as server:
        config: dict[str, Any] = {"redis": {"url": server.url}, "queue": suite.FAST}
        async with boot_kernel("redis", "queue", config=config) as kernel:
            manager = kernel.get(QueueManager)
            ours_q, raw_q = suite._name("o"), RedisQueue(kernel.registry.get("redis"), name=suite._name("r"))

            async def ours() -> Any:
                return await manager.add_job(ours_q, "send-notification", suite.DATA)

            async def raw() -> Any:
                return await raw_q.enqueue("send-notification", data=suite.DATA)

            await marks.calls("add_job", {"ours": ours, "raw": raw}, CALLS, WARM)


if __name__ == "__main__":
    raise SystemExit(_client_ir.main(__name__))
