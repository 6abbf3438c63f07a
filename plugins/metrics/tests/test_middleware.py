"""MetricsMiddleware: route-template labels (Starlette routes, mounts, KernelApp), bounded series, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from kernel_metrics import OVERFLOW, MetricsCollector, MetricsMiddleware
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

from kernel.testing import boot_kernel, make_kernel
from kernel.web import KernelApp, lifespan_for

Call = Callable[..., Any]


def requests_total(c: MetricsCollector) -> dict[tuple[str, str, str], float]:
    body, _ = c.render()
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == "http_requests_total":
                out[(s.labels["method"], s.labels["route"], s.labels["status"])] = s.value
    return out


async def user(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.path_params))


async def boom(request: Request) -> JSONResponse:
    raise RuntimeError("unexpected")


async def static_files(scope: Any, receive: Any, send: Any) -> None:
    await PlainTextResponse("file")(scope, receive, send)


def starlette_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/users/{user_id}", user),
            Route("/boom", boom),
            Mount("/api", routes=[Route("/items/{item_id:int}", user, name="item")]),
            Mount("/tenants/{tenant}", routes=[Route("/orders/{user_id}", user)]),
            Mount("/static", app=static_files),
        ]
    )


@pytest.mark.anyio
async def test_starlette_routes_are_labelled_by_template(asgi_call: Call) -> None:
    collector = MetricsCollector(process_metrics=False)
    app = MetricsMiddleware(starlette_app(), collector)
    for i in range(3):
        assert await asgi_call(app, f"/users/{i}") == 200
        assert await asgi_call(app, f"/api/items/{i}") == 200
        assert await asgi_call(app, f"/tenants/t{i}/orders/{i}") == 200
        assert await asgi_call(app, f"/static/css/{i}.css") == 200
        assert await asgi_call(app, f"/nothing/{i}") == 404
    assert requests_total(collector) == {
        ("GET", "/users/{user_id}", "200"): 3,
        ("GET", "/api/items/{item_id:int}", "200"): 3,
        ("GET", "/tenants/{tenant}/orders/{user_id}", "200"): 3,
        ("GET", "/static/{path}", "200"): 3,
        ("GET", "<unmatched>", "404"): 3,
    }


@pytest.mark.anyio
async def test_an_escaping_exception_is_recorded_as_500_and_reraised(asgi_call: Call) -> None:
    collector = MetricsCollector(process_metrics=False)
    app = MetricsMiddleware(starlette_app(), collector)
    with pytest.raises(RuntimeError, match="unexpected"):
        await asgi_call(app, "/boom")
    assert requests_total(collector) == {("GET", "/boom", "500"): 1}
    assert collector.registry.get_sample_value("http_active_connections") == 0


@pytest.mark.anyio
async def test_active_connections_counts_requests_in_flight(asgi_call: Call) -> None:
    collector = MetricsCollector(process_metrics=False)
    seen: list[float | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(collector.registry.get_sample_value("http_active_connections"))
        await PlainTextResponse("ok")(scope, receive, send)

    wrapped = MetricsMiddleware(app, collector)
    await asgi_call(wrapped, "/")
    assert seen == [1.0]
    assert collector.registry.get_sample_value("http_active_connections") == 0


@pytest.mark.anyio
async def test_ten_thousand_distinct_paths_make_a_bounded_number_of_series(asgi_call: Call) -> None:
    collector = MetricsCollector(process_metrics=False)
    app = MetricsMiddleware(starlette_app(), collector)
    for i in range(5000):
        await asgi_call(app, f"/users/{i}")
        await asgi_call(app, f"/scan/{i}/wp-admin.php", method="GET" if i % 2 else f"X{i}")
    series = requests_total(collector)
    assert series == {
        ("GET", "/users/{user_id}", "200"): 5000,
        ("GET", "<unmatched>", "404"): 2500,
        ("OTHER", "<unmatched>", "404"): 2500,
    }


@pytest.mark.anyio
async def test_kernel_app_routes_use_the_kernel_route_template(asgi_call: Call) -> None:
    async with boot_kernel("metrics", config={"metrics": {"process_metrics": False}}) as kernel:
        app = KernelApp(kernel)
        collector = kernel.get(MetricsCollector)
        for i in range(10_000):
            await asgi_call(app, f"/probe/{i}")
        assert await asgi_call(app, "/health") == 200
        assert await asgi_call(app, "/health/metrics") == 200  # scrapes aren't recorded by default
        assert requests_total(collector) == {
            ("GET", "<unmatched>", "404"): 10_000,
            ("GET", "/health", "200"): 1,
        }


@pytest.mark.anyio
async def test_route_labels_beyond_max_routes_collapse(asgi_call: Call) -> None:
    collector = MetricsCollector(process_metrics=False)
    routes = [Route(f"/r{i}", user) for i in range(10)]
    app = MetricsMiddleware(Starlette(routes=routes), collector, max_routes=3)
    for i in range(10):
        await asgi_call(app, f"/r{i}")
    series = requests_total(collector)
    assert len(series) == 4
    assert series[("GET", OVERFLOW, "200")] == 7


@asynccontextmanager
async def lifespan_running(app: Any) -> AsyncIterator[dict[str, Any]]:
    """Run ``app``'s ASGI lifespan like a server does; yield the lifespan state."""
    state: dict[str, Any] = {}
    to_app, app_inbox = anyio.create_memory_object_stream[dict[str, Any]](4)
    app_outbox, from_app = anyio.create_memory_object_stream[dict[str, Any]](4)
    async with to_app, app_inbox, app_outbox, from_app, anyio.create_task_group() as tg:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
        tg.start_soon(app, scope, app_inbox.receive, app_outbox.send)
        await to_app.send({"type": "lifespan.startup"})
        assert (await from_app.receive())["type"] == "lifespan.startup.complete"
        yield state
        await to_app.send({"type": "lifespan.shutdown"})
        assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"


