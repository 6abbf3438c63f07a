"""Embedding: the lifespan helper boots and stops the kernel with the host server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from kernel import BootError, Plugin, PluginContext, Route, hookimpl
from kernel._plugin import Receive, Scope, Send
from kernel.testing import make_kernel
from kernel.web import KernelApp, LifespanMiddleware, lifespan_for

EVENTS: list[str] = []


class Hello(Plugin):
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


async def lifespan_roundtrip(app: Any) -> list[dict[str, Any]]:
    """Drive an ASGI lifespan the way a server does; return what the app sent."""
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "lifespan.startup.failed":
            messages.clear()

    await app({"type": "lifespan", "state": {}, "asgi": {"version": "3.0"}}, receive, send)
    return sent


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
    sent = await lifespan_roundtrip(app)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
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
    sent = await lifespan_roundtrip(app)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
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
    sent = await lifespan_roundtrip(LifespanMiddleware(KernelApp(kernel), kernel))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
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
    sent = await lifespan_roundtrip(app)
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
