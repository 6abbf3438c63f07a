"""The example host: a Starlette app whose lifespan boots the kernel (errors + metrics).

Run it from the repository root::

    python -m kernel --config examples/kernel.toml serve --app examples.service.app:app

Routes: ``GET /users/{user_id}`` (404 problem for unknown ids), ``POST /users``
(400 for bad input, 409 for a duplicate), ``GET /crash`` (an unexpected exception:
a generic 500 carrying only the trace id), and the kernel's ``/health`` and
``/health/metrics`` (mounted KernelApp).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from kernel_errors import ConflictError, ErrorMiddleware, NotFoundError, ValidationError
from kernel_metrics import MetricsCollector, MetricsMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from kernel import Kernel, KernelApp, kernel_lifespan

from .settings import SECTIONS, AppSettings

# A stand-in for a database, so the example needs no server.
USERS: dict[str, dict[str, str]] = {"1": {"id": "1", "name": "Ada Lovelace"}}


def make_kernel() -> Kernel:
    """The kernel from ``$KERNEL_CONFIG`` (``kernel serve --config`` sets it) or ``./kernel.toml``."""
    return Kernel.from_config(sections=SECTIONS, configure_logs=True)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    """Boot the kernel; build its app (health, metrics) only once plugins have started."""
    async with kernel_lifespan(make_kernel)(app) as state:
        yield {**state, "kernel_app": KernelApp(state["kernel"])}


async def kernel_routes(scope: Any, receive: Any, send: Any) -> None:
    """Hand ``/health``, ``/health/metrics`` and other plugin routes to the kernel's app."""
    await scope["state"]["kernel_app"](scope, receive, send)


def metrics(request: Request) -> MetricsCollector:
    kernel: Kernel = request.state.kernel
    return kernel.get(MetricsCollector)


async def get_user(request: Request) -> JSONResponse:
    user_id = request.path_params["user_id"]
    with metrics(request).time_db_query("findOne", "users"):
        user = USERS.get(user_id)
    if user is None:
        raise NotFoundError("User", {"user_id": user_id})
    return JSONResponse(user)


async def create_user(request: Request) -> JSONResponse:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise ValidationError("request body must be JSON") from None
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("invalid user", errors={"name": "a non-empty string is required"})
    if any(u["name"] == name for u in USERS.values()):
        metrics(request).record_event("user.created", "conflict")
        raise ConflictError(f"a user named {name!r} already exists")
    user = {"id": str(len(USERS) + 1), "name": name}
    with metrics(request).time_db_query("insertOne", "users"):
        USERS[user["id"]] = user
    metrics(request).record_event("user.created", "success")
    return JSONResponse(user, status_code=201)


async def crash(request: Request) -> JSONResponse:
    settings: AppSettings = request.state.kernel.section("app")
    # A programming error whose text holds something private: clients get only a trace id.
    raise RuntimeError(f"ledger row 1337 for {settings.name} has password_hash=$2b$12$internalOnly")


app = Starlette(
    routes=[
        Route("/users/{user_id}", get_user, methods=["GET"]),
        Route("/users", create_user, methods=["POST"]),
        Route("/crash", crash),
        Mount("/", app=kernel_routes),  # last: everything else goes to the kernel's app
    ],
    # Metrics outside errors, so the recorded status is the one the client got.
    middleware=[Middleware(MetricsMiddleware), Middleware(ErrorMiddleware)],
    lifespan=lifespan,
)
