"""Queue spans: a PRODUCER span per job built (``create``), a CONSUMER span per processor attempt."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kernel_queue import JobAttempt, JobContext, QueueManager
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kernel.logging import get_trace_id, reset_trace_id, set_trace_id

from ._sdk import adopting

_PROPAGATOR = TraceContextTextMapPropagator()
SYSTEM = "milo-kernel-queue"
"""``messaging.system`` of the queue's spans."""


class _Attempt:
    __slots__ = ("span",)

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def failed(self, error: BaseException) -> None:
        self.span.record_exception(error)
        self.span.set_attribute("error.type", f"{type(error).__module__}.{type(error).__qualname__}")
        self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


class QueueTracing:
    """A :class:`kernel_queue.QueueObserver` making spans in ``tracer``.

    The job record's meta gets ``traceparent`` (of the enqueue span), ``tracestate`` (its trace
    state, when not empty) and ``trace_id``; each attempt's span is a child of the enqueue span
    (with its trace state) and linked to it, and runs with the kernel trace id set to its trace id
    (log lines of the processor carry it).
    """

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def enqueuing(self, queue: str, name: str, meta: dict[str, Any]) -> None:
        """A short PRODUCER ``create <queue>`` span; outside any span its trace is the kernel trace id."""
        current = trace.get_current_span().get_span_context()
        with adopting(None if current.is_valid else get_trace_id()):
            span = self._tracer.start_span(
                f"create {queue}",
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": SYSTEM,
                    "messaging.operation.type": "create",
                    "messaging.operation.name": "add_job",
                    "messaging.destination.name": queue,
                    "kernel.queue.job.name": name,
                },
            )
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
        if "traceparent" in carrier:
            meta["traceparent"] = carrier["traceparent"]
            if "tracestate" in carrier:
                meta["tracestate"] = carrier["tracestate"]
            meta["trace_id"] = format(span.get_span_context().trace_id, "032x")
        span.end()

    @contextmanager
    def running(self, queue: str, job: JobContext, meta: Mapping[str, Any]) -> Iterator[JobAttempt]:
        """A CONSUMER ``process <queue>`` span per attempt, child of and linked to the enqueue span."""
        parent: otel_context.Context = otel_context.Context()
        links: list[Link] = []
        traceparent = meta.get("traceparent")
        if isinstance(traceparent, str):
            carrier = {"traceparent": traceparent}
            tracestate = meta.get("tracestate")
            if isinstance(tracestate, str):
                carrier["tracestate"] = tracestate
            extracted = _PROPAGATOR.extract(carrier)
            producer = trace.get_current_span(extracted).get_span_context()
            if producer.is_valid:
                parent, links = extracted, [Link(producer)]
        span = self._tracer.start_span(
            f"process {queue}",
            parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "messaging.destination.name": queue,
                "messaging.message.id": job.id,
                "kernel.queue.job.name": job.name,
                "kernel.queue.attempt": job.attempts,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        trace_token = set_trace_id(format(span.get_span_context().trace_id, "032x"))
        try:
            yield _Attempt(span)
        finally:
            reset_trace_id(trace_token)
            otel_context.detach(token)
            span.end()


def instrument_queue(manager: QueueManager, tracer: trace.Tracer) -> Callable[[], None]:
    """Make ``manager`` (and its workers) report to a :class:`QueueTracing`; returns the undo."""
    manager.set_observer(QueueTracing(tracer))

    def undo() -> None:
        manager.set_observer(None)

    return undo
