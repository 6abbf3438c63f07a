"""The plugin's batch processor: the SDK's BatchSpanProcessor, its spans queued more cheaply."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from kernel_otel import Tracing
from kernel_otel._batch import KernelBatchSpanProcessor
from kernel_otel._ids import KernelIdGenerator
from kernel_otel._lean import KernelTracer, LeanSpan
from kernel_otel._otlp import Encoder
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from kernel.testing import boot_kernel

from .test_lean import _everything, _view


class Recording(SpanExporter):
    """Keeps every batch it is handed; ``exported`` is set on each."""

    def __init__(self) -> None:
        self.batches: list[list[ReadableSpan]] = []
        self.exported = threading.Event()
        self.shut = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.batches.append(list(spans))
        self.exported.set()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shut = True

    @property
    def spans(self) -> list[ReadableSpan]:
        return [span for batch in self.batches for span in batch]


def _provider(**options: Any) -> tuple[TracerProvider, KernelBatchSpanProcessor, Recording]:
    exporter = Recording()
    provider = TracerProvider(resource=Resource.create({"service.name": "batch"}), shutdown_on_exit=False)
    processor = KernelBatchSpanProcessor(exporter, schedule_delay_millis=60_000, **options)
    provider.add_span_processor(processor)
    return provider, processor, exporter


def test_lean_spans_are_queued_themselves_and_export_as_the_sdks() -> None:
    provider, processor, exporter = _provider()
    assert processor.fast  # the installed SDK has what the fast path needs
    sdk = provider.get_tracer("milo-kernel")
    _everything(sdk)
    assert processor.force_flush()
    expected = [_view(span) for span in exporter.spans]
    exporter.batches.clear()
    _everything(KernelTracer(sdk))  # type: ignore[arg-type]
    assert processor.force_flush()
    lean = exporter.spans
    assert [type(span) for span in lean] == [LeanSpan, LeanSpan]  # no snapshot per span
    assert [view.pop("type") for view in expected] == [ReadableSpan, ReadableSpan]  # the SDK's snapshots
    assert [{**_view(span), "type": ReadableSpan} for span in lean] == [
        {**view, "type": ReadableSpan} for view in expected
    ]
    assert Encoder().request(lean) == encode_spans(lean).SerializePartialToString()
    provider.shutdown()


def test_an_added_processor_gets_every_span_too() -> None:
    provider, processor, exporter = _provider()
    tracer = KernelTracer(provider.get_tracer("milo-kernel"))  # type: ignore[arg-type]
    tracer.start_span("before").end()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    started = tracer.start_span("during")
    started.end()
    assert processor.force_flush()
    assert [span.name for span in exporter.spans] == ["before", "during"]
    assert [type(span) for span in exporter.spans] == [LeanSpan, ReadableSpan]  # the SDK's way again
    assert [span.name for span in memory.get_finished_spans()] == ["during"]
    provider.shutdown()


def test_unsampled_spans_are_not_queued() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    exporter = Recording()
    provider = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    processor = KernelBatchSpanProcessor(exporter, schedule_delay_millis=60_000)
    provider.add_span_processor(processor)
    KernelTracer(provider.get_tracer("t")).start_span("dropped").end()  # type: ignore[arg-type]
    provider.get_tracer("t").start_span("dropped too").end()
    assert processor.force_flush()
    assert exporter.spans == []
    provider.shutdown()


def test_a_full_queue_drops_the_oldest_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    provider, processor, exporter = _provider(max_queue_size=2, max_export_batch_size=2)
    tracer = KernelTracer(provider.get_tracer("t"))  # type: ignore[arg-type]
    worker = processor._batch_processor._export_lock
    with worker, caplog.at_level(logging.WARNING):  # the worker cannot export meanwhile: the queue fills
        for name in ("a", "b", "c"):
            tracer.start_span(name).end()
    assert "Queue full, dropping Span." in caplog.text
    assert processor.force_flush()
    assert sorted(span.name for span in exporter.spans) == ["b", "c"]
    provider.shutdown()


def test_a_full_batch_wakes_the_worker() -> None:
    provider, _, exporter = _provider(max_export_batch_size=3)
    tracer = KernelTracer(provider.get_tracer("t"))  # type: ignore[arg-type]
    for i in range(3):
        tracer.start_span(f"s{i}").end()
    assert exporter.exported.wait(30)  # long before the 60 s schedule delay
    assert [span.name for span in exporter.batches[0]] == ["s0", "s1", "s2"]
    provider.shutdown()


def test_shutdown_exports_what_is_queued_then_refuses_spans() -> None:
    provider, processor, exporter = _provider()
    tracer = KernelTracer(provider.get_tracer("t"))  # type: ignore[arg-type]
    span = tracer.start_span("open at shutdown")
    tracer.start_span("queued").end()
    provider.shutdown()
    assert [s.name for s in exporter.spans] == ["queued"] and exporter.shut
    span.end()
    assert not processor.force_flush()
    assert [s.name for s in exporter.spans] == ["queued"]


@pytest.mark.anyio
async def test_the_otlp_pipeline_uses_it_and_other_exporters_the_sdks() -> None:
    config = {"otel": {"exporter": "otlp", "endpoint": "http://127.0.0.1:9"}}
    async with boot_kernel("otel", config=config) as kernel:
        processors = kernel.registry.get(Tracing).provider._active_span_processor._span_processors
        assert [type(p) for p in processors] == [KernelBatchSpanProcessor]
    async with boot_kernel("otel", config={"otel": {"exporter": "console"}}) as kernel:
        processors = kernel.registry.get(Tracing).provider._active_span_processor._span_processors
        assert KernelBatchSpanProcessor not in [type(p) for p in processors]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_queues_and_exports_its_own_spans() -> None:
    provider, processor, exporter = _provider()
    tracer = KernelTracer(provider.get_tracer("t"))  # type: ignore[arg-type]
    tracer.start_span("parent's").end()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the SDK re-armed the processor (empty queue, a new worker thread)
        try:
            tracer.start_span("child's").end()
            processor.force_flush()
            os.write(write, ",".join(span.name for span in exporter.spans).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        got = pipe.read().decode()
    os.waitpid(pid, 0)
    assert got == "child's"
    assert processor.force_flush()
    assert [span.name for span in exporter.spans] == ["parent's"]
    provider.shutdown()


def test_a_root_span_is_queued_itself_and_encodes_as_the_exporters() -> None:
    exporter = Recording()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "batch"}),
        id_generator=KernelIdGenerator(),
        shutdown_on_exit=False,
    )
    processor = KernelBatchSpanProcessor(exporter, schedule_delay_millis=60_000)
    provider.add_span_processor(processor)
    tracer = KernelTracer(provider.get_tracer("milo-kernel"))  # type: ignore[arg-type]
    span = tracer.start_root_span("GET", SpanKind.SERVER, {"http.request.method": "GET", "server.port": 80})
    assert span is not None
    span.end()
    assert processor.force_flush()
    assert exporter.spans == [span]
    assert Encoder().request([span]) == encode_spans([span]).SerializePartialToString()
    provider.shutdown()
