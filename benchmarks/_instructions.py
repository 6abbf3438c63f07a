"""Instruction counts: ``python -m benchmarks --instructions [suite ...]``.

Timings on a shared 2-core machine move with everything else running on it; the number of
instructions a piece of Python executes does not. For the CPU-bound suites (those defining
``cpu_bound(quick)``: kernel_boot with the registry, metrics_record, http_middleware in-process,
the eventbus memory adapter, serializers) this mode prints, per case::

    bench <suite>.<case> ours=<Ir/op> raw=<Ir/op> ratio=<ours/raw> unit=instructions

How it counts (kept deliberately simple):

- The suite's ``cpu_bound`` runs once, in a child process under
  ``valgrind --tool=callgrind --dump-before=ffi_call``. Everything that could change its path
  from one run to the next is pinned: ``PYTHONHASHSEED=0`` and a fixed minimal environment and
  command line (so every dict and set is laid out the same way), no address-space randomisation
  (``setarch -R``, when available, so alignment-dependent C code takes the same path). The
  child reports its plan on its last stdout line, not through a (random) file name. A first
  run without valgrind brings every ``.pyc`` up to date, so the counted run never compiles.
  Inside the child, clocks advance 1 µs per reading and random bytes come from a seeded
  generator (:func:`_pin_clocks_and_randomness`): timestamps, durations and ids are the same
  in every run, and so are the paths that format or bucket them.
- In that child the harness times nothing. For each case and side it makes a few warm-up calls,
  then: *marker*, N calls, *marker*, the same loop with 0 calls, *marker*.
- A *marker* is a ctypes call (``Py_IsInitialized``); every ctypes call enters libffi's
  ``ffi_call``, so callgrind writes the instructions counted since the previous marker to a
  numbered file and starts again from zero.
- Ir per operation = (segment with N calls - segment with 0 calls) / N: interpreter start-up,
  imports, set-up, warm-up and the markers' own cost all drop out. Every instruction the side
  causes in between counts, including event-loop work and other tasks it wakes (the memory
  adapter's delivery).
- N is a tenth of the case's full-mode ``ops`` (at least 5; batch cases: a tenth of ``calls``,
  at least 1 batch), fixed per case, so a run repeats exactly. If anything else calls
  ``ffi_call`` (ctypes or cffi) while counting, the dump numbering no longer matches the markers
  and the run fails rather than print wrong numbers.

Two runs of the same code give identical counts, however loaded the machine is. The counts
depend on the Python build and library versions, not on load: compare them between two commits
on the same machine image. A change elsewhere in the imported code can still move a count by a
few instructions per operation (e.g. ``registry_get_by_type``: type-keyed dicts hash by address,
and addresses follow the heap's history): read differences below ~0.1% as noise.

A suite may also define ``served_instructions()``: its served cases counted in the uvicorn server
process, per request over real HTTP (:mod:`benchmarks._served_ir`); ``count`` runs it after the
in-process cases. The Redis suites' cases are counted client side (:mod:`benchmarks._client_ir`,
``<suite>.<case>_client``: eventbus, cache, queue); ``count`` runs those last.

Needs Debian's ``valgrind`` (``apt-get install -y valgrind``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import itertools
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from . import _harness

ROOT = Path(__file__).resolve().parents[1]
WARM = 20
"""Warm-up calls per side (at most N) before counting: caches filled, bytecode specialised."""
MIN_CALLS = 5


def _run(fn: Callable[[], Any], n: int) -> None:
    for _ in range(n):
        fn()


async def _arun(fn: Callable[[], Awaitable[Any]], n: int) -> int:
    done = 0
    for _ in range(n):
        result = await fn()
        done += result if isinstance(result, int) else 1
    return done


def _nothing() -> None:
    return None


async def _anothing() -> None:
    return None


EPOCH = 1_767_225_600
"""The pinned wall clock's start: 2026-01-01T00:00:00Z."""


