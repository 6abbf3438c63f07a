"""Cost of the errors + metrics HTTP middleware around an app, driven in-process (no network).

Each case calls the ASGI callable directly with a prepared scope, ``ops`` requests
in a row: "raw" is the bare app, "ours" the same app wrapped as a host would wrap
it (metrics outside, errors inside). The ``starlette_*`` cases use a small
Starlette app (routing, path params, JSON responses) -- what the middleware is for
(``*_metrics_only`` / ``*_errors_only`` split the cost per layer; ``starlette_list50``
renders 50 records, closer to a real handler, still without I/O);
``asgi_noop`` uses an app that does nothing but send a response, so its ratio shows
the middleware's absolute cost against an empty request, not a realistic one.

The ``served_*`` cases measure what the issue asks for, requests/s over real HTTP: two uvicorn
processes on loopback (the bare app and the wrapped one, same settings, no access log), driven
by 8 keep-alive connections of a minimal asyncio client (raw streams, so the client's own cost
stays small), rounds alternating between the servers. µs/op is wall time per request at that
concurrency (1e6 / requests per second). The client and the server share the machine's cores,
equally for both sides.

The ``otel_*`` cases (in :mod:`benchmarks._http_otel`) measure the otel plugin: the same kernel app
(errors plugin, one JSON route) booted with the plugin ("ours", sampler always_on) and without it
("raw"). ``served_otel_kernel_json`` serves both over real HTTP as above, the plugin exporting
through its BatchSpanProcessor (OTLP/HTTP) to a receiver thread on loopback that answers 200 (the
issue's target 1.15); ``served_otel_kernel_json_cpu`` is the CPU time each server process used per
request in those rounds (all its threads, the exporter's included; from ``/proc``), which a loaded
machine moves much less than wall time. In-process, ``otel_kernel_json`` encodes every span as the
OTLP exporter does, in line, 100 at a time (the batch exporter's work minus the HTTP POST; a
background thread would drop spans at this rate and its work cannot be counted), and
``otel_kernel_json_spans_only`` makes the spans and exports nothing: the middleware and the SDK;
``otel_kernel_json_always_off`` samples nothing (the middleware and a non-recording span).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kernel_metrics import MetricsCollector, MetricsMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ._harness import acompare, emit, rounds

SUITE = "http_middleware"

try:
    from kernel_errors import ErrorMiddleware
except ImportError:  # the suite still measures the metrics layer without the errors plugin
    ErrorMiddleware = None


def wrap(app: Any, collector: MetricsCollector | None, *, errors: bool = True) -> Any:
    """``app`` as a host wraps it: metrics outermost, errors inside (either may be left out)."""
    if errors and ErrorMiddleware is not None:
        app = ErrorMiddleware(app)
    return MetricsMiddleware(app, collector) if collector is not None else app


async def user(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["user_id"], "name": "Ada"})


USERS = [
    {"id": str(i), "name": f"user {i}", "email": f"u{i}@example.com", "active": i % 2 == 0} for i in range(50)
]


async def users(request: Request) -> JSONResponse:
    return JSONResponse(USERS)


async def noop(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


def served_raw() -> Any:
    """The bare Starlette app, for ``uvicorn --factory``."""
    return Starlette(routes=[Route("/users", users), Route("/users/{user_id}", user)])


def served_ours() -> Any:
    """The same app wrapped by the errors and metrics middleware, for ``uvicorn --factory``."""
    return wrap(served_raw(), MetricsCollector(process_metrics=False, multiprocess_dir=None))


def served_noop_raw() -> Any:
    return noop


def served_noop_ours() -> Any:
    return wrap(noop, MetricsCollector(process_metrics=False, multiprocess_dir=None))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uvicorn_command(factory: str, port: int, lifespan: bool) -> list[str]:
    """The uvicorn command line of a served case: ``factory`` (``module:name``) on loopback ``port``."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--loop",
        "asyncio",
        "--lifespan",
        "on" if lifespan else "off",
    ]


def wait_listening(
    proc: subprocess.Popen[bytes], port: int, timeout: float, poll: float, exited: Callable[[int], str]
) -> None:
    """Wait until ``proc`` accepts connections on loopback ``port``, polling every ``poll`` s.

    Raises ``RuntimeError(exited(returncode))`` if it exits first, the last connection error after
    ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            raise RuntimeError(exited(code))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(poll)


def stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Terminate ``proc`` if it still runs; kill it if it has not exited ``grace`` s later."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Served:
    """A uvicorn process serving ``factory`` (here, or ``module:name``) on a free loopback port."""

    def __init__(self, factory: str, *, lifespan: bool = False, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        root = Path(__file__).resolve().parents[1]
        environ = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        environ.update(env or {})
        self.proc = subprocess.Popen(
            uvicorn_command(
                factory if ":" in factory else f"benchmarks.http_middleware:{factory}", self.port, lifespan
            ),
            cwd=root,
            env=environ,
            stdin=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        wait_listening(self.proc, self.port, timeout, 0.05, lambda code: f"uvicorn exited with {code}")

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far, all its threads.

        From each thread's ``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds on the CPU) where the
        kernel keeps it; else ``/proc/<pid>/stat``'s user + system time, in clock ticks (10 ms:
        3% of a 3000-request round of a server at 100 µs a request).
        """
        tasks = Path(f"/proc/{self.proc.pid}/task")
        try:
            return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks.iterdir()) / 1e9
        except (OSError, ValueError, IndexError):  # no schedstat here, or a thread ended meanwhile
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        stop_process(self.proc, 10)


