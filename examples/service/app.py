"""The example host: a users/notifications service on the kernel and its plugins.

Web processes run this Starlette app (``kernel serve --app examples.service.app:app``);
worker processes run ``kernel worker`` (the processor is in :mod:`.notifications`).
``python -m examples.service.run`` starts both on one embedded Redis and wire server.

Flow: ``POST /users`` -> repository create (audit fields, ``created_by`` from ``X-User-Id``)
with its ``user.created`` event in the same transaction (the outbox: the request touches only
MongoDB) -> the outbox relay publishes it (the request's trace id) -> an idempotent subscriber
enqueues ``send-notification`` -> a worker runs it. ``GET /users/{id}`` is cache-aside
(``get_or_set``); ``PATCH /users/{id}`` updates and invalidates. Errors are
problem+json; ``/health`` and ``/health/metrics`` come from the kernel's app.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bson import ObjectId
from kernel_cache import CacheManager
from kernel_errors import AppError, ErrorMiddleware, NotFoundError, ValidationError
from kernel_eventbus import EventBus, EventMetadata
from kernel_metrics import MetricsMiddleware
from kernel_queue import QueueManager
from kernel_repository import OutboxEvent, RepositoryManager
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kernel import Kernel
from kernel.web import KernelApp, lifespan_for

from .models import User, UserRepository, field_problems, public
from .notifications import JOB, QUEUE
from .settings import SECTIONS, AppSettings

log = logging.getLogger("examples.service")

USER_CREATED = "user.created"
CACHE_TTL = 300.0


def make_kernel() -> Kernel:
    """The kernel from ``$KERNEL_CONFIG`` (``kernel serve --config`` sets it) or ``./kernel.toml``."""
    return Kernel.from_config(sections=SECTIONS, configure_logs=True)


class Users:
    """The service's handlers, bound to the plugins' services once the kernel has started."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.repo = kernel.get(RepositoryManager).repository(UserRepository)
        self.cache = kernel.get(CacheManager).namespace("user", default_ttl=CACHE_TTL)
        self.bus = kernel.get(EventBus)  # the contract type (an ABC) type-checks too
        self.queue = kernel.get(QueueManager)

    # ------------------------------------------------------------------ events

    async def on_user_created(self, data: dict[str, Any], metadata: EventMetadata) -> None:
        """Subscriber of ``user.created``: enqueue the welcome notification (once per user).

        Delivery is at-least-once (the relay may publish an entry twice, with the same event id,
        after a crash). ``bus.idempotent`` (subscribed in :func:`lifespan`) skips an event id
        already handled; the job id keyed by the user id covers what it cannot (a crash between
        the enqueue and its mark), so a user gets one notification however often its event arrives.
        """
        notification_id = f"welcome-{data['user_id']}"
        await self.queue.add_job(
            QUEUE,
            JOB,
            {
                "notification_id": notification_id,
                "user_id": data["user_id"],
                "type": "email",
                "trace_id": metadata.trace_id,
            },
            job_id=notification_id,
            attempts=5,
            backoff={"type": "exponential", "delay": 0.5},
        )
        log.info("notification queued", extra={"user_id": data["user_id"], "event_id": metadata.event_id})

    @staticmethod
    def created_events(user: User) -> list[OutboxEvent]:
        """The events a new user's document commits with (trace id: the request's, at write time)."""
        return [OutboxEvent(USER_CREATED, {"user_id": str(user.id), "email": user.email}, source="users-api")]

    # ------------------------------------------------------------------ routes

    async def create(self, request: Request) -> JSONResponse:
        body = await json_body(request)
        problems = field_problems(body)
        if problems:
            raise ValidationError("invalid user", errors=problems)
        # The user and its user.created commit in one transaction (the outbox); the relay
        # publishes the event later, so a Redis outage neither fails nor slows this request.
        user = await self.repo.create(
            {"name": body.get("name"), "email": body.get("email")},
            created_by=actor(request),
            events=self.created_events,
        )
        log.info("user created", extra={"user_id": str(user.id)})
        return JSONResponse(public(user), status_code=201)

    async def get(self, request: Request) -> JSONResponse:
        user_id = user_id_of(request)

        async def load() -> dict[str, Any]:
            user = await self.repo.find_by_id(user_id)
            if user is None:
                raise NotFoundError("User", {"user_id": user_id})
            return public(user)

        # get_or_set's union-typed factory parameter makes mypy infer Never for T here.
        return JSONResponse(await self.cache.get_or_set(user_id, load))  # type: ignore[arg-type]

    async def update(self, request: Request) -> JSONResponse:
        user_id = user_id_of(request)
        body = await json_body(request)
        changes: dict[str, Any] = {k: body[k] for k in ("name", "email") if k in body}
        if not changes or set(body) - {"name", "email"}:
            raise ValidationError(
                "invalid user update", errors={"body": "only 'name' and 'email' may be changed, at least one"}
            )
        # The repository checks an update's types only, not the model's lengths or validators.
        problems = field_problems(changes)
        if problems:
            raise ValidationError("invalid user update", errors=problems)
        user = await self.repo.update_by_id(user_id, changes, updated_by=actor(request))
        if user is None:
            raise NotFoundError("User", {"user_id": user_id})
        # Write-then-invalidate: the next GET reloads from the database.
        await self.cache.delete(user_id)
        return JSONResponse(public(user))


