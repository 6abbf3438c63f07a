"""Cost of the otel plugin on an in-process HTTP request: ``python plugins/otel/bench/http_cost.py``.

Boots one kernel per case (errors plugin + a route answering 200; the otel plugin on or off),
calls the served ASGI app directly with a prepared scope (no network), ``OPS`` requests per
round, rounds alternating between the cases; prints the best round's µs per request and the
ratio to "off". The "otlp" case exports with the BatchSpanProcessor to an OTLP/HTTP receiver
thread on loopback (it answers every POST with 200), as in production.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from contextlib import AsyncExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kernel import Plugin, PluginContext, Route, hookimpl
from kernel.testing import boot_kernel
from kernel.web import KernelApp, Receive, Scope, Send

OPS = int(os.environ.get("OPS", "2000"))
ROUNDS = int(os.environ.get("ROUNDS", "7"))


class Routes(Plugin):
    name = "routes"

    @hookimpl
    def kernel_routes(self, ctx: PluginContext[object]) -> list[Route]:
        async def ok(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

        return [Route("/users", ok)]


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


async def _noop_receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _noop_send(message: Any) -> None:
    return None


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/users",
        "raw_path": b"/users",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"api.test"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _round(app: KernelApp) -> float:
    t0 = time.perf_counter()
    for _ in range(OPS):
        await app(_scope(), _noop_receive, _noop_send)
    return (time.perf_counter() - t0) / OPS * 1e6


async def main() -> None:
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}"
    traced = ("otel", "errors", Routes)
    cases: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
        "off (errors only)": (("errors", Routes), {}),
        "otel, always_off sampler": (traced, {"exporter": "none", "sampler": "always_off"}),
        "otel, exporter none": (traced, {"exporter": "none"}),
        "otel, otlp batch to loopback": (traced, {"exporter": "otlp", "endpoint": endpoint}),
    }
    async with AsyncExitStack() as stack:
        apps: dict[str, KernelApp] = {}
        for name, (plugins, table) in cases.items():
            config = {"otel": table} if table else {}
            kernel = await stack.enter_async_context(boot_kernel(*plugins, config=config))
            apps[name] = KernelApp(kernel)
            await _round(apps[name])  # warm up
        best = {name: float("inf") for name in cases}
        for _ in range(ROUNDS):
            for name, app in apps.items():
                best[name] = min(best[name], await _round(app))
    sink.shutdown()
    base = best["off (errors only)"]
    print(f"{'case':32} {'µs/request':>10} {'ratio':>6}   (best of {ROUNDS} rounds x {OPS})")
    for name, value in best.items():
        print(f"{name:32} {value:10.1f} {value / base:6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
