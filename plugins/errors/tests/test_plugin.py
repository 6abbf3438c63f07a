"""The errors plugin booted in isolation."""

from __future__ import annotations

import httpx
import pytest
from kernel_errors import ErrorMiddleware, NotFoundError, ProblemRenderer

from kernel import ConfigError, Middleware, Plugin, PluginContext, Route, hookimpl
from kernel.testing import boot_kernel, make_kernel
from kernel.web import KernelApp


class Outer(Plugin):
    """Stands in for metrics (order 10) and an app-level middleware (order 100)."""

    name = "outer"

    @hookimpl
    def kernel_middleware(self, ctx: PluginContext[object]) -> list[Middleware]:
        return [
            Middleware(lambda app: app, order=100, name="auth"),
            Middleware(lambda app: app, order=10, name="metrics"),
        ]


class Routes(Plugin):
    name = "routes"
    requires = ("errors",)

    @hookimpl
    def kernel_routes(self, ctx: PluginContext[object]) -> list[Route]:
        async def missing(scope: object, receive: object, send: object) -> None:
            raise NotFoundError("Widget", {"widget_id": "9"})

        return [Route("/widgets/9", missing)]


@pytest.mark.anyio
async def test_plugin_registers_renderer_and_wraps_served_routes() -> None:
    config = {"errors": {"type_base_url": "https://errors.example.com/", "expose_context": True}}
    async with boot_kernel("errors", Routes, config=config) as k:
        renderer = k.registry.get(ProblemRenderer)
        assert k.registry.get("errors") is renderer
        assert renderer.expose_context is True
        transport = httpx.ASGITransport(app=KernelApp(k))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            resp = await c.get("/widgets/9")
            health = await c.get("/health")
    assert resp.status_code == 404
    assert resp.json()["type"] == "https://errors.example.com/not-found"
    assert resp.json()["context"] == {"widget_id": "9"}
    assert resp.json()["trace_id"] == resp.headers["x-request-id"]
    assert "x-request-id" in health.headers  # kernel routes are wrapped too


@pytest.mark.anyio
async def test_host_app_mounting_the_kernel_app_renders_once() -> None:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware as StarletteMiddleware
    from starlette.routing import Mount

    config = {"errors": {"type_base_url": "https://errors.example.com/"}}
    async with boot_kernel("errors", Routes, config=config) as k:
        host = Starlette(
            routes=[Mount("/", app=KernelApp(k))],
            middleware=[StarletteMiddleware(ErrorMiddleware, renderer=k.get(ProblemRenderer))],
        )
        transport = httpx.ASGITransport(app=host)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            resp = await c.get("/widgets/9", headers={"x-request-id": "host-req-7"})
    assert resp.status_code == 404
    assert resp.headers.get_list("x-request-id") == ["host-req-7"]
    assert resp.json()["type"] == "https://errors.example.com/not-found"


@pytest.mark.anyio
async def test_middleware_sits_inside_metrics_and_outside_the_rest() -> None:
    async with boot_kernel("errors", Outer) as k:
        assert [m.name for m in k.middleware()] == ["metrics", "errors", "auth"]
    async with boot_kernel("errors", Outer, config={"errors": {"middleware_order": 1}}) as k:
        assert [m.name for m in k.middleware()] == ["errors", "metrics", "auth"]


@pytest.mark.anyio
async def test_defaults_hide_context() -> None:
    async with boot_kernel("errors") as k:
        renderer = k.registry.get(ProblemRenderer)
        assert (renderer.type_base_url, renderer.expose_context) == (None, False)


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError) as exc_info:
        make_kernel("errors", config={"errors": {"client_error_log_level": "loud"}})
    assert sorted(exc_info.value.errors) == [
        "plugins.errors.client_error_log_level: expected one of 'debug', 'info', 'warning', got 'loud'",
    ]
    with pytest.raises(ConfigError) as exc_info:
        make_kernel("errors", config={"errors": {"trace_header": "x request id"}})
    assert exc_info.value.errors == [
        "plugins.errors.trace_header: must be an HTTP header name (letters, digits, '-'), got 'x request id'"
    ]
    with pytest.raises(ConfigError) as exc_info:
        make_kernel("errors", config={"errors": {"type_base_url": "errors/"}})
    assert exc_info.value.errors == [
        "plugins.errors.type_base_url: must be an absolute URI prefix, got 'errors/'"
    ]
