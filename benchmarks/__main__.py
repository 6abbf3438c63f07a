"""``python -m benchmarks [--quick] [suite ...]``: run every ``benchmarks/<suite>.py``.

A suite module defines ``run(quick: bool)`` (sync or async) that prints its
``bench`` lines through :mod:`benchmarks._harness`.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import platform
import sys
import time
import traceback
from pathlib import Path

import anyio

from . import _harness


def suites() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="few rounds; all suites in < 60 s")
    parser.add_argument("suites", nargs="*", help=f"subset of: {', '.join(suites())}")
    args = parser.parse_args(argv)
    _harness.QUICK = args.quick
    chosen = args.suites or suites()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} python {platform.python_version()} "
          f"{platform.machine()} {'quick' if args.quick else 'full'}", flush=True)
    failed = 0
    t0 = time.perf_counter()
    for name in chosen:
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            if inspect.iscoroutinefunction(module.run):
                anyio.run(module.run, args.quick)
            else:
                module.run(args.quick)
        except Exception:
            failed += 1
            print(f"# suite {name} failed:", file=sys.stderr)
            traceback.print_exc()
    print(f"# {len(_harness.RESULTS)} cases in {time.perf_counter() - t0:.1f}s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
