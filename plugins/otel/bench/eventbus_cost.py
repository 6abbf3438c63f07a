"""Cost of the otel plugin on an event-bus publish (memory adapter), run as a script.

One kernel per case (eventbus with the memory adapter, no subscriber; the otel plugin on or off),
``OPS`` publishes per round, rounds alternating between the cases; prints the best round's µs per
publish and the ratio to "off".
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import AsyncExitStack
from typing import Any

from kernel_eventbus import EventBus

from kernel.testing import boot_kernel

OPS = int(os.environ.get("OPS", "5000"))
ROUNDS = int(os.environ.get("ROUNDS", "9"))


async def _round(bus: EventBus) -> float:
    t0 = time.perf_counter()
    for _ in range(OPS):
        await bus.publish("user.created", {"user_id": "42"})
    return (time.perf_counter() - t0) / OPS * 1e6


async def main() -> None:
    cases: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
        "off": (("eventbus",), {}),
        "otel, always_off sampler": (("otel", "eventbus"), {"exporter": "none", "sampler": "always_off"}),
        "otel, sampled, exporter none": (("otel", "eventbus"), {"exporter": "none"}),
    }
    async with AsyncExitStack() as stack:
        buses: dict[str, EventBus] = {}
        for name, (plugins, table) in cases.items():
            config = {"otel": table} if table else {}
            kernel = await stack.enter_async_context(boot_kernel(*plugins, config=config))
            buses[name] = kernel.get(EventBus)
            await _round(buses[name])  # warm up
        best = {name: float("inf") for name in cases}
        for _ in range(ROUNDS):
            for name, bus in buses.items():
                best[name] = min(best[name], await _round(bus))
    base = best["off"]
    print(f"{'case':32} {'µs/publish':>10} {'ratio':>6}   (best of {ROUNDS} rounds x {OPS})")
    for name, value in best.items():
        print(f"{name:32} {value:10.1f} {value / base:6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
