"""``python -m benchmarks [--quick] [--instructions] [suite ...]``: run every ``benchmarks/<suite>.py``.

A suite module defines ``run(quick: bool)`` (sync or async) that prints its
``bench`` lines through :mod:`benchmarks._harness`; a suite with CPU-bound cases also defines
``cpu_bound(quick: bool)``, which ``--instructions`` runs under callgrind
(:mod:`benchmarks._instructions`). The first line says what the run ran on: Python, the
machine, the mode, redis-py and the RESP parser it uses (hiredis or python); Redis suites add
a ``# <suite>: redis-server <version>, parser <name>`` line.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import pkgutil
import platform
import sys
import time
import traceback
from pathlib import Path

import anyio

from . import _harness

READING = """\
## How to read this page

- **What it ran on.** The list above names the machine, Python, redis-py and the RESP parser
  redis-py used: `hiredis` (the production install, see [redis](plugins/redis.md)) or `python`;
  and, for each Redis suite, the `redis-server` version it ran against. `python -m benchmarks`
  prints the same on its first lines.
- **Times.** Each case runs our layer and the raw library it wraps in the same process, in
  interleaved rounds (which side goes first alternates). *ours* and *raw* are the medians over
  the rounds in µs per operation; the ratio is a cost, median ours / median raw: 1.00 is as fast
  as raw, lower is better.
