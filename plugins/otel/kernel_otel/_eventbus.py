"""Event bus spans: PRODUCER per publish, CONSUMER per handler attempt (kernel_eventbus's observer seam)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kernel_eventbus import EventBus, EventMetadata, Subscription
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, StaticSampler
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from ._ids import adopt
from ._lean import CONTEXT_IS_TUPLE, KernelTracer, LeanSpan
from ._runtime import attach as _attach
from ._runtime import current as _current
from ._runtime import reset as _reset
from ._sdk import trace_id_int
from ._spans import remote_span_context

_PROPAGATOR = TraceContextTextMapPropagator()
SYSTEM = "milo-kernel-eventbus"
"""``messaging.system`` of the bus's spans (not a registered value: the bus is its own system)."""
_PRODUCER = SpanKind.PRODUCER
_NO_STATE = DEFAULT_TRACE_STATE
_CONSUMER = SpanKind.CONSUMER
_EMPTY = otel_context.Context()
_adopt = adopt.set
_unadopt = adopt.reset
_TRACEPARENT = "00-%032x-%016x-%s"
"""A ``traceparent`` of trace id, span id and the flags' text (:data:`_FLAGS`)."""
_FLAGS = tuple(f"{flags:02x}" for flags in range(256))
"""Trace flags (a byte) as a ``traceparent`` writes them."""


_READ_FIELDS = (
    CONTEXT_IS_TUPLE
    and tuple(trace.SpanContext(3, 5, False))[5:] == (True,)
    and tuple(trace.INVALID_SPAN_CONTEXT)[5:] == (False,)
)
"""A span context is the tuple ``(trace_id, span_id, is_remote, flags, state, is_valid)``."""


def _static(sampler: Sampler) -> bool:
    """Whether ``sampler`` decides without reading a span's attributes and keeps them as given (the
    SDK's ``ALWAYS_ON``/``ALWAYS_OFF``, and ``ParentBased`` of those): the attributes may then be set
    after the span started, with the same span as a result."""
    if type(sampler) is ParentBased:
        delegates = (
            sampler._root,
            sampler._remote_parent_sampled,
            sampler._remote_parent_not_sampled,
            sampler._local_parent_sampled,
            sampler._local_parent_not_sampled,
        )
        return all(type(s) is StaticSampler for s in delegates)
    return type(sampler) is StaticSampler


