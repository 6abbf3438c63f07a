"""Served requests/s with tracing on vs off, over real HTTP: ``python plugins/otel/bench/http_served.py``.

Two uvicorn processes on loopback serve the same KernelApp (errors plugin, one JSON route):
"off" without the otel plugin, "on" with it (sampler always_on, BatchSpanProcessor exporting
OTLP/HTTP to a receiver thread in this process that answers every POST with 200). 8 keep-alive
connections of a minimal asyncio client load them in alternating rounds; µs per request is wall
time at that concurrency. Prints the median of the rounds and the ratio on/off.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROUNDS = int(os.environ.get("ROUNDS", "7"))
REQUESTS = int(os.environ.get("REQUESTS", "4000"))


def _factory(otel: bool) -> Any:
    from kernel import Plugin, PluginContext, Route, hookimpl
    from kernel.testing import make_kernel
    from kernel.web import KernelApp, LifespanMiddleware, Receive, Scope, Send

    class Routes(Plugin):
        name = "routes"

        @hookimpl
        def kernel_routes(self, ctx: PluginContext[object]) -> list[Route]:
            async def user(scope: Scope, receive: Receive, send: Send) -> None:
                body = b'{"id":"7","name":"ada"}'
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})

            return [Route("/users/7", user)]

    plugins: tuple[Any, ...] = ("otel", "errors", Routes) if otel else ("errors", Routes)
    config = {"otel": {"sampler": "always_on"}} if otel else {}
    kernel = make_kernel(*plugins, config=config, environ=dict(os.environ))
    return LifespanMiddleware(KernelApp(kernel), kernel)


def off() -> Any:
    return _factory(False)


def on() -> Any:
    return _factory(True)


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    count = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        _Sink.count += 1
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(factory: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", f"http_served:{factory}", "--port", str(port)]
    command += ["--host", "127.0.0.1", "--log-level", "warning", "--no-access-log", "--loop", "asyncio"]
    proc = subprocess.Popen(command, cwd=Path(__file__).parent, env=env, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.05)


async def _load(port: int, requests: int, connections: int = 8) -> float:
    request = b"GET /users/7 HTTP/1.1\r\nHost: bench\r\nAccept: application/json\r\n\r\n"
    per_conn = requests // connections

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(per_conn):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected response: {head[:80]!r}")
            length = next(int(h[15:]) for h in head.split(b"\r\n") if h[:15].lower() == b"content-length:")
            await reader.readexactly(length)
        writer.close()
        await writer.wait_closed()

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    return (time.perf_counter() - t0) / (per_conn * connections) * 1e6


async def main() -> None:
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    traced = {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}"}
    servers = {"off": _serve("off", base), "on": _serve("on", traced)}
    try:
        for _, port in servers.values():
            await _load(port, 400)  # warm-up
        results: dict[str, list[float]] = {"off": [], "on": []}
        for i in range(ROUNDS):
            for name in ("off", "on") if i % 2 else ("on", "off"):
                results[name].append(await _load(servers[name][1], REQUESTS))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)
    off_us, on_us = statistics.median(results["off"]), statistics.median(results["on"])
    print(f"served, 8 connections, median of {ROUNDS} rounds x {REQUESTS} requests")
    print(f"off  {off_us:7.1f} µs/request  {1e6 / off_us:8.0f} requests/s")
    print(f"on   {on_us:7.1f} µs/request  {1e6 / on_us:8.0f} requests/s   ratio {on_us / off_us:.2f}")
    print(f"OTLP export requests received: {_Sink.count}")


if __name__ == "__main__":
    asyncio.run(main())
