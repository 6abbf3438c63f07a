"""A consumer process for the fault tests: boots redis + eventbus through the kernel and handles events.

Usage: ``python consumer_app.py '<json config>'``; prints ``ready`` once subscribed.
Modes: ``record`` counts each handling in ``<prefix>:handled``; ``replay`` applies an
idempotent side effect and kills itself once per eighth event after applying it (before the ack).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from typing import Any

from kernel_eventbus import EventBus, EventMetadata
from redis.exceptions import ResponseError

from kernel.testing import boot_kernel


async def group_exists(client: Any, stream: str, group: str, within: float = 20.0) -> None:
    """Wait until the consumer group ``group`` exists on ``stream``: then the parent may publish."""
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(ResponseError):  # no such stream yet
            if any(g["name"] in (group, group.encode()) for g in await client.xinfo_groups(stream)):
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"consumer group {group!r} was not created on {stream!r} within {within}s")
        await asyncio.sleep(0.01)


async def main(cfg: dict[str, Any]) -> None:
    config = {"redis": {"url": cfg["url"]}, "eventbus": cfg["eventbus"]}
    async with boot_kernel("redis", "eventbus", config=config) as k:
        bus = k.registry.get(EventBus)
        client = k.registry.get("redis")
        prefix = cfg["eventbus"]["prefix"]
        if cfg["mode"] == "record":

            async def record(data: Any, meta: EventMetadata) -> None:
                await client.hincrby(f"{prefix}:handled", meta.event_id, 1)
                await asyncio.sleep(cfg.get("sleep", 0.002))

            bus.subscribe(cfg["event"], record, group="recorder")
        else:

            async def apply_side_effect(data: Any, meta: EventMetadata) -> None:
                await client.hincrby(f"{prefix}:applied", meta.event_id, 1)

            once = bus.idempotent(apply_side_effect)

            async def handle(data: Any, meta: EventMetadata) -> None:
                await client.hincrby(f"{prefix}:deliveries", meta.event_id, 1)
                if data["broken"] and not await client.exists(f"{prefix}:fixed"):
                    raise RuntimeError("payment gateway down")
                await once(data, meta)
                if (
                    meta.replayed_at
                    and data["i"] % 8 == 0
                    and await client.hsetnx(f"{prefix}:crashed", meta.event_id, 1)
                ):
                    os.kill(os.getpid(), signal.SIGKILL)  # after the side effect, before the ack

            bus.subscribe(cfg["event"], handle, group="billing")
        await group_exists(
            client,
            bus.stream_key(cfg["event"]),  # type: ignore[attr-defined]
            "recorder" if cfg["mode"] == "record" else "billing",
        )
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
