"""Client-side instruction counts of the cache's Redis cases: ``python -m benchmarks._cache_client_ir``.

The same cases as :mod:`benchmarks.cache` (``get``, ``set``, ``get_many_20``, ``set_many_20``: same
values, same raw baselines, decoding and encoding with orjson) in a child process under
``valgrind --tool=callgrind``, markers around each side as in :mod:`benchmarks._eventbus_client_ir`;
the private redis-server is another process, so only the client (our layer, redis-py, hiredis) is
counted. Counts move by a few tenths of a percent between runs (how often the event loop finds a
reply already there). Prints::

    client-ir cache.<case> ours=<Ir/op> raw=<Ir/op> ratio=<ours/raw>
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CALLS = 300
"""Calls per side and case (batch cases: calls of 20 keys; counts are per call)."""
WARM = 50

CASES = {"get": 1.05, "set": 1.05, "get_many_20": 1.10, "set_many_20": 1.10}
"""The cases and their targets (the issue's, as for the timed cases)."""


async def _child() -> None:
    from kernel_cache import CacheManager
    from kernel_redis.testing import private_redis_server

    from kernel.testing import boot_kernel

    from . import cache as suite

    marker = ctypes.pythonapi.Py_IsInitialized
    marks = 0
    plan: list[tuple[str, int, int]] = []

    def mark() -> int:
        nonlocal marks
        marker()
        marks += 1
        return marks

    with private_redis_server() as server:
        config = {"redis": {"url": server.url}, "cache": {"backend": "redis", "key_prefix": "bench"}}
        async with boot_kernel("redis", "cache", config=config) as kernel:
            cache = kernel.get(CacheManager).namespace("user", default_ttl=3600)
            raw: Any = cache.backend.client  # type: ignore[attr-defined]
            key, full = "profile:123", cache.key("profile:123")
            keys = [f"item:{i}" for i in range(suite.BATCH)]
            fulls = [cache.key(k) for k in keys]
            items = dict.fromkeys(keys, suite.VALUE)
            await cache.set(key, suite.VALUE)
            await cache.set_many(items)
            loads, dumps = suite.loads, suite.dumps

            async def raw_pipeline() -> Any:
                async with raw.pipeline(transaction=False) as pipe:
                    for k, value in zip(fulls, items.values(), strict=True):
                        pipe.set(k, dumps(value), ex=3600)
                    return await pipe.execute()

            cases = {
                "get": (lambda: cache.get(key), lambda: _loaded(raw.get(full), loads)),
                "set": (
                    lambda: cache.set(key, suite.VALUE, 3600),
                    lambda: raw.set(full, dumps(suite.VALUE), ex=3600),
                ),
                "get_many_20": (lambda: cache.get_many(keys), lambda: _loaded_many(raw.mget(fulls), loads)),
                "set_many_20": (lambda: cache.set_many(items, 3600), raw_pipeline),
            }
            for case, (ours, raw_side) in cases.items():
                for side, fn in (("ours", ours), ("raw", raw_side)):
                    for _ in range(WARM):
                        await fn()
                    mark()
                    for _ in range(CALLS):
                        await fn()
                    plan.append((f"{case}.{side}", mark(), CALLS))
    print("#plan " + json.dumps(plan), flush=True)


async def _loaded(reply: Any, loads: Any) -> Any:
    return loads(await reply)


async def _loaded_many(reply: Any, loads: Any) -> Any:
    return [loads(data) for data in await reply]


def _total(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"{dump}: no totals line")


def measure() -> dict[str, float]:
    """Client Ir per call of each side (``<case>.ours``, ``<case>.raw``), from one callgrind run."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("needs valgrind on PATH (Debian: apt-get install -y valgrind)")
    with tempfile.TemporaryDirectory(prefix="bench-cache-ir-") as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
        cmd = [valgrind, "--tool=callgrind", "--dump-before=ffi_call", f"--callgrind-out-file={out}"]
        cmd += [sys.executable, "-m", "benchmarks._cache_client_ir", "--child"]
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
        print(f"client-ir cache.{case} ours={ours:.0f} raw={raw:.0f} ratio={ours / raw:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
