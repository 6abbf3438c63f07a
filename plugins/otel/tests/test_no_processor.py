"""A provider without span processors (exporter ``none``): lean spans end without the SDK's snapshot."""

from __future__ import annotations

from unittest.mock import patch

from kernel_otel._ids import KernelIdGenerator
from kernel_otel._lean import KernelTracer, LeanSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind


def test_spans_end_without_a_snapshot_until_a_processor_is_added() -> None:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "none"}),
        id_generator=KernelIdGenerator(),
        shutdown_on_exit=False,
    )
    tracer = KernelTracer(provider.get_tracer("milo-kernel"))  # type: ignore[arg-type]
    with patch.object(LeanSpan, "_readable_span", side_effect=AssertionError("a snapshot for no processor")):
        root = tracer.start_root_span("GET", SpanKind.SERVER, {"a": 1})
        assert isinstance(root, LeanSpan)
        root.finish("GET /x", {"b": 2})
        tracer.start_span("child").end()
    assert root.end_time is not None and root.name == "GET /x"
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))  # from now on every span reaches it
    later = tracer.start_root_span("GET", SpanKind.SERVER, {})
    assert isinstance(later, LeanSpan)
    later.end()
    tracer.start_span("child").end()
    assert [span.name for span in memory.get_finished_spans()] == ["GET", "child"]
