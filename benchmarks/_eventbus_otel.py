"""The ``eventbus`` suite's otel cases: the same bus work with tracing on (the otel plugin) vs off.

Kept out of :mod:`benchmarks.eventbus` so that importing it does not change the instruction counts
of that suite's other cases (the otel code is imported late, after they ran). ``raw`` is the same
kernel work without the otel plugin; ``ours`` has it with ``sampler = "always_on"``:

- ``otel_publish``: ``publish`` on the memory bus, no subscriber (a PRODUCER span per event,
  exporter ``none``: the span's cost without its export);
- ``otel_publish_unsampled``: the same with ``sampler = "always_off"`` (what an unsampled
  event costs: a non-recording span, the trace id, the ``traceparent``);
- ``otel_publish_handle``: publish and handle on the memory bus, one subscriber, batches of 100
  (a PRODUCER and a CONSUMER span per event);
- ``redis_otel_publish`` (timed mode only): ``publish`` on the Redis bus (a private
  redis-server), the spans exported through the plugin's ``BatchSpanProcessor`` over OTLP/HTTP to
  a receiver on loopback, as in production.

Target ratio 1.15. A memory-bus publish is a few µs of pure Python, less than one span costs,
so the memory cases miss it by nature; their µs difference is the cost per traced event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from kernel_eventbus import EventBus, EventMetadata, MemoryEventBus

from kernel.testing import boot_kernel

from ._harness import acompare, acompare_batches, rounds

SUITE = "eventbus"
DATA = {"user_id": "123", "email": "user@example.com", "plan": "pro", "tags": ["a", "b"]}
TARGET = 1.15


async def _noop(data: Any, meta: EventMetadata) -> None:
    return None


@asynccontextmanager
async def _bus(
    otel: dict[str, Any] | None, redis_url: str | None = None, prefix: str = ""
) -> AsyncIterator[EventBus]:
    """The bus of a booted kernel: the eventbus plugin (on the redis plugin's server when
    ``redis_url`` is given), plus the otel plugin with the table ``otel`` when given."""
    plugins: tuple[str, ...] = ("eventbus",)
    config: dict[str, dict[str, Any]] = {"eventbus": {}}
    if redis_url is not None:
        plugins = ("redis", *plugins)
        config["redis"] = {"url": redis_url}
        config["eventbus"] = {"adapter": "redis", "prefix": prefix}
    if otel is not None:
        plugins = ("otel", *plugins)
        config["otel"] = otel
    async with boot_kernel(*plugins, config=config) as kernel:
        yield kernel.get(EventBus)


async def _publish(quick: bool, case: str, otel: dict[str, Any]) -> None:
    async with _bus(otel) as traced, _bus(None) as plain:

        async def ours() -> None:
            await traced.publish("bench.otel", DATA)

        async def raw() -> None:
            await plain.publish("bench.otel", DATA)

        ops = rounds(5000, 500)
        await acompare(SUITE, case, ours, raw, ops=ops, rounds_=rounds(9, 3), target=TARGET)


async def _publish_handle(quick: bool) -> None:
    batch = 100
    async with _bus({"sampler": "always_on", "exporter": "none"}) as traced, _bus(None) as plain:
        for bus in (traced, plain):
            bus.subscribe("bench.otel", _noop, group="g")

        def side(bus: EventBus) -> Any:
            assert isinstance(bus, MemoryEventBus)  # join(): wait until every event was handled

            async def run() -> int:
                for _ in range(batch):
                    await bus.publish("bench.otel", DATA)
                await bus.join()
                return batch

            return run

        await acompare_batches(
            SUITE,
            "otel_publish_handle",
            side(traced),
            side(plain),
            rounds_=rounds(7, 3),
            calls=rounds(20, 3),
            target=TARGET,
        )


async def memory(quick: bool) -> None:
    """The memory-bus cases (CPU-bound: also counted in instruction mode)."""
    await _publish(quick, "otel_publish", {"sampler": "always_on", "exporter": "none"})
    await _publish(quick, "otel_publish_unsampled", {"sampler": "always_off", "exporter": "none"})
    await _publish_handle(quick)


async def redis_publish(url: str, prefix: str, quick: bool) -> None:
    """``redis_otel_publish``: Redis bus publish, spans batch-exported to a loopback OTLP receiver.

    The events go to streams under ``prefix`` (the suite removes its keys)."""
    from ._http_otel import OtlpReceiver

    receiver = OtlpReceiver()
    otel = {"sampler": "always_on", "exporter": "otlp", "endpoint": receiver.endpoint}
    try:
        async with _bus(otel, url, prefix) as traced, _bus(None, url, prefix) as plain:

            async def ours() -> None:
                await traced.publish("bench.otel", DATA)

            async def raw() -> None:
                await plain.publish("bench.otel", DATA)

            ops = rounds(2000, 300)
            await acompare(
                SUITE, "redis_otel_publish", ours, raw, ops=ops, rounds_=rounds(9, 3), target=TARGET
            )
    finally:
        receiver.close()
    print(f"  redis_otel_publish: {receiver.exports} OTLP exports received", flush=True)