VARIED = 1000
"""How many paths a ``{n}`` in a load's path stands for (``/users/{n}``: ``/users/1`` ... ``/users/1000``)."""


def _requests(path: str, agent: str | None) -> list[bytes]:
    """The request bytes a load cycles through: one, or one per path when ``path`` has ``{n}``."""
    paths = [path.replace("{n}", str(n)) for n in range(1, VARIED + 1)] if "{n}" in path else [path]
    extra = f"User-Agent: {agent}\r\n" if agent else ""
    return [
        f"GET {p} HTTP/1.1\r\nHost: bench\r\nAccept: application/json\r\n{extra}\r\n".encode() for p in paths
    ]


async def _load(port: int, path: str, requests: int, connections: int = 8, agent: str | None = None) -> float:
    """Send ``requests`` GETs over ``connections`` keep-alive connections; wall µs per request.

    A ``{n}`` in ``path`` makes each connection go through ``VARIED`` paths in turn (as a service's
    clients ask for different users); ``agent`` is a ``User-Agent`` header to send.
    """
    variants = _requests(path, agent)
    per_conn = requests // connections

    async def one_connection(offset: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in range(per_conn):
                writer.write(variants[(offset + i) % len(variants)])
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"unexpected response: {head[:80]!r}")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
        finally:
            writer.close()
            await writer.wait_closed()

    t0 = time.perf_counter()
    await asyncio.gather(*(one_connection(c * 127) for c in range(connections)))
    return (time.perf_counter() - t0) / (per_conn * connections) * 1e6


async def served(
    case: str, ours: str, raw: str, path: str, *, requests: int, rounds_: int, target: float | None = None
) -> None:
    """Alternate load rounds against the two servers; emit medians."""
    servers = {"ours": Served(ours), "raw": Served(raw)}
    try:
        for server in servers.values():
            server.wait_ready()
        for server in servers.values():  # warm-up: imports, first-request paths
            await _load(server.port, path, rounds(400, 200))
        o: list[float] = []
        r: list[float] = []
        for i in range(rounds_):
            order = ("raw", "ours") if i % 2 else ("ours", "raw")
            for side in order:
                result = await _load(servers[side].port, path, requests)
                (o if side == "ours" else r).append(result)
        emit(SUITE, case, o, r, target=target)
    finally:
        for server in servers.values():
            server.stop()


def driver(app: Any, path: str) -> Any:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    headers = [(b"host", b"bench"), (b"accept", b"application/json")]

    async def one() -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 5000),
            "server": ("bench", 80),
        }
        await app(scope, receive, send)

    return one


async def run(quick: bool) -> None:
    await cpu_bound(quick)
    # Over real HTTP (uvicorn, h11): what a client sees.
    n = rounds(15, 5)
    requests = rounds(4000, 400)
    await served(
        "served_starlette_json",
        "served_ours",
        "served_raw",
        "/users/42",
        requests=requests,
        rounds_=n,
        target=1.10,
    )
    await served("served_asgi_noop", "served_noop_ours", "served_noop_raw", "/", requests=requests, rounds_=n)
    from . import _http_otel  # the otel plugin's cases, last and imported late: the others run as before

    await _http_otel.served(quick)


def served_instructions() -> list[Any]:
    """The served cases in instruction mode (:mod:`benchmarks._served_ir`): server Ir per request."""
    from . import _http_otel, _served_ir

    starlette = _served_ir.count(
        SUITE,
        "served_starlette_json",
        "benchmarks.http_middleware:served_ours",
        "benchmarks.http_middleware:served_raw",
        "/users/42",
        target=1.10,
    )
    return [starlette, *_http_otel.served_instructions()]


async def cpu_bound(quick: bool) -> None:
    """The in-process cases (no server): also what instruction mode counts."""
    if ErrorMiddleware is None:
        print("# kernel_errors not installed: measuring the metrics middleware alone", flush=True)
    n = rounds(15, 5)
    starlette = Starlette(routes=[Route("/users", users), Route("/users/{user_id}", user)])
    collector = MetricsCollector(process_metrics=False, multiprocess_dir=None)
    wrapped = wrap(starlette, collector)
    raw = driver(starlette, "/users/42")
    await acompare(
        SUITE,
        "starlette_json",
        driver(wrapped, "/users/42"),
        raw,
        ops=rounds(2000, 800),
        rounds_=n,
        target=1.25,
    )
    # The same, one layer at a time, to see which one costs what.
    await acompare(
        SUITE,
        "starlette_json_metrics_only",
        driver(wrap(starlette, collector, errors=False), "/users/42"),
        raw,
        ops=rounds(2000, 800),
        rounds_=n,
    )
    if ErrorMiddleware is not None:
        await acompare(
            SUITE,
            "starlette_json_errors_only",
            driver(wrap(starlette, None), "/users/42"),
            raw,
            ops=rounds(2000, 800),
            rounds_=n,
        )
    # A list endpoint (50 records): still no I/O, closer to what real handlers cost; and a 404.
    for case, path, ops in (
        ("starlette_list50", "/users", rounds(1000, 400)),
        ("starlette_404", "/missing/42", rounds(2000, 800)),
    ):
        await acompare(
            SUITE, case, driver(wrapped, path), driver(starlette, path), ops=ops, rounds_=n, target=1.25
        )
    await acompare(
        SUITE,
        "asgi_noop",
        driver(wrap(noop, collector), "/"),
        driver(noop, "/"),
        ops=rounds(5000, 2000),
        rounds_=n,
    )
    from . import _http_otel

    await _http_otel.in_process(quick)
