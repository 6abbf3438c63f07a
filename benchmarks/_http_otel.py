"""The ``http_middleware`` suite's otel cases: tracing on (the otel plugin) vs off, same kernel app.

Kept out of :mod:`benchmarks.http_middleware` so that importing it does not change the instruction
counts of that suite's other cases. See that module's docstring for what each case measures.
"""

from __future__ import annotations

import os
from typing import Any

from ._harness import acompare, emit, rounds
from .http_middleware import SUITE, Served, _load, driver

OTEL_PATH = "/users/7"
"""The path of the in-process cases."""
SERVED_PATH = "/users/{n}"
"""The served cases' paths: ``/users/1`` to ``/users/1000`` in turn, as a service's clients ask for
different users. One path for every request would flatter the tracing: a span's path, client and
user agent are encoded each time in real traffic (see ``kernel_otel._otlp.VARYING``)."""
AGENT = "bench-client/1.0"
"""The served cases' ``User-Agent`` (a real client sends one: the span's ``user_agent.original``)."""


def otel_kernel(otel: bool, exporter: str = "otlp", sampler: str = "always_on") -> Any:
    """An unbooted kernel: errors plugin, one JSON route (``/users/{id}``), with or without the otel plugin.

    The otel plugin samples every request (``sampler``); with ``exporter="otlp"`` it exports to
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the loopback receiver) through its BatchSpanProcessor.
    """
    from kernel import Plugin, PluginContext, Route, hookimpl
    from kernel.testing import make_kernel
    from kernel.web import Receive, Scope, Send

    class Routes(Plugin):
        name = "routes"

        @hookimpl
        def kernel_routes(self, ctx: PluginContext[object]) -> list[Route]:
            async def one_user(scope: Scope, receive: Receive, send: Send) -> None:
                scope["route_template"] = "/users/{id}"  # as a router with path parameters names it
                body = b'{"id":"7","name":"Ada"}'
                headers = [(b"content-type", b"application/json"), (b"content-length", b"23")]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})

            return [Route("/users", one_user, prefix=True)]

    if not otel:
        return make_kernel("errors", Routes, environ=dict(os.environ))
    config = {"otel": {"sampler": sampler, "exporter": exporter}}
    return make_kernel("otel", "errors", Routes, config=config, environ=dict(os.environ))


_SERVED: list[Any] = []
"""The kernels :func:`served_on` made in this (server) process, for :func:`flush_spans`."""


def served_on() -> Any:
    """The kernel app with tracing on, for ``uvicorn --factory`` (the lifespan boots the kernel)."""
    from kernel.web import KernelApp, LifespanMiddleware

    kernel = otel_kernel(True)
    _SERVED.append(kernel)
    return LifespanMiddleware(KernelApp(kernel), kernel)


def flush_spans() -> None:
    """Export every span ended so far, in a :func:`served_on` server (the served count's flush)."""
    from kernel_otel import Tracing

    for kernel in _SERVED:
        kernel.registry.get(Tracing).force_flush()


def served_off() -> Any:
    """The same kernel app without the otel plugin."""
    from kernel.web import KernelApp, LifespanMiddleware

    kernel = otel_kernel(False)
    return LifespanMiddleware(KernelApp(kernel), kernel)


