"""Serving the kernel (``kernel.web``): the lifespan helpers boot and stop the kernel with the host
server, ``KernelApp`` serves plugin routes, ``kernel serve`` runs it on uvicorn (or says how to get it)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from kernel import BootError, Plugin, PluginContext, Route, hookimpl
from kernel._plugin import Receive, Scope, Send
from kernel.process import free_port
from kernel.testing import asgi_request, make_kernel
from kernel.web import KernelApp, LifespanMiddleware, lifespan_for
from kernel.web._serve import ServedApp

EVENTS: list[str] = []


class Hello(Plugin):
    """Its routes need a service that exists only after its lifespan started."""

    name = "hello"

    @hookimpl
    async def kernel_lifespan(self, ctx: PluginContext[Any]) -> AsyncIterator[None]:
        EVENTS.append("start")
        ctx.provide("world", name="greeting", types=())
        yield
        EVENTS.append("stop")

    @hookimpl
    def kernel_routes(self, ctx: PluginContext[Any]) -> list[Route]:
        greeting = ctx.registry.get("greeting")

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            body = f"{greeting} {scope['route_template']}".encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})

        return [Route("/hello", app), Route("/files", app, prefix=True)]


class Broken(Plugin):
    name = "broken"

    @hookimpl
    async def kernel_lifespan(self) -> AsyncIterator[None]:
        raise RuntimeError("cannot start")
        yield


async def request(app: Any, path: str, state: dict[str, Any]) -> tuple[int, bytes]:
    scope = {"type": "http", "method": "GET", "path": path, "headers": [], "state": dict(state)}
    sent = await asgi_request(app, scope)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def lifespan(
    app: Any, state: dict[str, Any] | None = None, during: Callable[[], Awaitable[None]] | None = None
) -> list[dict[str, Any]]:
    """Drive an ASGI lifespan the way a server does; return what the app sent.

    ``during`` runs once the startup is over, before the shutdown message is sent.
    """
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []
    started = anyio.Event()
    proceed = anyio.Event()

    async def receive() -> dict[str, Any]:
        message = inbox.pop(0)
        if message["type"] == "lifespan.shutdown":
            started.set()
            await proceed.wait()
        return message

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "lifespan.startup.failed":
            started.set()

    scope = {"type": "lifespan", "state": {} if state is None else state, "asgi": {"version": "3.0"}}
    async with anyio.create_task_group() as tg:
        tg.start_soon(app, scope, receive, send)
        await started.wait()
        if during is not None:
            await during()
        proceed.set()
    return sent


COMPLETE = ["lifespan.startup.complete", "lifespan.shutdown.complete"]
"""The message types of a lifespan that booted and stopped."""


@pytest.fixture(autouse=True)
def _reset() -> None:
    EVENTS.clear()


@pytest.mark.anyio
async def test_starlette_lifespan_boots_and_stops_the_kernel() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount
    from starlette.routing import Route as SRoute

    kernel = make_kernel(Hello, entry_points=False)

    async def home(request: Request) -> PlainTextResponse:
        k = request.state.kernel
        return PlainTextResponse(k.registry.get("greeting"))

    app = Starlette(routes=[SRoute("/", home)], lifespan=lifespan_for(kernel))
    sent = await lifespan(app)
    assert [m["type"] for m in sent] == COMPLETE
    assert EVENTS == ["start", "stop"]

    # And the kernel's own routes mount into the host.
    async with kernel:
        app = Starlette(routes=[Mount("/ops", app=KernelApp(kernel))])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            assert (await c.get("/ops/health")).json()["status"] == "ok"


@pytest.mark.anyio
async def test_lifespan_middleware_for_bare_asgi_apps() -> None:
    kernel = make_kernel(Hello, entry_points=False)
    app = LifespanMiddleware(KernelApp(kernel), kernel)
    sent = await lifespan(app)
    assert [m["type"] for m in sent] == COMPLETE
    assert EVENTS == ["start", "stop"]


class Background(Plugin):
    """Holds a task group with a background task across its ``yield``."""

    name = "background"

    @hookimpl
    async def kernel_lifespan(self) -> AsyncIterator[None]:
        async def run() -> None:
            try:
                await anyio.sleep_forever()
            finally:
                EVENTS.append("background ended")

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            EVENTS.append("start")
            yield
            EVENTS.append("stop")
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_lifespan_holding_a_task_group_boots_and_stops_with_the_server() -> None:
    kernel = make_kernel(Background, entry_points=False)
    sent = await lifespan(LifespanMiddleware(KernelApp(kernel), kernel))
    assert [m["type"] for m in sent] == COMPLETE
    assert EVENTS == ["start", "stop", "background ended"]


@pytest.mark.anyio
async def test_a_cancelled_lifespan_task_still_stops_the_kernel() -> None:
    """A server that cancels its lifespan task after startup (no shutdown message) still gets a teardown."""
    kernel = make_kernel(Hello, Background, entry_points=False)
    app = LifespanMiddleware(KernelApp(kernel), kernel)
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        if received == 1:
            return {"type": "lifespan.startup"}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    with anyio.CancelScope() as scope:

        async def send(message: dict[str, Any]) -> None:
            assert message["type"] == "lifespan.startup.complete", message
            scope.cancel()

        await app({"type": "lifespan", "state": {}, "asgi": {"version": "3.0"}}, receive, send)
    assert scope.cancelled_caught
    assert not kernel.booted
    assert EVENTS == ["start", "start", "stop", "background ended", "stop"]


@pytest.mark.anyio
async def test_a_failing_boot_reports_startup_failed() -> None:
    app = LifespanMiddleware(
        KernelApp(make_kernel(entry_points=False)), lambda: make_kernel(Broken, entry_points=False)
    )
    sent = await lifespan(app)
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert "cannot start" in sent[0]["message"]


@pytest.mark.anyio
async def test_lifespan_for_propagates_boot_errors_to_the_host() -> None:
    cm = lifespan_for(make_kernel(Broken, entry_points=False))(None)
    with pytest.raises(BootError):
        await cm.__aenter__()


@pytest.mark.anyio
async def test_plugin_routes_are_served_with_their_template() -> None:
    kernel = make_kernel(Hello, entry_points=False)
    async with kernel:
        app = KernelApp(kernel)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            assert (await c.get("/hello")).text == "world /hello"
            assert (await c.get("/files/a/b.txt")).text == "world /files"
            assert (await c.get("/filesystem")).status_code == 404


@pytest.mark.anyio
async def test_served_app_boots_builds_routes_after_boot_and_tears_down() -> None:
    app = ServedApp(lambda: make_kernel(Hello, entry_points=False))
    state: dict[str, Any] = {}
    before = await request(app, "/hello", state)
    results: list[tuple[int, bytes]] = []

    async def during() -> None:
        results.append(await request(app, "/hello", state))
        results.append(await request(app, "/health", state))

    sent = await lifespan(app, state, during)
    assert before[0] == 503
    assert results[0] == (200, b"world /hello")
    assert results[1][0] == 200
    assert [m["type"] for m in sent] == COMPLETE
    assert EVENTS == ["start", "stop"]
    assert "kernel" in state


@pytest.mark.anyio
async def test_boot_failure_fails_the_startup(caplog: pytest.LogCaptureFixture) -> None:
    app = ServedApp(lambda: make_kernel(Broken, entry_points=False))
    sent = await lifespan(app)
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "kernel serve: startup failed" in caplog.text
    assert "cannot start" in caplog.text


class Clashing(Plugin):
    """Boots fine, but two of its routes claim the same path: the app cannot be built."""

    name = "clashing"

    @hookimpl
    async def kernel_lifespan(self) -> AsyncIterator[None]:
        EVENTS.append("start")
        yield
        EVENTS.append("stop")

    @hookimpl
    def kernel_routes(self) -> list[Route]:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            raise AssertionError("never served")

        return [Route("/twice", app), Route("/twice", app)]


@pytest.mark.anyio
async def test_an_app_that_cannot_be_built_fails_the_startup_and_stops_the_kernel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = ServedApp(lambda: make_kernel(Clashing, entry_points=False))
    sent = await lifespan(app)
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "kernel serve: startup failed: two routes claim '/twice'" in caplog.text
    assert EVENTS == ["start", "stop"]


def test_serve_with_workers_needs_an_import_string() -> None:
    from kernel.web import serve

    with pytest.raises(ValueError, match=r"serve\(workers=2\) needs the app as a 'module:attr'"):
        serve(make_kernel(Hello, entry_points=False), workers=2)


def test_serve_without_uvicorn_says_how_to_install(tmp_path: Path) -> None:
    config = tmp_path / "kernel.toml"
    config.write_text("[kernel]\nplugins = []\n")
    code = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "from kernel._cli import main\n"
        f"raise SystemExit(main(['--config', {str(config)!r}, 'serve']))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "kernel serve needs uvicorn: pip install 'milo-kernel[serve]'" in result.stderr


LEAKY_APP = """
import contextvars
import json

