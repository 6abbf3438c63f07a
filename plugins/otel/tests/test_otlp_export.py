"""A real OTLP/HTTP export over loopback: a receiver thread parses the body with opentelemetry-proto."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from kernel_otel import Tracing
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

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
