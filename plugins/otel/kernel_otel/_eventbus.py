"""Event bus spans: PRODUCER per publish, CONSUMER per handler attempt (kernel_eventbus's observer seam)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
from kernel_eventbus import EventBus, EventMetadata, HandlerAttempt, Subscription
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._sdk import adopting

_PROPAGATOR = TraceContextTextMapPropagator()
SYSTEM = "milo-kernel-eventbus"
"""``messaging.system`` of the bus's spans (not a registered value: the bus is its own system)."""


def trace_context_of(span: trace.Span) -> dict[str, str]:
    """The W3C ``traceparent`` naming ``span`` and its ``tracestate`` (when not empty), as the W3C
    propagator writes them (empty for an invalid span context)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
    return carrier


def extract(meta: EventMetadata) -> otel_context.Context:
    """The context the W3C propagator reads from ``meta``'s ``traceparent`` and ``tracestate``."""
    carrier = {"traceparent": meta.traceparent or ""}
    if meta.tracestate is not None:
        carrier["tracestate"] = meta.tracestate
    return _PROPAGATOR.extract(carrier)


class _Attempt:
    """What the bus reports about one handler attempt: a failure marks the CONSUMER span."""

    __slots__ = ("span",)

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def failed(self, error: BaseException, retry: bool) -> None:
        self.span.record_exception(error)
        self.span.set_attribute("error.type", f"{type(error).__module__}.{type(error).__qualname__}")
        self.span.set_attribute("kernel.eventbus.retry", retry)
        self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


class BusTracing:
    """An :class:`kernel_eventbus.EventBusObserver` making spans in ``tracer``."""

    def __init__(self, tracer: trace.Tracer, adapter: str) -> None:
        self._tracer = tracer
        self._adapter = adapter

    def _attributes(self, meta: EventMetadata, operation: str) -> dict[str, Any]:
        return {
            "messaging.system": SYSTEM,
            "messaging.operation.type": operation,
            "messaging.operation.name": "publish" if operation == "send" else "process",
            "messaging.destination.name": meta.event_name,
            "messaging.message.id": meta.event_id,
            "kernel.eventbus.adapter": self._adapter,
        }

    def publishing(self, meta: EventMetadata) -> tuple[EventMetadata, Callable[[BaseException | None], None]]:
        """A PRODUCER span ``publish <event>``; the stored metadata carries its ``traceparent`` (and
        ``tracestate``, the trace state it inherited from its parent, when there is one).

        Outside any span, the span's trace id is the event's kernel trace id (so the id in the
        event, its dead letters and its logs is the trace's).
        """
        current = trace.get_current_span().get_span_context()
        with adopting(None if current.is_valid else meta.trace_id):
            span = self._tracer.start_span(
                f"publish {meta.event_name}",
                kind=SpanKind.PRODUCER,
                attributes=self._attributes(meta, "send"),
            )
        carrier = trace_context_of(span)
        if "traceparent" in carrier:
            meta = attrs.evolve(
                meta, traceparent=carrier["traceparent"], tracestate=carrier.get("tracestate")
            )

        def stored(error: BaseException | None) -> None:
            if error is not None:
                span.record_exception(error)
                span.set_attribute("error.type", type(error).__qualname__)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            span.end()

        return meta, stored

    @contextmanager
    def handling(self, subscription: Subscription, meta: EventMetadata) -> Iterator[HandlerAttempt]:
        """A CONSUMER span ``process <event>`` per attempt: a child of the publishing span and linked to it
        (its context, extracted from ``traceparent`` and ``tracestate``, has the producer's trace state).

        Without a ``traceparent`` (an event published without tracing) the span starts a trace of
        the event's kernel trace id.
        """
        attributes = self._attributes(meta, "process")
        attributes["messaging.consumer.group.name"] = subscription.name
        attributes["kernel.eventbus.attempt"] = meta.attempt
        if meta.replayed_at is not None:
            attributes["kernel.eventbus.replayed_at"] = meta.replayed_at
        parent = None
        links: list[Link] = []
        if meta.traceparent is not None:
            parent = extract(meta)
            producer = trace.get_current_span(parent).get_span_context()
            if producer.is_valid:
                links.append(Link(producer))
            else:
                parent = None
        with adopting(meta.trace_id if parent is None else None):
            span = self._tracer.start_span(
                f"process {meta.event_name}",
                parent if parent is not None else otel_context.Context(),
                kind=SpanKind.CONSUMER,
                attributes=attributes,
                links=links,
            )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield _Attempt(span)
        finally:
            otel_context.detach(token)
            span.end()


def instrument_bus(bus: EventBus, tracer: trace.Tracer) -> Callable[[], None]:
    """Make ``bus`` report to a :class:`BusTracing`; returns the function that undoes it."""
    bus.set_observer(BusTracing(tracer, bus.adapter))

    def undo() -> None:
        bus.set_observer(None)

    return undo
