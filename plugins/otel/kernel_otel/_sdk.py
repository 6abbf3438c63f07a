"""The SDK side: a TracerProvider built from the effective settings, and the :class:`Tracing` service."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from ._batch import KernelBatchSpanProcessor
from ._config import Settings
from ._ids import KernelIdGenerator
from ._ids import adopt as _adopt
from ._lean import KernelTracer

SCOPE = "milo-kernel"
"""Instrumentation scope name of every span the plugin makes."""


def trace_id_int(text: str | None) -> int:
    """A 32-hex kernel trace id as an OTel trace id (0 when it is not one)."""
    if text is None or len(text) != 32:
        return 0
    try:
        return int(text, 16)
    except ValueError:
        return 0


@contextmanager
def adopting(trace_id: str | None) -> Iterator[None]:
    """Root spans started in the block take ``trace_id`` (a 32-hex kernel trace id) when it is valid."""
    token = _adopt.set(trace_id_int(trace_id))
    try:
        yield
    finally:
        _adopt.reset(token)


def _sampler(settings: Settings) -> Sampler:
    ratio = TraceIdRatioBased(settings.ratio)
    return {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": ratio,
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(ratio),
    }[settings.sampler]


def _exporter(settings: Settings) -> SpanExporter | None:
    if settings.exporter == "otlp":
        from ._otlp import KernelSpanExporter  # the OTLP/HTTP exporter, with a faster encoding

        return KernelSpanExporter(
            endpoint=settings.endpoint, headers=settings.headers, timeout=settings.timeout
        )
    if settings.exporter == "console":
        return ConsoleSpanExporter()
    if settings.exporter == "memory":
        return InMemorySpanExporter()
    return None


class Tracing:
    """The plugin's service: its TracerProvider, the tracer its instrumentation uses, and the exporter.

    Resolve it as ``kernel.registry.get(Tracing)`` to start spans of your own in the same provider.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.provider = TracerProvider(
            sampler=_sampler(settings),
            resource=Resource.create({"service.name": settings.service_name}),
            id_generator=KernelIdGenerator(),
            shutdown_on_exit=False,
        )
        self.exporter = _exporter(settings)
        """The span exporter (an ``InMemorySpanExporter`` with ``exporter = "memory"``), or None."""
        if isinstance(self.exporter, InMemorySpanExporter):
            # tests read spans as soon as they end
            self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        elif self.exporter is not None and settings.exporter == "otlp":  # ours: the OTLP pipeline
            self.provider.add_span_processor(KernelBatchSpanProcessor(self.exporter))
        elif self.exporter is not None:
            self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer(SCOPE)
        self.kernel_tracer = KernelTracer(self.tracer)  # type: ignore[arg-type]  # it is the SDK's
        """The tracer of the plugin's own instrumentation: the same spans, cheaper (:mod:`._lean`)."""

    @property
    def memory(self) -> InMemorySpanExporter:
        """The in-memory exporter (``exporter = "memory"``); raises otherwise."""
        if not isinstance(self.exporter, InMemorySpanExporter):
            raise RuntimeError(f"the otel exporter is {self.settings.exporter!r}, not 'memory'")
        return self.exporter

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every ended span now; False when it did not finish in time."""
        return self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush and stop the span processors."""
        self.provider.shutdown()


def _with_span_id(
    factory: Callable[..., logging.LogRecord],
) -> Callable[..., logging.LogRecord]:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.span_id = format(context.span_id, "016x")
        return record

    make.kernel_otel = True  # type: ignore[attr-defined]
    return make


@contextmanager
def span_ids_in_log_records() -> Iterator[None]:
    """Log records made in the block carry ``span_id`` (16 hex) of the current span, if any.

    The kernel's handler adds ``trace_id`` already (the kernel trace id, which the HTTP
    instrumentation sets to the span's trace id); formatters print ``span_id`` as an extra.
    """
    previous = logging.getLogRecordFactory()
    ours = _with_span_id(previous)
    logging.setLogRecordFactory(ours)
    try:
        yield
    finally:
        if logging.getLogRecordFactory() is ours:  # someone may have wrapped ours meanwhile: keep theirs
            logging.setLogRecordFactory(previous)
