"""CLI start: whole ``kernel`` processes vs ``python -c pass``, wall time per process.

Each case starts a fresh process of the installed ``kernel`` console script (the one next to
this interpreter; every first-party plugin installed) and waits for it to exit; raw is
``python -c pass`` with the same interpreter: the floor any Python command pays. Rounds
alternate which one goes first; µs/op is wall µs per process (fork, exec, interpreter start,
imports, the command itself). One warm-up run of ``kernel --help`` and of ``python -c pass``
first fills the page cache and the ``.pyc`` files (every command imports the same modules).

Cases: ``help`` (``kernel --help``), ``plugins`` (``kernel plugins``), ``check``
(``kernel --config examples/kernel.toml check``). The target is absolute, not a ratio: each
command finishes in <= 0.4 s; a comment line after each case says where the run stands.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from ._harness import emit, quartiles, rounds, verdict

SUITE = "cli_start"
ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.4
"""Wall seconds a kernel command may take, start to exit."""


def kernel_command() -> list[str]:
    """The ``kernel`` console script of this environment (else ``python -m kernel``)."""
    script = Path(sys.executable).parent / "kernel"
    if script.exists():
        return [str(script)]
    found = shutil.which("kernel")
    return [found] if found else [sys.executable, "-m", "kernel"]


CASES = {
    "help": ["--help"],
    "plugins": ["plugins"],
    "check": ["--config", "examples/kernel.toml", "check"],
}


def _time(argv: list[str]) -> float:
    """Wall µs of one process running ``argv`` to completion (which must succeed)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        argv,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = (time.perf_counter() - t0) * 1e6
    if proc.returncode:
        raise RuntimeError(
            f"{' '.join(argv)} exited with {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}"
        )
    return elapsed


def run(quick: bool) -> None:
    kernel = kernel_command()
    raw = [sys.executable, "-c", "pass"]
    _time([*kernel, "--help"])
    _time(raw)
    for case, args in CASES.items():
        ours = [*kernel, *args]
        o: list[float] = []
        r: list[float] = []
        for i in range(rounds(11, 3)):
            if i % 2:
                r.append(_time(raw))
                o.append(_time(ours))
            else:
                o.append(_time(ours))
                r.append(_time(raw))
        result = emit(SUITE, case, o, r, limit_us=TARGET_S * 1e6)
        low, high = (q / 1e6 for q in quartiles(o))
        print(
            f"# {SUITE}.{case}: `kernel {' '.join(args)}` {result.ours_us / 1e6:.3f} s per process "
            f"(iqr {low:.3f}..{high:.3f} s), `python -c pass` {result.raw_us / 1e6:.3f} s; "
            f"target <= {TARGET_S:.1f} s {verdict(low, high, TARGET_S)}",
            flush=True,
        )