def _pin_clocks_and_randomness() -> None:
    """Make every clock reading and random byte the same in every run.

    Code that formats a timestamp, buckets a duration or turns random bytes into an id takes a
    path that depends on the values; with real clocks the counts would wander by a few hundred
    instructions. The clocks become C-level counters that advance 1 µs per reading (so they stay
    about as cheap as the real ones), ``os.urandom`` a seeded generator, and ``random`` is seeded.
    Done before any suite module is imported, so ``from time import perf_counter`` gets them too.
    """
    micro = 1e-6
    clocks: dict[str, Callable[[], float | int]] = {
        "time": itertools.count(float(EPOCH), micro).__next__,
        "time_ns": itertools.count(EPOCH * 10**9, 1000).__next__,
        "monotonic": itertools.count(1000.0, micro).__next__,
        "monotonic_ns": itertools.count(1000 * 10**9, 1000).__next__,
        "perf_counter": itertools.count(1000.0, micro).__next__,
        "perf_counter_ns": itertools.count(1000 * 10**9, 1000).__next__,
    }
    for name, clock in clocks.items():
        setattr(time, name, clock)
    os.urandom = random.Random(0).randbytes
    random.seed(0)


def _prime() -> None:
    """Run the counting loops until CPython has specialised them, before any case is counted.

    Otherwise the first cases would pay an unspecialised loop and later ones a specialised one.
    """
    _run(_nothing, 64)
    coroutine = _arun(_anothing, 64)
    with contextlib.suppress(StopIteration):
        coroutine.send(None)  # never suspends: no event loop needed


