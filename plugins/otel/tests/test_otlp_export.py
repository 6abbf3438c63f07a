"""A real OTLP/HTTP export over loopback: a receiver thread parses the body with opentelemetry-proto."""

from __future__ import annotations

import gzip
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import requests
from kernel_otel import Tracing
from kernel_otel._http import TracingMiddleware
from kernel_otel._otlp import KernelSpanExporter
from kernel_otel._transport import PlainHTTPTransport, plain_http_applies
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kernel import Plugin, PluginContext, Route, hookimpl
from kernel.testing import boot_kernel
from kernel.web import KernelApp, Receive, Scope, Send


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP traces endpoint on a free loopback port; keeps every request it got."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.got = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver
    protocol_version = "HTTP/1.1"  # keeps connections alive, as a collector does

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self.server.got.set()  # before replying: the exporter's flush returns once it has the reply
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class Routes(Plugin):
    name = "routes"

    @hookimpl
    def kernel_routes(self, ctx: PluginContext[object]) -> list[Route]:
        async def ping(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"pong"})

        return [Route("/ping", ping)]


@pytest.mark.anyio
async def test_spans_arrive_at_an_otlp_http_receiver_and_parse(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url
    )  # the standard variable picks the endpoint
    config = {"otel": {"service_name": "export-test", "headers": {"x-api-key": "k-123"}}}
    async with boot_kernel("otel", "errors", Routes, config=config) as kernel:
        tracing = kernel.registry.get(Tracing)
        transport = httpx.ASGITransport(app=KernelApp(kernel))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/ping")
        trace_id = response.headers["x-request-id"]
        assert tracing.exporter.plain_http  # through the plain-HTTP transport
        assert tracing.force_flush(10_000)
    assert receiver.got.is_set()
    path, headers, body = receiver.requests[0]
    assert path == "/v1/traces"
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["x-api-key"] == "k-123"
    request = ExportTraceServiceRequest.FromString(body)
    (resource_spans,) = request.resource_spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "export-test"
    spans = [s for scope in resource_spans.scope_spans for s in scope.spans]
    (span,) = spans
    assert span.name == "GET /ping"
    assert span.trace_id.hex() == trace_id
    assert span.kind == span.SPAN_KIND_SERVER
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes["http.route"].string_value == "/ping"
    assert attributes["http.response.status_code"].int_value == 200


def _export_one(exporter: KernelSpanExporter) -> SpanExportResult:
    provider = TracerProvider(shutdown_on_exit=False)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.get_tracer("t").start_span("one").end()
    return exporter.export(memory.get_finished_spans())


def test_plain_http_sends_what_the_requests_transport_sends(receiver: Receiver) -> None:
    options = {"endpoint": f"{receiver.url}/v1/traces", "headers": {"x-api-key": "k"}, "timeout": 5}
    plain = KernelSpanExporter(**options)
    default = KernelSpanExporter(**options, session=requests.Session())  # a caller's session: not replaced
    assert plain.plain_http and isinstance(plain._client._transport, PlainHTTPTransport)
    assert not default.plain_http and not isinstance(default._client._transport, PlainHTTPTransport)
    assert _export_one(plain) == SpanExportResult.SUCCESS
    assert _export_one(default) == SpanExportResult.SUCCESS
    (path, sent, body), (path2, sent2, body2) = receiver.requests
    assert (path, body[:2]) == (path2, body2[:2]) == ("/v1/traces", b"\x0a" + body[1:2])
    for name in ("content-type", "user-agent", "x-api-key", "content-length"):
        assert sent[name] == sent2[name], name
    plain.shutdown()
    default.shutdown()


_WITHOUT_TRANSPORT_PACKAGE = """
import sys
# An exporter before its pluggable transport has no opentelemetry.exporter.http.transport, so this
# module cannot import; the installed exporter needs that package itself, so block ours instead.
sys.modules["kernel_otel._transport"] = None
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from kernel_otel._otlp import KernelSpanExporter
exporter = KernelSpanExporter(endpoint=sys.argv[1])
provider = TracerProvider(shutdown_on_exit=False)
memory = InMemorySpanExporter()
provider.add_span_processor(SimpleSpanProcessor(memory))
provider.get_tracer("t").start_span("one").end()
print(exporter.plain_http, exporter.export(memory.get_finished_spans()).name)
"""


def test_an_exporter_without_the_pluggable_transport_keeps_its_own(receiver: Receiver) -> None:
    """Exporter versions before the transport package (the plugin allows >= 1.30) still load the
    plugin and export through their own transport."""
    run = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TRANSPORT_PACKAGE, f"{receiver.url}/v1/traces"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "SUCCESS"]
    assert len(receiver.requests) == 1


