"""The plugin's OTLP encoding writes the exporter's own bytes, for every kind of span and value."""

from __future__ import annotations

import enum
from collections.abc import Sequence

import pytest
from kernel_otel import Tracing
from kernel_otel._lean import KernelTracer, LeanSpan
from kernel_otel._otlp import Encoder, KernelSpanExporter
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from kernel.testing import boot_kernel


class Colour(enum.StrEnum):
    RED = "red"


def _spans(tracer: trace.Tracer) -> None:
    """Spans with what an encoder can get wrong: every value type, events, links, a remote parent."""
    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "x"), ("other", "y")]),
    )
    parent = trace.set_span_in_context(NonRecordingSpan(remote))
    attributes = {
        "text": "ada",
        "empty": "",
        "zero": 0,
        "negative": -5,
        "big": 1 << 70,  # over int64: the exporter logs it and leaves it out
        "yes": True,
        "no": False,
        "ratio": 0.25,
        "raw": b"\x00\x01",
        "ints": [1, 2, 3],
        "flags": (True, False),
        "colour": Colour.RED,
        "nested": {"a": 1, "b": ["x", "y"]},
    }
    linked = tracer.start_span("linked")
    linked.end()
    with tracer.start_as_current_span(
        "consume",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        links=[Link(linked.get_span_context(), {"k": "v"}), Link(remote)],
    ) as span:
        span.add_event("retry", {"attempt": 2}, timestamp=1_700_000_000_000_000_000)
        span.record_exception(ValueError("bad"))
        span.set_status(Status(StatusCode.ERROR, "boom"))
    for kind in SpanKind:
        with tracer.start_as_current_span(f"kind {kind.name}", kind=kind) as span:
            span.set_attribute("http.response.status_code", 200)
    with tracer.start_as_current_span("ok") as span:
        span.set_status(Status(StatusCode.OK))


@pytest.mark.anyio
@pytest.mark.parametrize("lean", [False, True], ids=["sdk-tracer", "kernel-tracer"])
async def test_encoding_equals_the_exporters_bytes(caplog: pytest.LogCaptureFixture, lean: bool) -> None:
    async with boot_kernel("otel", config={"otel": {"exporter": "memory"}}) as kernel:
        tracing = kernel.registry.get(Tracing)
        _spans(tracing.kernel_tracer if lean else tracing.tracer)
        spans: tuple[ReadableSpan, ...] = tracing.memory.get_finished_spans()
    expected = encode_spans(spans).SerializePartialToString()
    encoder = Encoder()
    assert encoder.request(spans) == expected
    assert encoder.request(spans) == expected  # again, from the remembered attribute bytes
    assert encoder.request(spans[:1]) == encode_spans(spans[:1]).SerializePartialToString()
    assert encoder.request(()) == encode_spans(()).SerializePartialToString()
    assert "cannot encode attribute big" in caplog.text


@pytest.mark.anyio
async def test_the_otlp_exporter_uses_the_encoding() -> None:
    config = {"otel": {"exporter": "otlp", "endpoint": "http://127.0.0.1:9"}}
    async with boot_kernel("otel", config=config) as kernel:
        exporter = kernel.registry.get(Tracing).exporter
        assert isinstance(exporter, KernelSpanExporter)
        assert exporter.fast  # the installed exporter has what the fast path needs


@pytest.mark.parametrize("count", [0, 1])
def test_dropped_attributes_are_encoded(count: int) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=count), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sdk = provider.get_tracer("t")
    for tracer in (sdk, KernelTracer(sdk)):  # type: ignore[arg-type]
        span = tracer.start_span("limited", attributes={"a": 1, "b": "x"})
        if isinstance(span, LeanSpan):
            span.set_trusted({"c": 2})
        else:
            span.set_attribute("c", 2)
        span.end()
    spans = exporter.get_finished_spans()
    assert [s.dropped_attributes for s in spans] == [3 - count, 3 - count]
    assert Encoder().request(spans) == encode_spans(spans).SerializePartialToString()


