"""A host Starlette app lists TracingMiddleware before the kernel boots: it finds the tracer later."""

from __future__ import annotations

from typing import Any

import pytest
from kernel_errors import ErrorMiddleware
from kernel_otel import Tracing, TracingMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kernel.testing import asgi_request, http_scope, make_kernel
from kernel.web import lifespan_for


async def user(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["user_id"]})


def host() -> Starlette:
    return Starlette(
        routes=[Route("/users/{user_id}", user)],
        middleware=[Middleware(TracingMiddleware), Middleware(ErrorMiddleware)],
    )


async def call(app: Any, path: str, state: dict[str, Any]) -> tuple[int, dict[bytes, bytes]]:
    scope = http_scope(
        path,
        headers=[(b"host", b"api.test")],
        client=("127.0.0.1", 5000),
        server=("127.0.0.1", 8000),
        state=state,
    )
    sent = await asgi_request(app, scope)
    return sent[0]["status"], dict(sent[0]["headers"])


@pytest.mark.anyio
async def test_host_app_traces_with_the_booted_kernels_tracer_and_route_template() -> None:
    kernel = make_kernel("otel", config={"otel": {"exporter": "memory"}})
    app = host()
    async with lifespan_for(kernel)(app) as state:
        status, headers = await call(app, "/users/7", dict(state))
        (span,) = kernel.get(Tracing).memory.get_finished_spans()
    assert status == 200
    assert span.name == "GET /users/{user_id}"
    assert span.attributes is not None and span.attributes["http.route"] == "/users/{user_id}"
    assert headers[b"x-request-id"].decode() == format(span.context.trace_id, "032x")


@pytest.mark.anyio
async def test_host_app_without_the_otel_plugin_passes_requests_through() -> None:
    kernel = make_kernel("errors")
    app = host()
    async with lifespan_for(kernel)(app) as state:
        status, headers = await call(app, "/users/7", dict(state))
    assert status == 200 and b"x-request-id" in headers  # served, untraced