def test_plain_http_keeps_its_connection_and_reconnects_when_it_was_closed(receiver: Receiver) -> None:
    exporter = KernelSpanExporter(endpoint=f"{receiver.url}/v1/traces", compression=Compression.Gzip)
    assert exporter.plain_http
    assert _export_one(exporter) == SpanExportResult.SUCCESS
    transport: PlainHTTPTransport = exporter._client._transport
    conn = transport._conn
    assert _export_one(exporter) == SpanExportResult.SUCCESS
    assert transport._conn is conn  # kept alive
    assert conn is not None and conn.sock is not None
    conn.sock.shutdown(socket.SHUT_RDWR)  # as a server closing an idle connection leaves it
    assert _export_one(exporter) == SpanExportResult.SUCCESS  # the client retries once on a new one
    assert transport._conn is not conn
    assert len(receiver.requests) == 3
    assert all(headers["content-encoding"] == "gzip" for _, headers, _ in receiver.requests)
    for _, _, body in receiver.requests:
        assert ExportTraceServiceRequest.FromString(gzip.decompress(body)).resource_spans
    exporter.shutdown()
    assert transport._conn is None


def test_plain_http_reports_a_refused_connection_as_a_connection_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    transport = PlainHTTPTransport()
    result = transport.request("POST", f"http://127.0.0.1:{port}/v1/traces", data=b"x", timeout=5)
    assert result.status_code is None
    assert transport.is_connection_error(result.error)