def test_lean_spans_with_equal_values_of_other_types_encode_as_the_exporters() -> None:
    """The remembered bytes of a lean span (ids and times aside) are keyed by each value's type too."""
    tracer, exporter = _lean_pipeline()
    remote = SpanContext(0xAB, 0xCD, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    under_remote = trace.set_span_in_context(NonRecordingSpan(remote))
    values: list[object] = [1, True, 1.0, "1", Colour.RED, "red", 0, False, -0.0, 0.0]
    for context in (None, under_remote):
        for kind in (SpanKind.SERVER, SpanKind.CLIENT):
            for value in values * 2:  # each seen before, the second time
                span = tracer.start_span("same", context, kind=kind)
                assert isinstance(span, LeanSpan)
                span.set_trusted({"http.route": "/a", "v": value})  # type: ignore[dict-item]
                span.end()
    spans = exporter.get_finished_spans()
    assert len(spans) == 2 * 2 * 2 * len(values)
    encoder = Encoder()
    for span in spans:  # one at a time: each request has exactly that span's bytes
        assert encoder.request([span]) == encode_spans([span]).SerializePartialToString()
    assert encoder.request(spans) == encode_spans(spans).SerializePartialToString()


def _lean_pipeline() -> tuple[KernelTracer, InMemorySpanExporter]:
    """A lean tracer whose ended spans an in-memory exporter keeps."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return KernelTracer(provider.get_tracer("t")), exporter  # type: ignore[arg-type]


def _event_spans(count: int, size: int = 36, attempts: Sequence[object] = (0, 1)) -> list[ReadableSpan]:
    """Lean PRODUCER spans as the event bus makes them: each with its own ``messaging.message.id``."""
    tracer, exporter = _lean_pipeline()
    for n in range(count):
        span = tracer.start_span("user.created publish", kind=SpanKind.PRODUCER)
        assert isinstance(span, LeanSpan)
        span.set_trusted(
            {
                "messaging.system": "milo-kernel-eventbus",
                "messaging.operation.type": "send",
                "messaging.destination.name": "user.created",
                "messaging.message.id": f"{n:0{size}d}",
                "kernel.eventbus.attempt": attempts[n % len(attempts)],  # type: ignore[dict-item]
            }
        )
        span.end()
    return list(exporter.get_finished_spans())


@pytest.mark.parametrize("size", [0, 36, 0x5F, 0x60, 300])
def test_event_spans_with_distinct_message_ids_encode_as_the_exporters(size: int) -> None:
    spans = _event_spans(6, size)
    encoder = Encoder()
    for span in spans:  # one at a time: each request has exactly that span's bytes
        assert encoder.request([span]) == encode_spans([span]).SerializePartialToString()
    assert encoder.request(spans) == encode_spans(spans).SerializePartialToString()


def test_event_spans_with_equal_values_of_other_types_encode_as_the_exporters() -> None:
    """An event span's remembered shape (its message id left out) is keyed by each value's type too."""
    spans = _event_spans(20, attempts=(0, False, 1, True, 1.0))
    encoder = Encoder()
    for span in spans:  # one at a time: each request has exactly that span's bytes
        assert encoder.request([span]) == encode_spans([span]).SerializePartialToString()
    assert encoder.request(spans) == encode_spans(spans).SerializePartialToString()


def test_message_ids_are_not_remembered() -> None:
    """10k distinct ids: the encoder's caches keep one entry per span shape, not one per id."""
    encoder = Encoder()
    spans = _event_spans(10_000)

    def sizes() -> list[int]:
        remembered = sum(len(layout.spans) for layout in encoder._layouts.values())
        caches = (encoder._seen, encoder._layouts, encoder._names, *encoder._blocks.values())
        return [remembered, *(len(cache) for cache in caches)]

    encoder.request(spans[:2])  # both shapes (attempt 0 and 1), the resource's attributes
    before = sizes()
    assert (before[0], *before[2:4]) == (2, 1, 1)  # 2 spans remembered, of 1 layout; 1 name
    for span in spans:
        encoder.span(span)
    encoder.request(spans[-100:])
    assert sizes() == before


def _request_spans(count: int, agent: str = "t/1") -> list[ReadableSpan]:
    """Lean SERVER spans as the HTTP middleware makes them, each with its own path and client."""
    tracer, exporter = _lean_pipeline()
    for n in range(count):
        span = tracer.start_span("GET /users/{id}", kind=SpanKind.SERVER)
        assert isinstance(span, LeanSpan)
        span.set_trusted(
            {
                "http.request.method": "GET",
                "url.path": f"/users/{n}",
                "url.scheme": "http",
                "server.address": "api.test",
                "server.port": 8080 + n % 2,
                "client.address": f"10.0.{n // 256}.{n % 256}",
                "user_agent.original": agent,
                "http.route": "/users/{id}",
                "http.response.status_code": 200 if n % 3 else 404,
            }
        )
        span.end()
    return list(exporter.get_finished_spans())


@pytest.mark.parametrize("agent", ["t/1", "é" * 50, "a" * (0x80 - 6 - len("user_agent.original")), "a" * 300])
def test_request_spans_with_distinct_paths_and_clients_encode_as_the_exporters(agent: str) -> None:
    """Paths, clients and user agents are encoded where they are, each time: around them a span's
    bytes are remembered, with each remembered span's ints checked by type."""
    spans = _request_spans(12, agent)
    encoder = Encoder()
    for span in spans:  # one at a time: each request has exactly that span's bytes
        assert encoder.request([span]) == encode_spans([span]).SerializePartialToString()
    assert encoder.request(spans) == encode_spans(spans).SerializePartialToString()


def test_paths_and_clients_are_not_remembered() -> None:
    """10k requests with distinct paths and clients: the caches keep one entry per span's layout
    and its stable values (here 2 ports x 2 statuses), none per path or client."""
    encoder = Encoder()
    spans = _request_spans(10_000)
    for span in spans:
        encoder.span(span)
    (layout,) = encoder._layouts.values()
    assert len(layout.spans) == 4
    assert not any(key in {"url.path", "client.address"} for _, key, _, _ in encoder._seen)