@pytest.mark.anyio
async def test_host_app_resolves_the_collector_from_the_lifespan_and_counts_kernel_routes_once(
    asgi_call: Call,
) -> None:
    kernel = make_kernel("metrics", config={"metrics": {"process_metrics": False}})
    app = MetricsMiddleware(host_app(kernel))  # no collector yet: found in the booted kernel
    async with lifespan_running(app) as state:
        assert await asgi_call(app, "/users/7", state=dict(state)) == 200
        assert await asgi_call(app, "/health", state=dict(state)) == 200
        assert await asgi_call(app, "/nope", state=dict(state)) == 404
        collector = kernel.get(MetricsCollector)
        assert requests_total(collector) == {
            ("GET", "/users/{user_id}", "200"): 1,
            ("GET", "/health", "200"): 1,  # once, though KernelApp has the plugin's middleware too
            ("GET", "<unmatched>", "404"): 1,
        }


def host_app(kernel: Any) -> Starlette:
    """A host app as docs/embedding.md shows it: own routes, then the kernel's app mounted at the root."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with lifespan_for(kernel)(app) as state:
            yield {**state, "kernel_app": KernelApp(state["kernel"])}

    async def kernel_routes(scope: Any, receive: Any, send: Any) -> None:
        await scope["state"]["kernel_app"](scope, receive, send)

    return Starlette(
        routes=[Route("/users/{user_id}", user), Mount("/", app=kernel_routes)], lifespan=lifespan
    )


@pytest.mark.anyio
@pytest.mark.parametrize("explicit", [False, True], ids=["from-lifespan", "explicit-collector"])
@pytest.mark.parametrize("record_scrapes", [False, True])
async def test_host_middleware_follows_record_scrapes_and_exclude_routes(
    asgi_call: Call, record_scrapes: bool, explicit: bool
) -> None:
    config = {
        "metrics": {
            "process_metrics": False,
            "path": "/ops/metrics",
            "record_scrapes": record_scrapes,
            "exclude_routes": ["/health"],
        }
    }
    kernel = make_kernel("metrics", config=config)
    host = host_app(kernel)
    # The collector exists once plugins registered (before boot), so a host may also pass it in.
    app = MetricsMiddleware(host, (lambda: kernel.get(MetricsCollector)) if explicit else None)
    async with lifespan_running(app) as state:
        assert await asgi_call(app, "/users/7", state=dict(state)) == 200
        assert await asgi_call(app, "/ops/metrics", state=dict(state)) == 200
        assert await asgi_call(app, "/health", state=dict(state)) == 200
        expected = {("GET", "/users/{user_id}", "200"): 1}
        if record_scrapes:
            expected[("GET", "/ops/metrics", "200")] = 1
        assert requests_total(kernel.get(MetricsCollector)) == expected


@pytest.mark.anyio
async def test_a_middleware_serving_a_new_kernel_records_into_that_kernels_collector(asgi_call: Call) -> None:
    app = MetricsMiddleware(starlette_app())  # kept across two lifespans, as a reloading host does
    cfg = {"process_metrics": False}
    async with boot_kernel("metrics", config={"metrics": cfg}) as first:
        assert await asgi_call(app, "/users/1", state={"kernel": first}) == 200
        first_collector = first.get(MetricsCollector)
    excluding = {**cfg, "exclude_routes": ["/users/{user_id}"]}
    async with boot_kernel("metrics", config={"metrics": excluding}) as second:
        assert await asgi_call(app, "/users/2", state={"kernel": second}) == 200
        assert await asgi_call(app, "/boom", state={"kernel": second}, method="POST") == 405
        assert requests_total(second.get(MetricsCollector)) == {("POST", "/boom", "405"): 1}
    assert requests_total(first_collector) == {("GET", "/users/{user_id}", "200"): 1}


class StatusRecorder:
    """A middleware keeping the kernel.web.RESPONSE_STATUS contract, as the errors plugin's does."""

    records_response_status = True

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from kernel.web import RESPONSE_STATUS

        async def send_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                scope[RESPONSE_STATUS] = message["status"]
            await send(message)

        await self.app(scope, receive, send_status)


