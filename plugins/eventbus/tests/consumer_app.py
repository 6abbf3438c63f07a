"""A consumer process for the fault tests: boots redis + eventbus through the kernel and handles events.

Usage: ``python consumer_app.py '<json config>'``; prints ``ready`` once subscribed.
Modes: ``record`` counts each handling in ``<prefix>:handled``; ``replay`` applies an
idempotent side effect and kills itself once per eighth event after applying it (before the ack).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

from kernel_eventbus import EventBus, EventMetadata

from kernel.testing import boot_kernel


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
                if meta.replayed_at and data["i"] % 8 == 0 and await client.hsetnx(
                        f"{prefix}:crashed", meta.event_id, 1):
                    os.kill(os.getpid(), signal.SIGKILL)  # after the side effect, before the ack

            bus.subscribe(cfg["event"], handle, group="billing")
        await asyncio.sleep(0.2)  # let the consumer group exist before the parent publishes
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