- **Spread.** *IQR* is the interquartile range of the per-round ratios (each round's ours / raw).
  A case with a target says `met` (the whole IQR at or below it), `missed` (the whole IQR above
  it) or `straddles` (the IQR contains the target: this run cannot decide; rerun on a quiet
  machine, or look at the instruction counts).
- **Ceilings.** Each Redis suite also times the same work done raw at its best: pipelined
  `XADD`, `XREADGROUP` of 1,000 entries at a time, `MGET` of 100 keys, an enqueue's commands
  pipelined 100 jobs at a time; µs per entry. From *raw* to the ceiling is the cost of one round
  trip per operation; from *ours* to *raw* is our layer.
- **Instruction counts.** For the CPU-bound suites (kernel_boot with the registry,
  metrics_record, http_middleware in-process, the eventbus memory adapter, serializers)
  `--instructions` counts each side's instructions per operation under callgrind (valgrind).
  The counts repeat exactly whatever else the machine does: gate on these ratios. They depend
  on the Python build and the library versions, so compare counts from one machine image.
  How: one callgrind run per suite; around each side, a marker, N calls, a marker, the same
  loop with 0 calls, a marker; Ir/op = (N-call segment - 0-call segment) / N, so start-up,
  imports and set-up drop out; `PYTHONHASHSEED=0`, a fixed environment and no address-space
  randomisation make the runs identical. Needs `valgrind` (Debian: `apt-get install -y valgrind`).
  The Redis cases of eventbus (publish, consume), cache (get, set, get_many_20, set_many_20) and
  queue (add_job) are counted too, client side (`<suite>.<case>_client`, `benchmarks/_client_ir.py`:
  the redis-server is another process, so only our layer, redis-py and hiredis are counted): the
  gate for those cases. How often the event loop finds a reply already there varies a little, so
  these counts move by a few tenths of a percent (up to ~2% for consume) between runs.
  The served HTTP cases are counted in the server (`http_middleware.served_starlette_json`,
  `served_otel_kernel_json`; `benchmarks/_served_ir.py`): each uvicorn process runs under
  callgrind, a `SIGUSR1` handler on its event loop flushes (the span processor) and marks, and
  Ir/request = (segment of N requests over real HTTP - empty segment) / N, all the process's
  threads (the span exporter's too). Timing decides how many requests one loop wake-up finds, so
  these counts move a little between runs (the raw server's by under 0.1% in four runs).
- **Outbox.** `outbox` compares a create with `events=` (the document and its outbox entry in one
  transaction) plus the relay's publish against `insert_one` then `XADD`, and prints the lag from a
  create's commit to its handler (`lag outbox.commit_to_handler`, the relay running in the background).
- **CLI start.** `cli_start` times whole processes, `kernel --help`, `kernel plugins` and
  `kernel --config examples/kernel.toml check` against `python -c pass`, in µs per process; the
  target is <= 0.4 s per command (its verdict judges the IQR of the command's own times).

Commands: `python -m benchmarks --quick` (every suite, few rounds, under 60 s);
`python -m benchmarks cache eventbus` (a subset, full rounds); `python -m benchmarks --instructions
[suite ...]` (instruction counts only); `python -m benchmarks --with-instructions --markdown
docs/benchmarks.md` (times, then counts of the CPU-bound suites: this page).

The lines `python -m benchmarks` prints:

```text
# <date> python <version> <machine> <mode> | redis-py <version>, parser <hiredis <version>|python>
# <suite>: redis-server <version>, parser <hiredis|python>
# <suite>: <seconds> s
bench <suite>.<case> ours=<µs/op> raw=<µs/op> ratio=<ours/raw> iqr=<q1>..<q3> [target=<t> <verdict>]
ceiling <suite>.<case> raw=<µs/op> iqr=<q1>..<q3> (<ops>/s)
lag <suite>.<case> p50=<ms> p99=<ms> max=<ms> (<what ran>)
bench <suite>.<case> ours=<Ir/op> raw=<Ir/op> ratio=<ours/raw> unit=instructions [target=<t> met|missed]
```
"""


ISSUE_13_START: dict[str, float | tuple[float, float] | None] = {
    "http_middleware.starlette_json": 1.321,
    "http_middleware.starlette_404": 1.355,
    "http_middleware.starlette_list50": 1.069,
    "eventbus.memory_publish_deliver_vs_asyncio_queue": 1.731,
    "eventbus.publish_vs_xadd_client": 1.224,
    "eventbus.consume_batch100_vs_xreadgroup_xack_client": (1.331, 1.402),
    "cache.get_client": 1.039,
    "cache.set_client": None,
    "cache.get_many_20_client": 1.341,
    "cache.set_many_20_client": None,
    "queue.add_job_client": None,
}
"""Instruction-count ratio of each gated case when issue 13 was opened (hiredis baseline, commits
ab5c046 / 3af8c20; a range where runs differed, None where it was not counted then): the page's
"Before and after" table, with this run's count as "now"."""

BEFORE_AFTER = """## Before and after (instruction counts)

Counts repeat whatever else the machine is doing, so they carry the verdicts for the CPU-bound cases
and for the client side of the Redis cases (`<suite>.<case>_client`: callgrind around the client
process, the server not counted; `benchmarks/_client_ir.py`). "Start" is the count when issue 13 was
opened against the hiredis baseline (commits ab5c046 / 3af8c20; — where none was made then);
"now" is this page's run ({date}), with the verdict of the instruction table above
("within 1% of it": met, by less than a client count moves between runs).
"""


def suites() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="few rounds; all suites in < 60 s")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="CPU-bound suites only: callgrind instruction counts per op instead of times "
        "(needs valgrind; the same N per case with or without --quick)",
    )
    parser.add_argument(
        "--with-instructions",
        action="store_true",
        help="time the suites, then count instructions of the CPU-bound ones (one page)",
    )
    parser.add_argument("--markdown", metavar="PATH", help="also write the results as a Markdown page")
    parser.add_argument("suites", nargs="*", help=f"subset of: {', '.join(suites())}")
    args = parser.parse_args(argv)
    _harness.QUICK = args.quick
    unknown = sorted(set(args.suites) - set(suites()))
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(suites())}")
    timed: list[str] = [] if args.instructions else args.suites or suites()
    counted: list[str] = []
    if args.instructions or args.with_instructions:
        from . import _instructions

        countable = _instructions.counted_suites()
        if args.instructions:
            nothing = [name for name in args.suites if name not in countable]
            if nothing:
                parser.error(
                    f"--instructions: nothing to count in {', '.join(nothing)}; "
                    f"choose from {', '.join(countable)}"
                )
            counted = args.suites or countable
        else:
            counted = [name for name in timed if name in countable]
    print(f"# {header(args.quick, args.instructions, args.with_instructions)}", flush=True)
    load_start = _load()
    failed = 0
    t0 = time.perf_counter()
    for name in timed:
        started = time.perf_counter()
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
        print(f"# {name}: {time.perf_counter() - started:.1f} s", flush=True)
    for name in counted:
        try:
            _instructions.count(name)
        except Exception:
            failed += 1
            print(f"# instruction count of {name} failed:", file=sys.stderr)
            traceback.print_exc()
    elapsed = time.perf_counter() - t0
    load = (load_start, _load())
    print(f"# {len(_harness.RESULTS)} cases in {elapsed:.1f}s; {describe_load(*load)}", flush=True)
    if args.markdown:
        Path(args.markdown).write_text(
            markdown(args.quick, elapsed, args.instructions, args.with_instructions, load)
        )
    return 1 if failed else 0


def _load() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def describe_load(start: float | None, end: float | None) -> str:
    """How busy the machine was: the load average at the start and the end of the run, and what it means."""
    if start is None or end is None:
        return "load average unknown"
    cores = os.cpu_count() or 1
    text = f"1-minute load average {start:.1f} at the start, {end:.1f} at the end ({cores} cores)"
    if max(start, end) > cores / 2:
        text += (
            ": the machine was shared with other work, so the timed ratios are noisy (see the IQRs); "
            "the instruction counts are not affected"
        )
    return text


def mode(quick: bool, instructions: bool, with_instructions: bool = False) -> str:
    if instructions:
        return "instructions (callgrind)"
    return ("quick" if quick else "full") + (" + instructions (callgrind)" if with_instructions else "")


def header(quick: bool, instructions: bool, with_instructions: bool = False) -> str:
    """The run's first line: when, Python, machine, mode, redis-py and its RESP parser."""
    try:
        import redis

        client = f"redis-py {redis.__version__}, parser {_harness.resp_parser()}"
    except ImportError:
        client = "redis-py not installed"
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')} python {platform.python_version()} {platform.machine()} "
        f"{mode(quick, instructions, with_instructions)} | {client}"
    )


