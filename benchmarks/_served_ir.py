"""Instruction counts of a served case: the whole uvicorn server process, per request over real HTTP.

The timed ``served_*`` cases move with the machine's load; this counts what the server process
executes per request instead. For each side it starts the same uvicorn command as
:class:`benchmarks.http_middleware.Served`, under ``valgrind --tool=callgrind
--dump-before=ffi_call`` (the marker scheme of :mod:`benchmarks._instructions`), with
``PYTHONHASHSEED=0``, a minimal environment and no address-space randomisation. The factory
uvicorn loads is :func:`app`, which imports the case's own factory (``module:name``) and returns
its app unchanged -- no layer is added to the requests -- after registering a ``SIGUSR1``
handler on the server's event loop: *flush* (the case's optional ``module:function``, e.g.
the span processor's ``force_flush``, so that work a request leaves to another thread is done
before the segment ends) then *marker* (a ctypes call: callgrind dumps the counts since the
previous one). The handler runs as an event-loop callback, between requests' steps, and writes
the number of markers so far to a file the driver polls.

The driver: warm-up requests, *mark*, N requests (8 keep-alive connections, the minimal client of
the timed cases), *mark*, *mark* again at once. Ir per request = (first segment - second
segment) / N: the handler's own cost drops out. callgrind counts every thread of the process
(the span exporter's included) and nothing of the client, which is another process. Not exact
like the in-process counts: how many requests one event-loop wake-up finds ready, and the server's
time-driven work (uvicorn's 0.1 s tick, an exporter's schedule) depend on timing; repeated runs
agree within ~1%.

``python -m benchmarks._served_ir [--keep DIR] ours_factory raw_factory path`` counts one case
(a ``{n}`` in ``path`` varies it over the requests)
by hand; ``--keep`` leaves the dump files for ``callgrind_annotate --inclusive=yes``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _harness
from ._instructions import callgrind, dump_total
from .http_middleware import _free_port, _load, stop_process, uvicorn_command, wait_listening

ROOT = Path(__file__).resolve().parents[1]
WARM = 300
"""Warm-up requests per side before counting."""
REQUESTS = 1000
"""Counted requests per side."""
FACTORY = "BENCH_SERVED_FACTORY"
FLUSH = "BENCH_SERVED_FLUSH"
MARKS = "BENCH_SERVED_MARKS"


def _resolve(spec: str) -> Callable[[], Any]:
    module, _, name = spec.partition(":")
    fn: Callable[[], Any] = getattr(importlib.import_module(module), name)
    return fn


def app() -> Any:
    """The uvicorn factory of a counted server: the case's app, with the SIGUSR1 marker handler."""
    import ctypes

    built = _resolve(os.environ[FACTORY])()
    flush = _resolve(os.environ[FLUSH]) if os.environ.get(FLUSH) else None
    marker = ctypes.pythonapi.Py_IsInitialized
    marks_file = Path(os.environ[MARKS])
    marks = 0

    def mark() -> None:
        nonlocal marks
        if flush is not None:
            flush()
        marker()
        marks += 1
        marks_file.write_text(str(marks))

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, mark)
    return built