@pytest.mark.parametrize(
    ("endpoint", "env"),
    [
        ("https://127.0.0.1:4318/v1/traces", {}),
        ("http://user:secret@127.0.0.1:4318/v1/traces", {}),
        ("http://collector:4318/v1/traces", {"HTTP_PROXY": "http://proxy:3128"}),
        ("http://127.0.0.1:4318/v1/traces", {"OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER": "x"}),
    ],
    ids=["https", "userinfo", "proxy", "credential-provider"],
)
def test_plain_http_applies_only_where_requests_would_send_the_same(
    endpoint: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert plain_http_applies("http://collector:4318/v1/traces")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert not plain_http_applies(endpoint)


def test_ended_lean_spans_wait_as_bytes_and_export_as_the_exporter_encodes_them(receiver: Receiver) -> None:
    """Through the OTLP pipeline an ended lean span waits for export as its encoded bytes (nothing
    for the garbage collector to track, the span freed when its caller lets go); spans of another
    scope, and the SDK's own spans, wait as themselves. The request is the exporter's encoding of
    the spans, in the order they ended."""
    import gc
    import weakref

    from kernel_otel._batch import KernelBatchSpanProcessor
    from kernel_otel._ids import KernelIdGenerator
    from kernel_otel._lean import KernelTracer, LeanSpan
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanKind

    exporter = KernelSpanExporter(endpoint=f"{receiver.url}/v1/traces")
    provider = TracerProvider(
        resource=Resource.create({"service.name": "queued"}),
        id_generator=KernelIdGenerator(),
        shutdown_on_exit=False,
    )
    processor = KernelBatchSpanProcessor(exporter, schedule_delay_millis=60_000)
    provider.add_span_processor(processor)
    sdk = provider.get_tracer("milo-kernel")
    tracer, other = KernelTracer(sdk), KernelTracer(provider.get_tracer("other"))  # type: ignore[arg-type]
    root = tracer.start_root_span("GET /users", SpanKind.SERVER, {"http.request.method": "GET"})
    assert root is not None
    child = tracer.start_span("publish user.created", kind=SpanKind.PRODUCER)
    child.set_attribute("messaging.message.id", "e-1")
    elsewhere = other.start_span("other scope")
    theirs = sdk.start_span("an SDK span")
    ended = [root, child, elsewhere, theirs]
    for span in ended:
        span.end()
    expected = encode_spans(ended).SerializePartialToString()  # type: ignore[arg-type]

    queued = list(reversed(processor._batch_processor._queue))  # the worker takes the oldest first
    assert [type(item) for item in queued] == [bytes, bytes, LeanSpan, ReadableSpan]
    assert not any(gc.is_tracked(item) for item in queued[:2])
    freed = weakref.ref(root)
    del root, ended, span
    gc.disable()
    try:
        assert freed() is None  # by reference counting: nothing queued refers to it
    finally:
        gc.enable()

    assert processor.force_flush(10_000)
    ((path, _, body),) = receiver.requests
    assert path == "/v1/traces"
    assert body == expected
    provider.shutdown()


def _lane_app(tracing: Tracing, lane: bool) -> tuple[TracingMiddleware, httpx.AsyncClient]:
    """The tracing middleware around a small app (``/ping``, ``/broken``), with its root lane or not."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/broken":
            raise RuntimeError("boom")
        if scope["path"] == "/add-processor":  # a processor added while the request's span is open
            tracing.provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        scope["route_template"] = scope["path"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"pong"})

    middleware = TracingMiddleware(app, tracing.tracer)
    if not lane:
        middleware._lane = None
    transport = httpx.ASGITransport(app=middleware, raise_app_exceptions=False)
    return middleware, httpx.AsyncClient(transport=transport, base_url="http://api.test:8080")


def _exported(receiver: Receiver) -> list[Any]:
    """Every span the receiver got, in the order they were exported."""
    spans = []
    for _, _, body in receiver.requests:
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
            spans += [span for scope in resource_spans.scope_spans for span in scope.spans]
    return spans


def _without_ids_and_times(span: Any) -> Any:
    copy = type(span)()
    copy.CopyFrom(span)
    for name in ("trace_id", "span_id", "start_time_unix_nano", "end_time_unix_nano"):
        copy.ClearField(name)
    for event in copy.events:
        event.ClearField("time_unix_nano")
    return copy


@pytest.mark.anyio
async def test_requests_through_the_root_lane_export_what_the_general_path_exports(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A root request's span started and ended in line (the OTLP pipeline's case) is the span the
    general path (the tracer's start_root_span, finish, the processor's on_end) exports, byte for
    byte but its ids and times; a caller's traceparent still takes the general path."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    requests_ = [("GET", "/ping?page=2&sig=s", {}), ("POST", "/broken", {"user-agent": "t/1"})]
    caller = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    async with boot_kernel("otel", config={"otel": {"service_name": "lane"}}) as kernel:
        tracing = kernel.registry.get(Tracing)
        for lane in (True, False):
            middleware, client = _lane_app(tracing, lane)
            assert (middleware._lane is not None) is lane
            async with client:
                for method, path, headers in requests_:
                    await client.request(method, path, headers=headers)
                await client.get("/ping", headers=caller)
        assert tracing.force_flush(10_000)
    spans = _exported(receiver)
    assert len(spans) == 6
    laned, general = spans[:3], spans[3:]
    assert [_without_ids_and_times(span) for span in laned] == [
        _without_ids_and_times(span) for span in general
    ]
    assert [span.name for span in laned] == ["GET /ping", "POST", "GET /ping"]
    broken = {a.key: a.value for a in laned[1].attributes}
    assert broken["error.type"].string_value == "RuntimeError"
    assert laned[1].events[0].name == "exception"
    assert laned[2].trace_id.hex() == "0af7651916cd43dd8448eb211c80319c"
    query = {a.key: a.value for a in laned[0].attributes}["url.query"]
    assert query.string_value == "page=2&sig=REDACTED"


@pytest.mark.anyio
async def test_a_processor_added_during_a_request_or_after_gets_the_requests_spans(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The root lane hands spans to the batch processor only while it is the provider's only one: a
    span whose request added a processor, and every later one, reaches every processor."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    async with boot_kernel("otel", config={"otel": {"service_name": "lane"}}) as kernel:
        tracing = kernel.registry.get(Tracing)
        _, client = _lane_app(tracing, True)
        async with client:
            await client.get("/ping")
            await client.get("/add-processor")
            added = tracing.provider._active_span_processor._span_processors[-1]
            await client.get("/ping")
        assert tracing.force_flush(10_000)
    memory = added.span_exporter
    assert [span.name for span in memory.get_finished_spans()] == ["GET /add-processor", "GET /ping"]
    assert [span.name for span in _exported(receiver)] == ["GET /ping", "GET /add-processor", "GET /ping"]


@pytest.mark.anyio
async def test_the_root_lane_samples_as_the_ratio_sampler_decides() -> None:
    """With ``parentbased_traceidratio`` (and no exporter: the lane's no-processor case) a request is
    recorded exactly when the SDK's sampler would record its trace id."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    seen: list[tuple[int, bool]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        span = trace.get_current_span()
        seen.append((span.get_span_context().trace_id, span.is_recording()))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = {"otel": {"exporter": "none", "sampler": "parentbased_traceidratio", "ratio": 0.5}}
    async with boot_kernel("otel", config=config) as kernel:
        middleware = TracingMiddleware(app, kernel.registry.get(Tracing).tracer)
        assert middleware._lane is not None
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(64):
                await client.get("/")
    sampler = TraceIdRatioBased(0.5)
    expected = [
        (trace_id, sampler.should_sample(None, trace_id, "GET").decision.is_recording())
        for trace_id, _ in seen
    ]
    assert seen == expected
    assert {recording for _, recording in seen} == {True, False}