def markdown(
    quick: bool,
    elapsed: float,
    instructions: bool = False,
    with_instructions: bool = False,
    load: tuple[float | None, float | None] = (None, None),
) -> str:
    """The benchmarks page: machine, date, what it ran against, and one table row per case."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = (
        (" --quick" if quick else "")
        + (" --instructions" if instructions else "")
        + (" --with-instructions" if with_instructions else "")
    )
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `python -m benchmarks{flags} --markdown docs/benchmarks.md`: our layer against",
        "the raw library it wraps, in the same run. How to read it: [below](#how-to-read-this-page).",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        f"- python: {platform.python_version()} ({platform.python_implementation()})",
        f"- mode: {mode(quick, instructions, with_instructions)}, {elapsed:.0f} s",
        f"- load: {describe_load(*load)}",
        f"- redis client: {header(quick, instructions).split(' | ', 1)[1]}",
    ]
    lines += [f"- {suite}: {description}" for suite, description in _harness.SERVERS.items()]
    timed = [r for r in _harness.RESULTS if r.unit == "us"]
    counted = [r for r in _harness.RESULTS if r.unit == "instructions"]
    if timed:
        lines += [
            "",
            "| case | ours µs/op | raw µs/op | ratio | IQR of ratios | target |",
            "|---|---:|---:|---:|---|---|",
        ]
        for r in timed:
            low, high = r.iqr
            lines.append(
                f"| `{r.suite}.{r.case}` | {r.ours_us:.2f} | {r.raw_us:.2f} | {r.ratio:.2f} "
                f"| {low:.2f}..{high:.2f} | {r.target_text} |"
            )
    if counted:
        lines += ["", "| case | ours Ir/op | raw Ir/op | ratio | target |", "|---|---:|---:|---:|---|"]
        for r in counted:
            lines.append(
                f"| `{r.suite}.{r.case}` | {r.ours_us:.0f} | {r.raw_us:.0f} | {r.ratio:.3f} "
                f"| {r.target_text} |"
            )
    if _harness.CEILINGS:
        lines += [
            "",
            "Ceilings: the same work done raw at its best (pipelined, large batches).",
            "",
            "| ceiling | raw µs/op | ops/s |",
            "|---|---:|---:|",
        ]
        for c in _harness.CEILINGS:
            lines.append(f"| `{c.suite}.{c.case}` | {c.raw_us:.2f} | {1e6 / c.raw_us:,.0f} |")
    if counted:
        lines += ["", *before_after(counted)]
    return "\n".join(lines) + "\n\n" + READING


def before_after(counted: list[_harness.Result]) -> list[str]:
    """The "Before and after" section: each gated case's ratio at issue 13's start and in this run."""
    now = {f"{r.suite}.{r.case}": r for r in counted}
    lines = [
        *BEFORE_AFTER.format(date=time.strftime("%Y-%m-%d %H:%M %Z")).splitlines(),
        "",
        "| case | start | now | target |",
        "|---|---:|---:|---|",
    ]
    for name, start in ISSUE_13_START.items():
        if isinstance(start, tuple):
            was = f"{start[0]:.3f}\N{EN DASH}{start[1]:.3f}"
        else:
            was = "—" if start is None else f"{start:.3f}"
        label = f"`{name.removesuffix('_client')}` (client side)" if name.endswith("_client") else f"`{name}`"
        result = now.get(name)
        if result is None:
            lines.append(f"| {label} | {was} | not counted in this run | |")
        else:
            close = result.verdict == "met" and result.target and result.ratio > result.target * 0.99
            note = " (within 1% of it)" if close else ""
            lines.append(f"| {label} | {was} | {result.ratio:.3f} | {result.target_text}{note} |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