# A library that sets a context variable and never resets it.
LEAK = contextvars.ContextVar("leak", default=None)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    before = LEAK.get()
    LEAK.set(dict(scope["headers"]).get(b"x-tag", b"").decode())
    more = True
    while more:  # a body above 64 KiB makes uvicorn pause reading and resume it from this task
        message = await receive()
        more = message.get("more_body", False)
    body = json.dumps({"before": before}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""


@pytest.mark.parametrize("size", [70_000, 10_000], ids=["above-64KiB", "below-64KiB"])
def test_serve_starts_every_request_from_a_fresh_context(tmp_path: Path, size: int) -> None:
    import http.client
    import inspect
    import json
    import time

    uvicorn = pytest.importorskip("uvicorn", reason="kernel serve needs the serve extra")
    if "reset_contextvars" not in inspect.signature(uvicorn.Config).parameters:
        pytest.skip("uvicorn < 0.45 has no reset_contextvars (the errors middleware covers its own state)")
    (tmp_path / "leaky.py").write_text(LEAKY_APP)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL")}
    log = tmp_path / "serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kernel",
                "--config",
                str(tmp_path / "kernel.toml"),
                "serve",
                "--app",
                "leaky:app",
                "--app-dir",
                str(tmp_path),
                "--port",
                str(port),
                "--no-access-log",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 60
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:  # wait until it listens
            try:
                conn.connect()
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "kernel serve did not start listening"
                time.sleep(0.05)  # polling a subprocess's port, with a deadline
        seen = []
        for tag, body in (("poison-1", b"x" * size), ("second", b"{}"), ("third", b"{}")):
            conn.request("POST", "/", body=body, headers={"x-tag": tag})
            resp = conn.getresponse()
            assert resp.status == 200, log.read_text()
            seen.append(json.loads(resp.read())["before"])
        assert seen == [None, None, None]  # one keep-alive connection, nothing inherited
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.anyio
async def test_asgi_middleware_binds_the_app_and_reads_whether_it_records_the_status() -> None:
    from kernel.web import RESPONSE_STATUS, ASGIMiddleware

    class Layer(ASGIMiddleware):
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            call = self._call
            await call(scope, receive, send)

    class Recording(ASGIMiddleware):
        records_response_status = True

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            scope[RESPONSE_STATUS] = 204
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def plain(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    outer = Layer(plain)
    assert outer.app is plain and outer._call is plain and outer._status_in_scope is False
    recording = Recording(plain)
    outer.app = recording  # re-wrapping updates both
    assert outer.app is recording and outer._call == recording.__call__ and outer._status_in_scope is True
    assert ASGIMiddleware.records_response_status is False
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": []}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await outer(scope, receive, send)
    assert [m.get("status") for m in sent] == [204, None]
    assert scope[RESPONSE_STATUS] == 204