class MethodNotAllowedError(AppError):
    """405: the path exists, the method does not (``Allow`` lists the ones that do)."""

    status_code = 405
    error_code = "METHOD_NOT_ALLOWED"
    title = "Method Not Allowed"


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except RecursionError:
        # The decoder recurses once per nesting level: thousands of levels exhaust the stack.
        raise ValidationError("request body is nested too deeply") from None
    except ValueError:
        raise ValidationError("request body must be JSON") from None
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    return body


def actor(request: Request) -> str:
    """Who acts: the ``X-User-Id`` header an upstream gateway sets (``anonymous`` without one)."""
    return request.headers.get("x-user-id", "anonymous")[:100]


def user_id_of(request: Request) -> str:
    user_id: str = request.path_params["user_id"]
    if not ObjectId.is_valid(user_id):
        raise NotFoundError("User", {"user_id": user_id})
    return user_id


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    """Boot the kernel, subscribe the event handler, build the kernel's app (health, metrics)."""
    async with lifespan_for(make_kernel)(app) as state:
        users = Users(state["kernel"])
        # One consumer group for every web process: each event is handled by one of them, and
        # an event id handled once (a relay's duplicate) is skipped.
        users.bus.subscribe(
            USER_CREATED,
            users.bus.idempotent(users.on_user_created),
            group="user.created:enqueue-notification",
        )
        yield {**state, "kernel_app": KernelApp(state["kernel"]), "users": users}


def _users(request: Request) -> Users:
    return request.state.users  # type: ignore[no-any-return]


async def create_user(request: Request) -> JSONResponse:
    return await _users(request).create(request)


async def get_user(request: Request) -> JSONResponse:
    return await _users(request).get(request)


async def update_user(request: Request) -> JSONResponse:
    return await _users(request).update(request)


async def user_item(request: Request) -> JSONResponse:
    """``/users/{id}``: one route for every method, so a 405's ``Allow`` lists them all."""
    if request.method == "PATCH":
        return await update_user(request)
    return await get_user(request)


async def crash(request: Request) -> JSONResponse:
    settings: AppSettings = request.state.kernel.section("app")
    # A programming error whose text holds something private: clients get only a trace id.
    raise RuntimeError(f"ledger row 1337 for {settings.name} has password_hash=$2b$12$internalOnly")


SUPERVISOR_STATE_ENV = "EXAMPLE_SUPERVISOR_STATE"
"""Path of the launcher's state file (``run.py`` sets it): its restart counts go into ``/health``."""


def supervisor_state() -> dict[str, Any] | None:
    """``{"restarts": n, "processes": {name: {"restarts": n, "running": bool}}}`` from the
    launcher's state file; ``None`` when this process was not started by the launcher."""
    path = os.environ.get(SUPERVISOR_STATE_ENV)
    if not path:
        return None
    try:
        state = json.loads(Path(path).read_text())
        processes = {
            str(name): {"restarts": int(p["restarts"]), "running": bool(p["running"])}
            for name, p in state["processes"].items()
        }
        return {"restarts": int(state["restarts"]), "processes": processes}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {"restarts": None, "processes": {}}  # the launcher is stopping (or was killed)


async def kernel_routes(scope: Any, receive: Any, send: Any) -> None:
    """Hand ``/health``, ``/health/metrics`` and other plugin routes to the kernel's app
    (``GET /health`` gets the launcher's ``supervisor`` section added)."""
    kernel_app = scope["state"]["kernel_app"]
    state = supervisor_state() if scope.get("path") == "/health" and scope.get("method") == "GET" else None
    if state is None:
        await kernel_app(scope, receive, send)
        return
    start: MutableMapping[str, Any] = {}
    body = bytearray()

    async def capture(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        else:
            body.extend(message.get("body", b""))

    await kernel_app(scope, receive, capture)
    payload = bytes(body)
    try:
        report = json.loads(payload)
        report["supervisor"] = state
        payload = json.dumps(report, separators=(",", ":")).encode()
    except (ValueError, TypeError):
        pass  # not the JSON report: passed on unchanged
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    await send({**start, "headers": [*headers, (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own HTTP errors (405 from routing) become problem+json through the errors plugin."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        raise MethodNotAllowedError(
            f"{request.method} is not allowed on this path", headers=dict(exc.headers or {})
        )
    raise AppError(exc.detail, status_code=exc.status_code, headers=dict(exc.headers or {}))


app = Starlette(
    routes=[
        Route("/users", create_user, methods=["POST"]),
        Route("/users/{user_id}", user_item, methods=["GET", "PATCH"]),
        Route("/crash", crash),
    ],
    # Metrics outside errors, so the recorded status is the one the client got.
    middleware=[Middleware(MetricsMiddleware), Middleware(ErrorMiddleware)],
    exception_handlers={HTTPException: http_error},
    lifespan=lifespan,
)
# Paths matching no route above go to the kernel's app. A router's default runs only when no route
# matches the path at all, so a known path with another method is a 405, not a kernel-app 404.
app.router.default = kernel_routes