@pytest.mark.anyio
async def test_around_a_layer_recording_the_status_it_reads_the_status_from_the_scope(
    asgi_call: Call,
) -> None:
    collector = MetricsCollector(process_metrics=False)
    app = MetricsMiddleware(StatusRecorder(starlette_app()), collector)

    async def silent(scope: Any, receive: Any, send: Any) -> None:
        return None  # never starts a response: the server answers 500

    assert await asgi_call(app, "/users/1") == 200
    assert await asgi_call(app, "/nothing") == 404
    with pytest.raises(RuntimeError, match="unexpected"):
        await asgi_call(app, "/boom")
    await asgi_call(MetricsMiddleware(StatusRecorder(silent), collector), "/silent")
    assert requests_total(collector) == {
        ("GET", "/users/{user_id}", "200"): 1,
        ("GET", "<unmatched>", "404"): 1,
        ("GET", "/boom", "500"): 1,
        ("GET", "<unmatched>", "500"): 1,
    }
    assert collector.registry.get_sample_value("http_active_connections") == 0


@pytest.mark.anyio
async def test_request_durations_land_in_the_histogram(asgi_call: Call) -> None:
    collector = MetricsCollector(process_metrics=False, http_buckets=(0.05, 10.0))
    started = anyio.Event()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        started.set()
        await anyio.sleep(0.06)  # past the first bucket on any machine, far below the second
        await PlainTextResponse("ok")(scope, receive, send)

    app = MetricsMiddleware(slow, collector)
    for _ in range(3):
        assert await asgi_call(app, "/") == 200
    labels = {"method": "GET", "route": "<unmatched>", "status": "200"}

    def sample(name: str, **extra: str) -> float | None:
        return collector.registry.get_sample_value(name, {**labels, **extra})

    assert sample("http_request_duration_seconds_count") == 3
    assert sample("http_request_duration_seconds_bucket", le="0.05") == 0
    assert sample("http_request_duration_seconds_bucket", le="10.0") == 3
    assert 0.18 <= (sample("http_request_duration_seconds_sum") or 0) < 30
    assert started.is_set()
