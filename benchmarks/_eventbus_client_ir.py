"""Client-side instruction counts of the eventbus Redis cases: ``python -m benchmarks._eventbus_client_ir``.

The timed ``publish_vs_xadd`` and ``consume_batch100_vs_xreadgroup_xack`` move with the machine's
load; the instructions the client process executes per operation hardly do. This runs the two
cases of :mod:`benchmarks.eventbus` (same data, same raw baselines), and ``redis_otel_publish`` of
:mod:`benchmarks._eventbus_otel` (publish with tracing on vs off, its export included; target
1.15, see :func:`_otel_publish`), in the client process counted
by :mod:`benchmarks._client_ir` (callgrind, markers around each side); the private redis-server is
a separate process, so only the client is counted. Prints::

    client-ir eventbus.<case> ours=<Ir/op> raw=<Ir/op> ratio=<ours/raw>

``python -m benchmarks --instructions eventbus`` (and ``--with-instructions``) runs it too and
records them as ``eventbus.<case>_client`` with their targets (1.10; 1.15 for otel). Not
exact like the CPU-bound counts: how often the event loop finds a reply already there
varies a little, so counts move by ~0.5% (publish) to ~2% (consume) between runs. Valgrind
slows the client ~50x, so the consumer's read_block is scaled up as much (``READ_BLOCK``):
its time-based housekeeping (moving due retries, once per read_block) then runs as often per
event as in real time. Its other clocks are set so that valgrind's slowdown cannot add work
the real run never does: ``max_ack_delay`` (acknowledge early when a batch's handling takes
longer; a batch of 100 takes ~1 ms in real time against the 50 ms default, but 0.1-0.6 s under
valgrind on a loaded machine, which made the consume count grow with the machine's load: 48k
to 62k per event) and ``reclaim_interval`` (runs once, at start, in a real run).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import _client_ir

SUITE = "eventbus"
PUBLISHES = 300
EVENTS = 10_000
READ_BLOCK = 2.5
"""The consumer's read_block under valgrind: the suite's 0.05 s times valgrind's ~50x slowdown."""
MAX_ACK_DELAY = 3600.0
"""Never reached under valgrind, as the default 0.05 s is never reached by a batch in real time."""
RECLAIM_INTERVAL = 3600.0
"""Reclaim once, at start, as in a real run (a few tenths of a second against the default 5 s)."""


async def child(marks: _client_ir.Marks) -> None:
    """The counted process: both sides of both cases, between markers."""
    import redis.asyncio as aioredis
    from kernel_eventbus._redis import RedisEventBus
    from kernel_redis import RedisServer

    from . import eventbus as suite

    class Scaled(RedisEventBus):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["read_block"] = READ_BLOCK
            kwargs["max_ack_delay"] = MAX_ACK_DELAY
            kwargs["reclaim_interval"] = RECLAIM_INTERVAL
            super().__init__(*args, **kwargs)

    suite.RedisEventBus = Scaled  # type: ignore[attr-defined]  # what suite._consume_ours builds
    server = RedisServer().start()
    client = aioredis.Redis.from_url(server.url)
    prefix = f"bench-{secrets.token_hex(4)}"
    try:
        bus = RedisEventBus(client, prefix=prefix)
        stream = bus.stream_key("bench.publish")

        async def ours() -> None:
            await bus.publish("bench.publish", suite.DATA)

        async def raw() -> None:
            await client.xadd(stream, {"d": json.dumps(suite.DATA)}, maxlen=100_000, approximate=True)

        await marks.calls("publish_vs_xadd", {"ours": ours, "raw": raw}, PUBLISHES, 50)
        key = bus.stream_key("bench.consume")
        pipe = client.pipeline(transaction=False)
        body = json.dumps(suite.DATA)
        for i in range(EVENTS):
            pipe.xadd(key, {"e": f"1\tbench-{i}\t2026-01-01T00:00:00.000Z\tt\t\n{body}"})
        await pipe.execute()
        await suite._consume_ours(client, prefix, EVENTS, 100)  # warm-up
        await suite._consume_raw(client, key, EVENTS, 100)
        case = "consume_batch100_vs_xreadgroup_xack"
        marks.mark()
        await suite._consume_ours(client, prefix, EVENTS, 100)
        marks.counted(f"{case}.ours", EVENTS)
        await suite._consume_raw(client, key, EVENTS, 100)
        marks.counted(f"{case}.raw", EVENTS)
        await _otel_publish(marks, server.url, prefix)
    finally:
        for pattern in (f"{prefix}:*", f"{{{prefix}*"):
            keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
            if keys:
                await client.delete(*keys)
        await client.aclose()
        server.close()


async def _otel_publish(marks: _client_ir.Marks, url: str, prefix: str) -> None:
    """``redis_otel_publish``: publish on the Redis bus with tracing on (the otel plugin, sampler
    always_on, batch OTLP export) vs off, as :func:`benchmarks._eventbus_otel.redis_publish`.

    The OTLP receiver is another process (like the redis-server: not counted). The spans of the
    warm-up are exported before the first marker, and the traced side's segment ends with a flush
    of the span processor: every span of the segment, its encoding and POST, counts in it (the
    export thread's work), and no other's.
    """
    from kernel_eventbus import EventBus
    from kernel_otel import Tracing

    from kernel.testing import boot_kernel

    from ._eventbus_otel import DATA, _bus

    with _receiver() as endpoint:
        otel = {"sampler": "always_on", "exporter": "otlp", "endpoint": endpoint}
        config = {"redis": {"url": url}, "eventbus": {"adapter": "redis", "prefix": prefix}, "otel": otel}
        async with (
            boot_kernel("otel", "redis", "eventbus", config=config) as kernel,
            _bus(None, url, prefix) as plain,
        ):
            traced, tracing = kernel.get(EventBus), kernel.get(Tracing)
            for bus, flush in ((traced, tracing.force_flush), (plain, None)):
                for _ in range(WARM_OTEL):
                    await bus.publish("bench.otel", DATA)
                if flush is not None:
                    flush()
                marks.mark()
                for _ in range(PUBLISHES):
                    await bus.publish("bench.otel", DATA)
                if flush is not None:
                    flush()
                side = "ours" if flush is not None else "raw"
                marks.counted(f"redis_otel_publish.{side}", PUBLISHES)


@contextmanager
def _receiver() -> Iterator[str]:
    """An OTLP/HTTP receiver (:class:`._http_otel.OtlpReceiver`) in another process: its endpoint."""
    code = (
        "import sys; from benchmarks._http_otel import OtlpReceiver; r = OtlpReceiver(); "
        "print(r.endpoint, flush=True); sys.stdin.read()"
    )
    pipe = subprocess.PIPE
    with subprocess.Popen([sys.executable, "-c", code], stdin=pipe, stdout=pipe, text=True) as receiver:
        assert receiver.stdout is not None and receiver.stdin is not None
        try:
            yield receiver.stdout.readline().strip()
        finally:
            receiver.stdin.close()  # it ends when its stdin does
            receiver.wait(10)


WARM_OTEL = 50
CASES = {"publish_vs_xadd": 1.10, "consume_batch100_vs_xreadgroup_xack": 1.10, "redis_otel_publish": 1.15}
"""The cases and their targets (the issue's, as for the timed cases)."""


if __name__ == "__main__":
    raise SystemExit(_client_ir.main(__name__))
