"""A small pure-ASGI app serving ``/health``, the probes under it, and every plugin route."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .._health import draining
from .._kernel import Kernel
from .._plugin import ASGIApp, Receive, Route, Scope, Send


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    head: bool = False,
) -> None:
    """Send a complete response: ``content-type`` and ``content-length`` of ``body``, then ``headers``.

    With ``head``, the body itself is left out (a ``HEAD`` response keeps the ``GET``'s headers).
    """
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


async def send_json(
    send: Send,
    status: int,
    body: Any,
    *,
    content_type: str = "application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Send a complete JSON response."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    await send_response(send, status, payload, content_type, headers or ())


def health_endpoint(kernel: Kernel) -> ASGIApp:
    """``GET /health``: aggregated checks, 200 or 503, with no error text, versions or hosts."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        report = await kernel.health()
        await send_json(send, report.http_status, report.to_dict(), headers=NO_STORE)

    return app


NO_STORE = [(b"cache-control", b"no-store")]


def live_endpoint() -> ASGIApp:
    """``GET /health/live``: 200 while the process serves; never runs a check (cheap)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"status": "alive"}, headers=NO_STORE)

    return app


def startup_endpoint(kernel: Kernel) -> ASGIApp:
    """``GET /health/startup``: 200 once the kernel has booted, 503 before (and after it stopped)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if kernel.booted:
            await send_json(send, 200, {"status": "started"}, headers=NO_STORE)
        else:
            await send_json(send, 503, {"status": "starting"}, headers=NO_STORE)

    return app


def ready_endpoint(kernel: Kernel) -> ASGIApp:
    """``GET /health/ready``: the checks as a tree of plugins; 503 if a critical one failed,
    while the kernel is not booted, and as soon as the process is draining (SIGTERM)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if draining():  # before any check: the answer must not wait on a dependency
            await send_json(send, 503, {"status": "draining"}, headers=NO_STORE)
            return
        if not kernel.booted:
            await send_json(send, 503, {"status": "starting"}, headers=NO_STORE)
            return
        report = await kernel.health()
        body = {"status": report.status, "plugins": report.tree()}
        await send_json(send, report.http_status, body, headers=NO_STORE)

    return app


class KernelApp:
    """A tiny ASGI router: ``/health``, its probes and every plugin route, wrapped in plugin middleware.

    The probes: ``<health_path>/live`` (liveness), ``/ready`` (readiness) and ``/startup``.

    Mount it in a host app or serve it alone (``kernel serve``). Routes are collected
    from the plugins on the first request, so build it before or after boot. It does
    not handle lifespan; wrap it in :class:`~kernel.web.LifespanMiddleware` to serve it standalone.
    """

    def __init__(self, kernel: Kernel, *, health_path: str = "/health") -> None:
        self.kernel = kernel
        self._health_path = health_path
        self._exact: dict[str, Route] = {}
        self._prefixes: list[Route] = []
        self._app: ASGIApp | None = None

    def _build(self) -> ASGIApp:
        # Built on first use, after boot: plugin routes may close over started services.
        kernel = self.kernel
        base = self._health_path.rstrip("/")
        routes = [
            Route(self._health_path, health_endpoint(kernel), name="health"),
            Route(f"{base}/live", live_endpoint(), name="health-live"),
            Route(f"{base}/ready", ready_endpoint(kernel), name="health-ready"),
            Route(f"{base}/startup", startup_endpoint(kernel), name="health-startup"),
            *kernel.routes(),
        ]
        exact: dict[str, Route] = {}
        prefixes: list[Route] = []
        for route in routes:
            if route.prefix:
                prefixes.append(route)
            elif route.path in exact:
                raise ValueError(f"two routes claim {route.path!r}")
            else:
                exact[route.path] = route
        prefixes.sort(key=lambda r: len(r.path), reverse=True)
        self._exact, self._prefixes = exact, prefixes
        app: ASGIApp = self._dispatch
        for mw in reversed(kernel.middleware()):
            app = mw.wrap(app)
        self._app = app
        return app

    @property
    def routes(self) -> list[Route]:
        """Every route served, exact ones first."""
        if self._app is None:
            self._build()
        return [*self._exact.values(), *self._prefixes]

    def match(self, path: str) -> Route | None:
        """The route serving ``path``, if any."""
        if self._app is None:
            self._build()
        route = self._exact.get(path)
        if route is not None:
            return route
        for r in self._prefixes:
            if path == r.path or path.startswith(r.path.rstrip("/") + "/"):
                return r
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app or self._build()
        await app(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # mounted: ASGI paths include the mount prefix
            path = path[len(root) :] or "/"
        route = self.match(path)
        if route is None:
            await send_json(
                send, 404, {"status": 404, "title": "Not Found"}, content_type="application/problem+json"
            )
            return
        if scope["method"] not in route.methods and not (
            scope["method"] == "HEAD" and "GET" in route.methods
        ):
            allow = ", ".join(route.methods).encode()
            await send_json(
                send,
                405,
                {"status": 405, "title": "Method Not Allowed"},
                content_type="application/problem+json",
                headers=[(b"allow", allow)],
            )
            return
        scope.setdefault("route_template", route.path)
        await route.app(scope, receive, send)