class OtlpReceiver:
    """An OTLP/HTTP receiver thread on loopback: reads each export and answers 200 (counts them)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                receiver.exports += 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.exports = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _inline_export(tracing: Any, batch: int = 100) -> None:
    """Encode ended spans in line as the plugin's OTLP exporter does, ``batch`` at a time.

    The in-process cases run requests back to back, faster than a BatchSpanProcessor's thread
    exports: its queue would fill and drop spans (not counting their cost), and in instruction
    mode its work would land in whichever segment it ran. Here every span is encoded, on the
    request's side of the comparison: the batch exporter's work minus the HTTP POST.
    """
    from kernel_otel._otlp import Encoder  # what KernelSpanExporter.export encodes with
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

    class InlineBatch(SpanProcessor):
        def __init__(self) -> None:
            self.spans: list[ReadableSpan] = []
            self.encoder = Encoder()

        def on_end(self, span: ReadableSpan) -> None:
            self.spans.append(span)
            if len(self.spans) >= batch:
                self.encoder.request(self.spans)
                self.spans = []

    tracing.provider.add_span_processor(InlineBatch())


async def in_process(quick: bool) -> None:
    """``otel_kernel_json`` (spans and their OTLP encoding), ``..._spans_only`` and ``..._always_off``."""
    try:
        from kernel_otel import Tracing
    except ImportError:
        print("# kernel_otel not installed: no otel cases", flush=True)
        return
    from contextlib import AsyncExitStack

    from kernel.web import KernelApp

    n = rounds(15, 5)
    async with AsyncExitStack() as stack:
        raw = driver(KernelApp(await stack.enter_async_context(otel_kernel(False))), OTEL_PATH)
        encoding = await stack.enter_async_context(otel_kernel(True, "none"))
        _inline_export(encoding.registry.get(Tracing))
        spans_only = await stack.enter_async_context(otel_kernel(True, "none"))
        always_off = await stack.enter_async_context(otel_kernel(True, "none", "always_off"))
        for case, kernel in (
            ("otel_kernel_json", encoding),
            ("otel_kernel_json_spans_only", spans_only),
            ("otel_kernel_json_always_off", always_off),
        ):
            await acompare(
                SUITE, case, driver(KernelApp(kernel), OTEL_PATH), raw, ops=rounds(2000, 800), rounds_=n
            )


def served_instructions() -> list[Any]:
    """``served_otel_kernel_json`` in instruction mode: server Ir per request, exporter thread included.

    Counted by :mod:`benchmarks._served_ir`; before each marker the tracing server flushes its
    batch processor, so every span of the counted requests is encoded and POSTed to the receiver
    within the segment.
    """
    try:
        import kernel_otel  # noqa: F401
    except ImportError:
        return []
    from . import _served_ir

    receiver = OtlpReceiver()
    # Under valgrind a request takes ~50x longer: with the default 5 s schedule the exporter would
    # send small batches on its timer, where a real run fills 512-span batches first. Here it
    # exports full batches and, at each marker, the rest.
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "3600000"}
    try:
        result = _served_ir.count(
            SUITE,
            "served_otel_kernel_json",
            "benchmarks._http_otel:served_on",
            "benchmarks._http_otel:served_off",
            SERVED_PATH,
            lifespan=True,
            env=env,
            flush="benchmarks._http_otel:flush_spans",
            agent=AGENT,
            target=1.15,
        )
        if receiver.exports == 0:
            raise RuntimeError("served_otel instructions: the OTLP receiver got no export")
    finally:
        receiver.close()
    return [result]


async def served(quick: bool) -> None:
    """``served_otel_kernel_json`` (wall µs/request) and ``..._cpu`` (server CPU µs/request), target 1.15.

    Rounds alternate between the two servers, and are pooled over several fresh pairs of server
    processes: one pair's ratio carries a bias of its own. Two untraced servers measured this way
    (the same app on both sides: six pairs' medians 0.906-1.063, pooled 0.983) differed by up to 9%
    for the life of a pair, whatever the number of rounds; traced against untraced, ten pairs'
    medians spread over 1.16-1.42 around a pooled 1.22.
    """
    try:
        import kernel_otel  # noqa: F401
    except ImportError:
        return
    pairs = rounds(5, 1)
    n = rounds(7, 5)  # rounds per pair: per-round ratios spread ~5%: many short rounds, alternating
    requests = rounds(3000, 400)
    receiver = OtlpReceiver()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    wall: dict[str, list[float]] = {"ours": [], "raw": []}
    cpu: dict[str, list[float]] = {"ours": [], "raw": []}
    try:
        for _ in range(pairs):
            await _pair(env, n, requests, wall, cpu)
        if receiver.exports == 0:
            raise RuntimeError("served_otel: the OTLP receiver got no export")
        emit(SUITE, "served_otel_kernel_json", wall["ours"], wall["raw"], target=1.15)
        emit(SUITE, "served_otel_kernel_json_cpu", cpu["ours"], cpu["raw"], target=1.15)
    finally:
        receiver.close()


async def _pair(
    env: dict[str, str],
    n: int,
    requests: int,
    wall: dict[str, list[float]],
    cpu: dict[str, list[float]],
) -> None:
    """A fresh pair of servers (traced, untraced): ``n`` alternating rounds, added to ``wall`` and ``cpu``."""
    servers = {
        "ours": Served("benchmarks._http_otel:served_on", lifespan=True, env=env),
        "raw": Served("benchmarks._http_otel:served_off", lifespan=True),
    }
    try:
        for server in servers.values():
            server.wait_ready()
        for server in servers.values():  # warm-up: imports, first-request paths
            await _load(server.port, SERVED_PATH, rounds(400, 200), agent=AGENT)
        for i in range(n):
            for side in ("raw", "ours") if i % 2 else ("ours", "raw"):
                before = servers[side].cpu_seconds()
                wall[side].append(await _load(servers[side].port, SERVED_PATH, requests, agent=AGENT))
                used = servers[side].cpu_seconds() - before
                cpu[side].append(used / (requests // 8 * 8) * 1e6)
    finally:
        for server in servers.values():
            server.stop()
