"""Client-side instruction counts of the eventbus Redis cases: ``python -m benchmarks._eventbus_client_ir``.

The timed ``publish_vs_xadd`` and ``consume_batch100_vs_xreadgroup_xack`` move with the machine's
load; the instructions the client process executes per operation hardly do. This runs the two
cases of :mod:`benchmarks.eventbus` (same data, same raw baselines) in a child process under
``valgrind --tool=callgrind`` with markers around each side (see :mod:`benchmarks._instructions`
for the marker scheme); the private redis-server is a separate process, so only the client is
counted. Prints::

    client-ir eventbus.<case> ours=<Ir/op> raw=<Ir/op> ratio=<ours/raw>

``python -m benchmarks --instructions eventbus`` (and ``--with-instructions``) runs it too and
records both as ``eventbus.<case>_client`` with their targets (1.10). Not exact like the CPU-bound
counts: how often the event loop finds a reply already there
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

import asyncio
import ctypes
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PUBLISHES = 300
EVENTS = 10_000
READ_BLOCK = 2.5
"""The consumer's read_block under valgrind: the suite's 0.05 s times valgrind's ~50x slowdown."""
MAX_ACK_DELAY = 3600.0
"""Never reached under valgrind, as the default 0.05 s is never reached by a batch in real time."""
RECLAIM_INTERVAL = 3600.0
"""Reclaim once, at start, as in a real run (a few tenths of a second against the default 5 s)."""


async def _child() -> None:
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

    suite.RedisEventBus = Scaled  # type: ignore[misc]  # what suite._consume_ours builds
    marker = ctypes.pythonapi.Py_IsInitialized
    marks = 0
    plan: list[tuple[str, int, int]] = []

    def mark() -> int:
        nonlocal marks
        marker()
        marks += 1
        return marks

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

        for side, fn in (("publish_vs_xadd.ours", ours), ("publish_vs_xadd.raw", raw)):
            for _ in range(50):
                await fn()
            mark()
            for _ in range(PUBLISHES):
                await fn()
            plan.append((side, mark(), PUBLISHES))
        key = bus.stream_key("bench.consume")
        pipe = client.pipeline(transaction=False)
        body = json.dumps(suite.DATA)
        for i in range(EVENTS):
            pipe.xadd(key, {"e": f"1\tbench-{i}\t2026-01-01T00:00:00.000Z\tt\t\n{body}"})
        await pipe.execute()
        await suite._consume_ours(client, prefix, EVENTS, 100)  # warm-up
        await suite._consume_raw(client, key, EVENTS, 100)
        case = "consume_batch100_vs_xreadgroup_xack"
        mark()
        await suite._consume_ours(client, prefix, EVENTS, 100)
        plan.append((f"{case}.ours", mark(), EVENTS))
        await suite._consume_raw(client, key, EVENTS, 100)
        plan.append((f"{case}.raw", mark(), EVENTS))
    finally:
        for pattern in (f"{prefix}:*", f"{{{prefix}*"):
            keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
            if keys:
                await client.delete(*keys)
        await client.aclose()
        server.close()
    print("#plan " + json.dumps(plan), flush=True)


def _total(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"{dump}: no totals line")


CASES = {"publish_vs_xadd": 1.10, "consume_batch100_vs_xreadgroup_xack": 1.10}
"""The two cases and their targets (the issue's, as for the timed cases)."""


def count() -> None:
    """Count both cases and record them (``eventbus.<case>_client``, instructions) with their targets.

    What ``python -m benchmarks --instructions eventbus`` (and ``--with-instructions``) adds to the
    memory adapter's counts.
    """
    from . import _harness

    per_op = measure()
    for case, target in CASES.items():
        ours, raw = per_op[f"{case}.ours"], per_op[f"{case}.raw"]
        _harness.emit_counts("eventbus", f"{case}_client", ours, raw, target=target)


def measure() -> dict[str, float]:
    """Client Ir per operation of each side (``<case>.ours``, ``<case>.raw``), from one callgrind run."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("needs valgrind on PATH (Debian: apt-get install -y valgrind)")
    with tempfile.TemporaryDirectory(prefix="bench-client-ir-") as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
        cmd = [valgrind, "--tool=callgrind", "--dump-before=ffi_call", f"--callgrind-out-file={out}"]
        cmd += [sys.executable, "-m", "benchmarks._eventbus_client_ir", "--child"]
        run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        plans = [line[len("#plan ") :] for line in run.stdout.splitlines() if line.startswith("#plan ")]
        if run.returncode or not plans:
            raise SystemExit(
                f"callgrind run failed (exit {run.returncode}):\n{run.stdout[-3000:]}{run.stderr[-3000:]}"
            )
        return {side: _total(Path(f"{out}.{seg}")) / n for side, seg, n in json.loads(plans[0])}


def main() -> int:
    if sys.argv[1:] == ["--child"]:
        asyncio.run(_child())
        return 0
    per_op = measure()
    for case in CASES:
        ours, raw = per_op[f"{case}.ours"], per_op[f"{case}.raw"]
        print(f"client-ir eventbus.{case} ours={ours:.0f} raw={raw:.0f} ratio={ours / raw:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
