"""Client-side instruction counts of the Redis suites' cases (eventbus, cache, queue).

The timed Redis cases move with the machine's load; the instructions the client process executes
per operation hardly do. Each ``benchmarks._<suite>_client_ir`` module runs its cases (the suite's
own data and raw baselines) in a child process under ``valgrind --tool=callgrind
--dump-before=ffi_call``, with a *marker* (a ctypes call, see :mod:`benchmarks._instructions`)
before and after the counted calls of each side; the private redis-server is another process, so
only the client (our layer, redis-py, hiredis) is counted. Ir/op = the side's segment / its calls
(warm-up calls run before the first marker). Not exact like the CPU-bound counts: how often the
event loop finds a reply already there varies a little between runs.

A client module defines ``SUITE``, ``CASES`` (case -> target) and ``async def child(marks)``, which
runs every side through :class:`Marks` (sides ``<case>.ours`` and ``<case>.raw``), and ends with
``raise SystemExit(_client_ir.main(__name__))``. ``python -m benchmarks._<suite>_client_ir`` prints::

    client-ir <suite>.<case> ours=<Ir/op> raw=<Ir/op> ratio=<ours/raw>

``python -m benchmarks --instructions <suite>`` (and ``--with-instructions``) runs it through
:func:`count`, which records ``<suite>.<case>_client`` with the case's target.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from . import _harness
from ._instructions import callgrind, dump_total

ROOT = Path(__file__).resolve().parents[1]
MODULES = {
    "cache": "benchmarks._cache_client_ir",
    "eventbus": "benchmarks._eventbus_client_ir",
    "queue": "benchmarks._queue_client_ir",
}
"""Suite -> its client-count module."""
PLAN = "#plan "


class Marks:
    """The child's markers: each ends a callgrind segment (a numbered dump file)."""

    def __init__(self) -> None:
        import ctypes

        self._marker = ctypes.pythonapi.Py_IsInitialized
        self.marks = 0
        self.plan: list[tuple[str, int, int]] = []

    def mark(self) -> int:
        """End the current segment; returns its number (the dump file's suffix)."""
        self._marker()
        self.marks += 1
        return self.marks

    def counted(self, side: str, ops: int) -> None:
        """End the segment of ``side`` (``<case>.ours`` or ``<case>.raw``), which did ``ops`` operations."""
        self.plan.append((side, self.mark(), ops))

    async def calls(
        self, case: str, sides: Mapping[str, Callable[[], Awaitable[Any]]], calls: int, warm: int
    ) -> None:
        """Count each side of ``case`` (``{"ours": fn, "raw": fn}``): ``warm`` calls, mark, ``calls``."""
        for side, fn in sides.items():
            for _ in range(warm):
                await fn()
            self.mark()
            for _ in range(calls):
                await fn()
            self.counted(f"{case}.{side}", calls)


def measure(module: str) -> dict[str, float]:
    """Client Ir per operation of each side (``<case>.ours``, ``<case>.raw``), from one callgrind run."""
    with tempfile.TemporaryDirectory(prefix="bench-client-ir-") as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
        cmd = [*callgrind(out), sys.executable, "-m", module, "--child"]
        run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        plans = [line[len(PLAN) :] for line in run.stdout.splitlines() if line.startswith(PLAN)]
        if run.returncode or not plans:
            raise RuntimeError(
                f"callgrind run of {module} failed (exit {run.returncode}):\n"
                f"{run.stdout[-3000:]}{run.stderr[-3000:]}"
            )
        return {side: dump_total(Path(f"{out}.{seg}")) / n for side, seg, n in json.loads(plans[0])}


def count(suite: str) -> list[_harness.Result]:
    """Count ``suite``'s client cases and record them (``<suite>.<case>_client``) with their targets."""
    module = importlib.import_module(MODULES[suite])
    per_op = measure(module.__name__)
    return [
        _harness.emit_counts(
            suite, f"{case}_client", per_op[f"{case}.ours"], per_op[f"{case}.raw"], target=target
        )
        for case, target in module.CASES.items()
    ]


def main(module_name: str) -> int:
    """A client module's ``__main__``: ``--child`` is the counted process, else count and print."""
    module = sys.modules[module_name]
    if sys.argv[1:] == ["--child"]:
        marks = Marks()
        asyncio.run(module.child(marks))
        print(PLAN + json.dumps(marks.plan), flush=True)
        return 0
    per_op = measure(module.__spec__.name if module.__spec__ else module_name)
    for case in module.CASES:
        ours, raw = per_op[f"{case}.ours"], per_op[f"{case}.raw"]
        print(f"client-ir {module.SUITE}.{case} ours={ours:.0f} raw={raw:.0f} ratio={ours / raw:.3f}")
    return 0
