"""Cost of the errors + metrics HTTP middleware around an app, driven in-process (no network).

Each case calls the ASGI callable directly with a prepared scope, ``ops`` requests
in a row: "raw" is the bare app, "ours" the same app wrapped as a host would wrap
it (metrics outside, errors inside). The ``starlette_*`` cases use a small
Starlette app (routing, path params, JSON responses) -- what the middleware is for
(``*_metrics_only`` / ``*_errors_only`` split the cost per layer; ``starlette_list50``
renders 50 records, closer to a real handler, still without I/O);
``asgi_noop`` uses an app that does nothing but send a response, so its ratio shows
the middleware's absolute cost against an empty request, not a realistic one.
"""

from __future__ import annotations

from typing import Any

from kernel_metrics import MetricsCollector, MetricsMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ._harness import acompare, rounds

SUITE = "http_middleware"

try:
    from kernel_errors import ErrorMiddleware
except ImportError:  # the suite still measures the metrics layer without the errors plugin
    ErrorMiddleware = None


def wrap(app: Any, collector: MetricsCollector | None, *, errors: bool = True) -> Any:
    """``app`` as a host wraps it: metrics outermost, errors inside (either may be left out)."""
    if errors and ErrorMiddleware is not None:
        app = ErrorMiddleware(app)
    return MetricsMiddleware(app, collector) if collector is not None else app


async def user(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["user_id"], "name": "Ada"})


USERS = [{"id": str(i), "name": f"user {i}", "email": f"u{i}@example.com", "active": i % 2 == 0}
         for i in range(50)]


async def users(request: Request) -> JSONResponse:
    return JSONResponse(USERS)


async def noop(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def driver(app: Any, path: str) -> Any:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    headers = [(b"host", b"bench"), (b"accept", b"application/json")]

    async def one() -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
                 "query_string": b"", "headers": headers, "client": ("127.0.0.1", 5000),
                 "server": ("bench", 80)}
        await app(scope, receive, send)

    return one


async def run(quick: bool) -> None:
    if ErrorMiddleware is None:
        print("# kernel_errors not installed: measuring the metrics middleware alone", flush=True)
    n = rounds(15, 5)
    starlette = Starlette(routes=[Route("/users", users), Route("/users/{user_id}", user)])
    collector = MetricsCollector(process_metrics=False, multiprocess_dir=None)
    wrapped = wrap(starlette, collector)
    raw = driver(starlette, "/users/42")
    await acompare(SUITE, "starlette_json", driver(wrapped, "/users/42"), raw, ops=2000, rounds_=n)
    # The same, one layer at a time, to see which one costs what.
    await acompare(SUITE, "starlette_json_metrics_only",
                   driver(wrap(starlette, collector, errors=False), "/users/42"), raw, ops=2000, rounds_=n)
    if ErrorMiddleware is not None:
        await acompare(SUITE, "starlette_json_errors_only", driver(wrap(starlette, None), "/users/42"),
                       raw, ops=2000, rounds_=n)
    # A list endpoint (50 records): still no I/O, closer to what real handlers cost.
    await acompare(SUITE, "starlette_list50", driver(wrapped, "/users"), driver(starlette, "/users"),
                   ops=1000, rounds_=n)
    await acompare(SUITE, "starlette_404", driver(wrapped, "/missing/42"),
                   driver(starlette, "/missing/42"), ops=2000, rounds_=n)
    await acompare(SUITE, "asgi_noop", driver(wrap(noop, collector), "/"), driver(noop, "/"),
                   ops=5000, rounds_=n)