def trace_context_of(span: trace.Span) -> dict[str, str]:
    """The W3C ``traceparent`` naming ``span`` and its ``tracestate`` (when not empty), as the W3C
    propagator writes them (empty for an invalid span context)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
    return carrier


_Context = otel_context.Context
_NonRecordingSpan = trace.NonRecordingSpan


def producer_context(meta: EventMetadata) -> trace.SpanContext:
    """The span context the W3C propagator reads from ``meta``'s ``traceparent`` and ``tracestate``
    (the invalid one when it reads none).

    A version-00 ``traceparent`` alone (the bus's own publishers write it so) is read here, in one
    regular-expression match; anything else -- a ``tracestate``, another version, spaces, all-zero
    ids -- by the propagator itself (:func:`extract`).
    """
    text = meta.traceparent
    if text is not None and meta.tracestate is None:
        context = remote_span_context(text)
        if context is not None:
            return context
    return trace.get_current_span(extract(meta)).get_span_context()


def extract(meta: EventMetadata) -> otel_context.Context:
    """The context the W3C propagator reads from ``meta``'s ``traceparent`` and ``tracestate``."""
    carrier = {"traceparent": meta.traceparent or ""}
    if meta.tracestate is not None:
        carrier["tracestate"] = meta.tracestate
    return _PROPAGATOR.extract(carrier)


class _Attempt:
    """One handler attempt's CONSUMER span, current while the attempt runs (the context manager
    :meth:`BusTracing.handling` returns); what the bus reports about it: a failure marks the span."""

    __slots__ = ("_token", "span")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self._token: Any = None

    def __enter__(self) -> _Attempt:
        # trace.set_span_in_context(self.span): the current context with the span, one new context
        self._token = _attach(_Context({**_current(), _SPAN_KEY: self.span}))
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:  # otel_context.detach(token), without its call
            _reset(self._token)
        except Exception:
            otel_context.detach(self._token)  # fails again, and logs it as the API does
        self.span.end()

    def failed(self, error: BaseException, retry: bool) -> None:
        self.span.record_exception(error)
        self.span.set_attribute("error.type", f"{type(error).__module__}.{type(error).__qualname__}")
        self.span.set_attribute("kernel.eventbus.retry", retry)
        self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


class BusTracing:
    """An :class:`kernel_eventbus.EventBusObserver` making spans in ``tracer``.

    With the plugin's :class:`KernelTracer`, a publish outside any span starts its root span in one
    step (:meth:`KernelTracer.start_root_span`, attributes trusted), a publish in a span sets its
    trusted attributes after the start when the sampler cannot read them, and the ``traceparent`` is
    formatted from the lean span's context: the spans and the ``traceparent`` the W3C propagator
    would write, for less (tests/test_eventbus_lean.py compares them with the SDK tracer's).
    """

    def __init__(self, tracer: trace.Tracer, adapter: str) -> None:
        self._tracer = tracer
        self._adapter = adapter
        lean = tracer if type(tracer) is KernelTracer else None
        self._root = lean.start_root_span if lean is not None and lean.samples_roots else None
        self._trusted = lean is not None and _static(lean.sdk.sampler)
        self._child = lean.start_remote_child if lean is not None and lean.starts_remote_children else None

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
        name = f"publish {meta.event_name}"
        attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.destination.name": meta.event_name,
            "messaging.message.id": meta.event_id,
            "kernel.eventbus.adapter": self._adapter,
        }
        span: trace.Span | None = None
        root = self._root
        if root is not None and not _current():  # an empty context (no span): a root span in one step
            text = meta.trace_id  # its trace id adopted: trace_id_int(text), without the call
            try:
                adopted = int(text, 16) if text is not None and len(text) == 32 else 0
            except ValueError:
                adopted = 0
            span = root(name, _PRODUCER, attributes, adopted)
        if span is None:
            span = self._start(name, attributes, meta)
        # the propagator's text, from the context's fields (a lean span's own; a valid context is not
        # the invalid one the propagator skips)
        context: Any = span._context if type(span) is LeanSpan else span.get_span_context()
        if _READ_FIELDS and context[5]:  # (trace_id, span_id, is_remote, flags, state, is_valid)
            state = context[4]
            # printf-style with the flags' text from a table: the f-string's three format specs cost
            # about 1.7 times as much
            flags = context[3]
            flags_text = _FLAGS[flags] if 0 <= flags <= 0xFF else f"{flags:02x}"
            traceparent = _TRACEPARENT % (context[0], context[1], flags_text)
            # the empty DEFAULT_TRACE_STATE by identity: a TraceState's len() is a Python-level call
            header = None if state is _NO_STATE or not state else state.to_header()
            meta = meta.with_trace_context(traceparent, header)
        else:
            carrier = trace_context_of(span)
            if "traceparent" in carrier:
                meta = meta.with_trace_context(carrier["traceparent"], carrier.get("tracestate"))

        def stored(error: BaseException | None) -> None:
            if error is not None:
                span.record_exception(error)
                span.set_attribute("error.type", type(error).__qualname__)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            span.end()

        return meta, stored

    def _start(self, name: str, attributes: dict[str, Any], meta: EventMetadata) -> trace.Span:
        """The PRODUCER span the general way: a child of the current span, else a root span of the
        event's kernel trace id."""
        current = trace.get_current_span().get_span_context()
        token = _adopt(0 if current.is_valid else trace_id_int(meta.trace_id))
        try:
            if not self._trusted:  # the sampler may read the attributes: given at the start
                return self._tracer.start_span(name, kind=_PRODUCER, attributes=attributes)
            span = self._tracer.start_span(name, kind=_PRODUCER)
        finally:
            _unadopt(token)
        if type(span) is LeanSpan:  # else unsampled: non-recording
            span.set_trusted(attributes)
        return span

    def handling(self, subscription: Subscription, meta: EventMetadata) -> _Attempt:
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
            producer = producer_context(meta)
            child = self._child
            if child is not None and producer.is_valid:  # the span in one step, when the tracer can
                linked = child(f"process {meta.event_name}", _CONSUMER, producer, attributes, True)
                if linked is not None:
                    return _Attempt(linked)
            if producer.is_valid:  # the propagator's context: the producer as a non-recording span
                parent = _Context({_SPAN_KEY: _NonRecordingSpan(producer)})
                links.append(Link(producer))
        name = f"process {meta.event_name}"
        context = parent if parent is not None else _EMPTY
        token = _adopt(trace_id_int(meta.trace_id) if parent is None else 0)
        try:
            if not self._trusted:  # the sampler may read the attributes: given at the start
                span = self._tracer.start_span(
                    name, context, kind=_CONSUMER, attributes=attributes, links=links
                )
            else:
                span = self._tracer.start_span(name, context, kind=_CONSUMER, links=links)
                if type(span) is LeanSpan:  # else unsampled: non-recording
                    span.set_trusted(attributes)
        finally:
            _unadopt(token)
        return _Attempt(span)


def instrument_bus(bus: EventBus, tracer: trace.Tracer) -> Callable[[], None]:
    """Make ``bus`` report to a :class:`BusTracing`; returns the function that undoes it."""
    bus.set_observer(BusTracing(tracer, bus.adapter))

    def undo() -> None:
        bus.set_observer(None)

    return undo