class Callgrind:
    """The child's :class:`benchmarks._harness.Counter`: markers around N calls and 0 calls."""

    def __init__(self) -> None:
        import ctypes

        self._marker = ctypes.pythonapi.Py_IsInitialized
        self.marks = 0
        self.plan: list[dict[str, Any]] = []

    def mark(self) -> int:
        """End the current callgrind segment; returns its number (the dump file's suffix)."""
        self._marker()
        self.marks += 1
        return self.marks

    def _record(
        self, suite: str, case: str, side: str, ops: int, segment: int, zero: int, target: float | None
    ) -> None:
        self.plan.append(
            {
                "suite": suite,
                "case": case,
                "side": side,
                "ops": ops,
                "segment": segment,
                "zero": zero,
                "target": target,
            }
        )

    def sync(
        self, suite: str, case: str, side: str, fn: Callable[[], Any], calls: int, target: float | None
    ) -> None:
        n = max(calls // 10, MIN_CALLS)
        _run(fn, min(WARM, n))
        self.mark()
        _run(fn, n)
        segment = self.mark()
        _run(fn, 0)
        zero = self.mark()
        self._record(suite, case, side, n, segment, zero, target)

    async def asynchronous(
        self,
        suite: str,
        case: str,
        side: str,
        fn: Callable[[], Awaitable[Any]],
        calls: int,
        target: float | None,
        batches: bool,
    ) -> None:
        n = max(calls // 10, 1) if batches else max(calls // 10, MIN_CALLS)
        await _arun(fn, 1 if batches else min(WARM, n))
        self.mark()
        done = await _arun(fn, n)
        ops = done if batches else n
        segment = self.mark()
        await _arun(fn, 0)
        zero = self.mark()
        self._record(suite, case, side, ops, segment, zero, target)


def cpu_suites() -> list[str]:
    """Suites with CPU-bound cases (a ``cpu_bound`` function)."""
    from .__main__ import suites

    return [name for name in suites() if hasattr(importlib.import_module(f"benchmarks.{name}"), "cpu_bound")]


def counted_suites() -> list[str]:
    """Suites ``--instructions`` counts: CPU-bound cases, client counts of Redis cases
    (:mod:`benchmarks._client_ir`), or both."""
    from ._client_ir import MODULES

    return sorted({*cpu_suites(), *MODULES})


PLAN = "#instructions-plan "
CHILD_ENV = {"PYTHONHASHSEED": "0", "PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C.UTF-8"}


def _child(suite: str) -> None:
    _pin_clocks_and_randomness()
    _prime()
    counter = Callgrind()
    _harness.COUNTER = counter
    _harness.QUICK = False
    module = importlib.import_module(f"benchmarks.{suite}")
    if inspect.iscoroutinefunction(module.cpu_bound):
        anyio.run(module.cpu_bound, False)
    else:
        module.cpu_bound(False)
    print(PLAN + json.dumps({"marks": counter.marks, "plan": counter.plan}), flush=True)


def dump_total(dump: Path) -> int:
    """The instructions counted in one callgrind dump file (its ``totals:`` or ``summary:`` line)."""
    with dump.open() as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise RuntimeError(f"{dump}: no totals line (not a callgrind output file?)")


def callgrind(out: Path, *options: str) -> list[str]:
    """The start of a counted command: callgrind with a marker dump before each ``ffi_call``, into
    ``out.<n>``, under ``setarch -R`` where there is one (no address-space randomisation, so
    alignment-dependent C code such as memcpy and string hashing takes the same path in every run)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("instruction counts need valgrind on PATH (Debian: apt-get install -y valgrind)")
    setarch = shutil.which("setarch")
    no_aslr = [setarch, platform.machine(), "-R"] if setarch else []
    return [
        *no_aslr,
        valgrind,
        "--tool=callgrind",
        "--dump-before=ffi_call",
        *options,
        f"--callgrind-out-file={out}",
    ]


def count(suite: str) -> list[_harness.Result]:
    """Count ``suite``: its CPU-bound cases, served cases and client cases; print and return the results."""
    if suite not in counted_suites():
        raise ValueError(
            f"--instructions: suite {suite!r} has nothing to count; choose from {', '.join(counted_suites())}"
        )
    module = importlib.import_module(f"benchmarks.{suite}")
    results = _count_cpu_bound(suite) if hasattr(module, "cpu_bound") else []
    served = getattr(module, "served_instructions", None)
    if served is not None:  # served cases: the whole server process per request (benchmarks._served_ir)
        results += served()
    from . import _client_ir

    if suite in _client_ir.MODULES:  # Redis cases: the client process's instructions (the gate for them)
        results += _client_ir.count(suite)
    return results


def _count_cpu_bound(suite: str) -> list[_harness.Result]:
    """Run ``suite``'s CPU-bound cases under callgrind; print and return one result per case."""
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        log = Path(tmp) / "child.log"
        cmd = [*callgrind(out), sys.executable, "-m", "benchmarks._instructions", "--child", suite]
        t0 = time.perf_counter()
        # A first run without valgrind: fails fast, and leaves every .pyc up to date, so that the
        # counted run never compiles (compiling changes the heap, hence addresses, hence counts).
        subprocess.run(
            cmd[cmd.index(sys.executable) :],
            cwd=ROOT,
            env=CHILD_ENV,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        with log.open("wb") as f:
            code = subprocess.run(
                cmd,
                cwd=ROOT,
                env=CHILD_ENV,
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                check=False,
            ).returncode
        lines = log.read_text(errors="replace").splitlines()
        plans = [line[len(PLAN) :] for line in lines if line.startswith(PLAN)]
        if code or not plans:
            tail = "\n".join(lines[-30:])
            raise RuntimeError(f"callgrind run of {suite!r} failed (exit {code}):\n{tail}")
        data = json.loads(plans[-1])
        dumps = sorted(int(p.name.rsplit(".", 1)[1]) for p in Path(tmp).glob("callgrind.out.*"))
        if dumps != list(range(1, data["marks"] + 1)):
            raise RuntimeError(
                f"{suite}: callgrind wrote {len(dumps)} dumps for {data['marks']} markers: something else "
                "called libffi's ffi_call (ctypes or cffi) while counting, so the segments are not ours"
            )
        totals = {k: dump_total(Path(tmp) / f"callgrind.out.{k}") for k in dumps}
    print(f"# {suite}: callgrind run took {time.perf_counter() - t0:.0f} s", flush=True)
    per_case: dict[str, dict[str, Any]] = {}
    for entry in data["plan"]:
        case = per_case.setdefault(entry["case"], {"target": entry["target"]})
        case[entry["side"]] = (totals[entry["segment"]] - totals[entry["zero"]]) / max(entry["ops"], 1)
    return [
        _harness.emit_counts(suite, name, c["ours"], c["raw"], target=c["target"])
        for name, c in per_case.items()
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._instructions")
    parser.add_argument("--child", metavar="SUITE", help="internal: the counted process")
    parser.add_argument("suites", nargs="*")
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child)
        return 0
    for suite in args.suites or counted_suites():
        count(suite)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