class CountedServer:
    """One uvicorn process under callgrind, serving ``factory`` through :func:`app`."""

    def __init__(
        self,
        factory: str,
        out: Path,
        *,
        lifespan: bool,
        env: dict[str, str] | None,
        flush: str | None,
    ) -> None:
        self.port = _free_port()
        self.out = out
        self.marks_file = out.with_suffix(".marks")
        environ = {
            "PYTHONHASHSEED": "0",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LC_ALL": "C.UTF-8",
            FACTORY: factory,
            MARKS: str(self.marks_file),
            **(env or {}),
        }
        if flush:
            environ[FLUSH] = flush
        # --compress-strings=no: each dump names its functions, so callgrind_annotate reads any one
        cmd = [
            *callgrind(out, "--compress-strings=no"),
            *uvicorn_command("benchmarks._served_ir:app", self.port, lifespan),
        ]
        self.log = out.with_suffix(".log").open("wb")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=environ, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.marks = 0

    def wait_ready(self, timeout: float = 300.0) -> None:
        wait_listening(
            self.proc,
            self.port,
            timeout,
            0.2,
            lambda code: f"uvicorn under callgrind exited with {code}: {self.tail()}",
        )

    def mark(self, timeout: float = 120.0) -> int:
        """Flush and dump in the server; returns the segment number once the server has done it."""
        self.marks += 1
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if int(self.marks_file.read_text() or 0) >= self.marks:
                    return self.marks
            except FileNotFoundError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not mark segment {self.marks}: {self.tail()}")
            time.sleep(0.05)

    def segment(self, number: int) -> int:
        return dump_total(Path(f"{self.out}.{number}"))

    def tail(self) -> str:
        self.log.flush()
        return self.out.with_suffix(".log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        stop_process(self.proc, 60)
        self.log.close()


async def _count_one(server: CountedServer, path: str, requests: int, agent: str | None) -> float:
    await _load(server.port, path, WARM, agent=agent)
    server.mark()
    await _load(server.port, path, requests, agent=agent)
    full = server.mark()
    zero = server.mark()
    done = requests // 8 * 8
    return (server.segment(full) - server.segment(zero)) / done


def measure(
    ours: str,
    raw: str,
    path: str,
    *,
    requests: int = REQUESTS,
    lifespan: bool = False,
    env: dict[str, str] | None = None,
    flush: str | None = None,
    keep: Path | None = None,
    agent: str | None = None,
) -> tuple[float, float]:
    """Server Ir per request of factory ``ours`` and factory ``raw`` (``module:name`` each).

    ``env`` and ``flush`` apply to ``ours`` only (the instrumented side); ``keep``: a directory
    that keeps the callgrind dumps (``ours.out.<n>``, ``raw.out.<n>``; segment 2 is the counted one).
    ``path`` and ``agent``: the requests' (see :func:`benchmarks.http_middleware._load`).
    """
    with tempfile.TemporaryDirectory(prefix="bench-served-ir-") as tmp:
        where = keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        servers = {
            "ours": CountedServer(ours, where / "ours.out", lifespan=lifespan, env=env, flush=flush),
            "raw": CountedServer(raw, where / "raw.out", lifespan=lifespan, env=None, flush=None),
        }
        try:
            for server in servers.values():
                server.wait_ready()
            counts = {side: asyncio.run(_count_one(s, path, requests, agent)) for side, s in servers.items()}
        finally:
            for server in servers.values():
                server.stop()
    return counts["ours"], counts["raw"]


def count(
    suite: str,
    case: str,
    ours: str,
    raw: str,
    path: str,
    *,
    target: float | None = None,
    **options: Any,
) -> _harness.Result:
    """Count one served case and record it (``bench <suite>.<case> ... unit=instructions``)."""
    t0 = time.perf_counter()
    ours_ir, raw_ir = measure(ours, raw, path, **options)
    print(f"# {suite}.{case}: served callgrind run took {time.perf_counter() - t0:.0f} s", flush=True)
    return _harness.emit_counts(suite, case, ours_ir, raw_ir, target=target)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._served_ir")
    parser.add_argument("--keep", type=Path, help="keep the callgrind dumps in this directory")
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--lifespan", action="store_true")
    parser.add_argument("--flush", help="module:function the ours server calls before each marker")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the ours server")
    parser.add_argument("--agent", help="a User-Agent header the requests carry")
    parser.add_argument("ours")
    parser.add_argument("raw")
    parser.add_argument("path")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    ours, raw = measure(
        args.ours,
        args.raw,
        args.path,
        requests=args.requests,
        lifespan=args.lifespan,
        env=env,
        flush=args.flush,
        keep=args.keep,
        agent=args.agent,
    )
    print(f"served-ir ours={ours:.0f} raw={raw:.0f} ratio={ours / raw:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
