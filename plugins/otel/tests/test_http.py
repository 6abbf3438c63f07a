"""HTTP server spans through the kernel's middleware hook, with the errors plugin's trace id."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from kernel_errors import NotFoundError
from kernel_otel import Tracing
from opentelemetry.trace import SpanKind, StatusCode

from kernel import Plugin, PluginContext, Route, hookimpl
from kernel.logging import get_trace_id
from kernel.testing import boot_kernel
from kernel.web import KernelApp, Receive, Scope, Send

MEMORY = {"otel": {"exporter": "memory", "service_name": "svc-test"}}
seen: dict[str, Any] = {}
POST_USERS_ATTRIBUTES = {
    "http.request.method": "POST",
    "url.path": "/users",
    "url.scheme": "http",
    "network.protocol.version": "1.1",
    "server.address": "api.test",
    "server.port": 8080,
    "client.address": "127.0.0.1",
    "user_agent.original": "t/1",
    "http.route": "/users",
    "http.response.status_code": 201,
}
"""A sampled ``POST /users`` span's attributes (user agent ``t/1``, base URL ``http://api.test:8080``)."""


class Routes(Plugin):
    name = "routes"

    @hookimpl
    def kernel_routes(self, ctx: PluginContext[object]) -> list[Route]:
        async def user(scope: Scope, receive: Receive, send: Send) -> None:
            seen["trace_id"] = get_trace_id()
            logging.getLogger("test.otel").warning("handling a user")
            await send({"type": "http.response.start", "status": 201, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

        async def missing(scope: Scope, receive: Receive, send: Send) -> None:
            raise NotFoundError("Widget", {"widget_id": "9"})

        async def broken(scope: Scope, receive: Receive, send: Send) -> None:
            raise RuntimeError("boom")

        return [
            Route("/users", user, methods=("POST",)),
            Route("/widgets/9", missing),
            Route("/broken", broken),
        ]


async def _request(app: KernelApp, method: str, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test:8080") as client:
        return await client.request(method, path, **kwargs)


@pytest.mark.anyio
async def test_request_yields_server_span_with_semantic_attributes(caplog: pytest.LogCaptureFixture) -> None:
    async with boot_kernel("otel", "errors", Routes, config=MEMORY) as kernel:
        tracing = kernel.registry.get(Tracing)
        caplog.set_level(logging.WARNING, logger="test.otel")
        response = await _request(KernelApp(kernel), "POST", "/users", headers={"user-agent": "t/1"})
        (span,) = tracing.memory.get_finished_spans()
    assert response.status_code == 201
    assert span.kind is SpanKind.SERVER
    assert span.name == "POST /users"
    assert span.resource.attributes["service.name"] == "svc-test"
    attributes = dict(span.attributes or {})
    assert attributes == POST_USERS_ATTRIBUTES
    trace_id = format(span.context.trace_id, "032x")
    assert seen["trace_id"] == trace_id  # the kernel trace id inside the request is the span's
    assert response.headers["x-request-id"] == trace_id  # and the errors plugin echoes it
    (record,) = [r for r in caplog.records if r.name == "test.otel"]
    assert record.span_id == format(span.context.span_id, "016x")  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_traceparent_continues_the_callers_trace() -> None:
    caller_trace, caller_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    headers = {"traceparent": f"00-{caller_trace}-{caller_span}-01", "tracestate": "vendor=x"}
    async with boot_kernel("otel", "errors", Routes, config=MEMORY) as kernel:
        tracing = kernel.registry.get(Tracing)
        response = await _request(KernelApp(kernel), "GET", "/widgets/9", headers=headers)
        (span,) = tracing.memory.get_finished_spans()
    assert format(span.context.trace_id, "032x") == caller_trace
    assert span.parent is not None and format(span.parent.span_id, "016x") == caller_span
    assert span.context.trace_state.get("vendor") == "x"
    assert response.status_code == 404
    assert response.json()["trace_id"] == caller_trace  # problem+json carries the OTel trace id
    assert span.attributes is not None and span.attributes["http.response.status_code"] == 404
    assert span.status.status_code is StatusCode.UNSET  # a 4xx is not a server error


@pytest.mark.anyio
async def test_server_error_marks_the_span_and_problem_carries_its_trace_id() -> None:
    async with boot_kernel("otel", "errors", Routes, config=MEMORY) as kernel:
        tracing = kernel.registry.get(Tracing)
        response = await _request(KernelApp(kernel), "GET", "/broken")
        (span,) = tracing.memory.get_finished_spans()
    assert response.status_code == 500
    assert response.json()["trace_id"] == format(span.context.trace_id, "032x")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "500"


@pytest.mark.anyio
async def test_x_request_id_still_wins_in_the_response() -> None:
    async with boot_kernel("otel", "errors", Routes, config=MEMORY) as kernel:
        tracing = kernel.registry.get(Tracing)
        response = await _request(KernelApp(kernel), "GET", "/widgets/9", headers={"x-request-id": "req-7"})
        (span,) = tracing.memory.get_finished_spans()
    assert response.json()["trace_id"] == "req-7"
    assert span.attributes is not None and span.attributes["http.route"] == "/widgets/9"


@pytest.mark.anyio
async def test_without_errors_plugin_the_span_records_the_status_itself() -> None:
    async with boot_kernel("otel", Routes, config=MEMORY) as kernel:
        tracing = kernel.registry.get(Tracing)
        response = await _request(KernelApp(kernel), "GET", "/nothing-here")
        (span,) = tracing.memory.get_finished_spans()
    assert response.status_code == 404
    assert span.name == "GET"  # no route matched: no template in the name
    assert span.attributes is not None and span.attributes["http.response.status_code"] == 404
    assert "http.route" not in span.attributes


@pytest.mark.anyio
async def test_middleware_order_sits_between_metrics_and_errors() -> None:
    async with boot_kernel("otel", "errors", "metrics", config=MEMORY) as kernel:
        assert [m.name for m in kernel.middleware()] == ["metrics", "otel", "errors"]


@pytest.mark.anyio
async def test_a_live_outer_span_is_the_parent_and_a_stale_one_is_not() -> None:
    from opentelemetry import context as otel_context
    from opentelemetry import trace

    async with boot_kernel("otel", "errors", Routes, config=MEMORY) as kernel:
        tracing = kernel.registry.get(Tracing)
        app = KernelApp(kernel)
        with tracing.tracer.start_as_current_span("host layer") as host:
            await _request(app, "POST", "/users")
        # a context copied from an earlier request still names its (ended) span as current
        stale = tracing.tracer.start_span("earlier request")
        stale.end()
        token = otel_context.attach(trace.set_span_in_context(stale))
        try:
            await _request(app, "POST", "/users")
        finally:
            otel_context.detach(token)
        nested, _, _, fresh = tracing.memory.get_finished_spans()
    assert nested.parent is not None and nested.parent.span_id == host.get_span_context().span_id
    assert fresh.name == "POST /users"
    assert fresh.parent is None and fresh.context.trace_id != stale.get_span_context().trace_id


@pytest.mark.anyio
async def test_each_host_header_gives_its_own_server_attributes() -> None:
    hosts = ["api.test:8080", "[::1]:9000", "api.test:8080", "other.test", "api.test:8080"]
    async with boot_kernel("otel", "errors", Routes, config=MEMORY) as kernel:
        tracing = kernel.registry.get(Tracing)
        for host in hosts:
            await _request(KernelApp(kernel), "POST", "/users", headers={"host": host})
        spans = tracing.memory.get_finished_spans()
    got = [{k: v for k, v in (span.attributes or {}).items() if k.startswith("server.")} for span in spans]
    api = {"server.address": "api.test", "server.port": 8080}
    assert got == [
        api,
        {"server.address": "::1", "server.port": 9000},
        api,
        {"server.address": "other.test"},
        api,
    ]


@pytest.mark.anyio
async def test_an_invalid_traceparent_starts_a_root_span() -> None:
    headers = {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"}
    async with boot_kernel("otel", "errors", Routes, config=MEMORY) as kernel:
        tracing = kernel.registry.get(Tracing)
        await _request(KernelApp(kernel), "GET", "/widgets/9", headers=headers)
        (span,) = tracing.memory.get_finished_spans()
    assert span.parent is None and span.context.trace_id != 0 and span.context.trace_flags.sampled


@pytest.mark.anyio
async def test_the_kernel_trace_id_is_the_span_trace_id_in_32_hex_digits_leading_zeros_kept() -> None:
    caller_trace = "00000000000000000000000000000abc"  # formatted short, it would lose its zeros
    headers = {"traceparent": f"00-{caller_trace}-b7ad6b7169203331-01"}
    seen.clear()
    async with boot_kernel("otel", Routes, config=MEMORY) as kernel:  # no errors plugin: the otel slot
        response = await _request(KernelApp(kernel), "POST", "/users", headers=headers)
        (span,) = kernel.registry.get(Tracing).memory.get_finished_spans()
    assert response.status_code == 201
    assert span.context.trace_id == 0xABC
    assert seen["trace_id"] == caller_trace  # the span's, from the otel middleware's trace slot


@pytest.mark.anyio
async def test_the_responses_last_message_is_sent_outside_the_request_span() -> None:
    """A server copies the context as it finishes a response (uvicorn's keep-alive timer, alive
    for seconds): that copy must not hold the request's span, or every span outlives its request."""
    import contextvars
    import gc
    import weakref

    from opentelemetry import trace

    current: dict[str, Any] = {}

    class Server:
        """What the app's ``send`` reaches: notes the current span per message, copies the context
        on the last one (as uvicorn does for its keep-alive timer)."""

        copied: contextvars.Context | None = None

        async def send(self, message: dict[str, Any]) -> None:
            current[message["type"]] = trace.get_current_span()
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.copied = contextvars.copy_context()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    server = Server()
    scope = {"type": "http", "method": "POST", "path": "/users", "headers": [], "query_string": b""}
    async with boot_kernel("otel", "errors", Routes, config=MEMORY) as kernel:
        tracing = kernel.registry.get(Tracing)
        await KernelApp(kernel)(scope, receive, server.send)  # type: ignore[arg-type]
        (ended,) = tracing.memory.get_finished_spans()
        assert current["http.response.start"].get_span_context() == ended.context  # current until then
        assert server.copied is not None
        kept = server.copied.run(trace.get_current_span)
        assert kept is not current["http.response.start"]
        assert not kept.get_span_context().is_valid  # the copy holds the context outside the request
        span = weakref.ref(current.pop("http.response.start"))
        scope.clear()
        tracing.memory.clear()
        gc.disable()  # freed by reference counting alone: the server's copy does not keep it
        try:
            assert span() is None
        finally:
            gc.enable()


@pytest.mark.anyio
@pytest.mark.parametrize("ratio", [0.0, 1.0])
async def test_a_ratio_sampled_request_is_traced_as_its_trace_id_decides(ratio: float) -> None:
    """``parentbased_traceidratio``: an unsampled request has a valid non-recording span (its trace id
    still the request id) and builds no span; a sampled one has every attribute, as with always_on."""
    from opentelemetry import trace

    current: dict[str, Any] = {}

    class Handler(Plugin):
        name = "handler"

        @hookimpl
        def kernel_routes(self, ctx: PluginContext[object]) -> list[Route]:
            async def user(scope: Scope, receive: Receive, send: Send) -> None:
                current["span"] = trace.get_current_span()
                current["recording"] = current["span"].is_recording()
                await send({"type": "http.response.start", "status": 201, "headers": []})
                await send({"type": "http.response.body", "body": b"{}"})

            return [Route("/users", user, methods=("POST",))]

    config = {"otel": {"exporter": "memory", "sampler": "parentbased_traceidratio", "ratio": ratio}}
    async with boot_kernel("otel", "errors", Handler, config=config) as kernel:
        tracing = kernel.registry.get(Tracing)
        response = await _request(KernelApp(kernel), "POST", "/users", headers={"user-agent": "t/1"})
        spans = tracing.memory.get_finished_spans()
    context = current["span"].get_span_context()
    assert context.is_valid and response.headers["x-request-id"] == format(context.trace_id, "032x")
    assert current["recording"] is (ratio == 1.0)
    if ratio == 0.0:
        assert spans == () and not context.trace_flags.sampled
        return
    (span,) = spans
    assert span.name == "POST /users" and span.context == context
    assert dict(span.attributes or {}) == POST_USERS_ATTRIBUTES


@pytest.mark.anyio
@pytest.mark.parametrize("flags", ["01", "00"])
async def test_a_plain_traceparent_is_continued_without_the_propagator_as_it_would(flags: str) -> None:
    """A version-00 ``traceparent`` without ``tracestate`` (what a traced caller sends) is read and its
    child started in one step: the same span as through the propagator (a ``tracestate`` takes that
    path), but for the trace state."""
    from unittest.mock import patch

    from kernel_otel import _http

    caller_trace, caller_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    plain = {"traceparent": f"00-{caller_trace}-{caller_span}-{flags}", "user-agent": "t/1"}
    spans = []
    async with boot_kernel("otel", "errors", Routes, config=MEMORY) as kernel:
        tracing = kernel.registry.get(Tracing)
        app = KernelApp(kernel)
        with patch.object(
            _http._PROPAGATOR, "extract", side_effect=AssertionError("the propagator was asked")
        ):
            plain_response = await _request(app, "POST", "/users", headers=plain)
        spans.extend(tracing.memory.get_finished_spans())
        tracing.memory.clear()
        await _request(
            app, "POST", "/users", headers={**plain, "tracestate": "vendor=x"}
        )  # the propagator's path
        spans.extend(tracing.memory.get_finished_spans())
    assert plain_response.headers["x-request-id"] == caller_trace
    if flags == "00":  # the caller did not sample: neither does parentbased_always_on
        assert spans == []
        return
    fast, general = spans
    assert fast.parent is not None and fast.parent.is_remote
    assert (fast.parent.trace_id, fast.parent.span_id) == (int(caller_trace, 16), int(caller_span, 16))
    assert (fast.context.trace_id, fast.context.trace_flags) == (
        general.context.trace_id,
        general.context.trace_flags,
    )
    assert (fast.name, fast.kind, list(fast.links)) == (general.name, general.kind, [])
    assert general.parent is not None
    assert fast.parent[:4] == general.parent[:4]  # trace id, span id, remote, flags (not the trace state)
    assert dict(fast.attributes or {}) == dict(general.attributes or {})
    assert list(fast.attributes or {}) == list(general.attributes or {})  # the same order too
    assert fast.context.trace_state.get("vendor") is None and general.context.trace_state.get("vendor") == "x"


@pytest.mark.anyio
async def test_the_query_string_is_url_query_with_signatures_redacted() -> None:
    """``url.query`` as sent, but the values the semantic conventions name (signed URLs' ``sig``,
    ``Signature``, ``AWSAccessKeyId``, ``X-Goog-Signature``) are ``REDACTED``; none without a query."""
    async with boot_kernel("otel", "errors", Routes, config=MEMORY) as kernel:
        tracing = kernel.registry.get(Tracing)
        app = KernelApp(kernel)
        await _request(app, "POST", "/users?page=2&sig=s3cr3t&mysig=kept&Signature=a%2Fb&AWSAccessKeyId=AK")
        await _request(app, "POST", "/users")
        spans = tracing.memory.get_finished_spans()
    queried, plain = (dict(span.attributes or {}) for span in spans)
    assert queried["url.query"] == "page=2&sig=REDACTED&mysig=kept&Signature=REDACTED&AWSAccessKeyId=REDACTED"
    assert queried["url.path"] == "/users"
    assert "url.query" not in plain
