"""Helpers the span-making observers share."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags, TraceState


def record_error(span: trace.Span, error: BaseException) -> None:
    """Mark ``span`` failed by ``error``: the exception event, ``error.type`` and status ``ERROR``."""
    span.record_exception(error)
    span.set_attribute("error.type", f"{type(error).__module__}.{type(error).__qualname__}")
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def _context_is_tuple() -> bool:
    """Whether a ``SpanContext`` is the tuple ``(trace_id, span_id, is_remote, flags, state, ...)``."""
    flags, state = TraceFlags(TraceFlags.SAMPLED), TraceState([("k", "v")])
    probe = SpanContext(3, 5, True, flags, state)
    return isinstance(probe, tuple) and tuple(probe)[:5] == (
        probe.trace_id,
        probe.span_id,
        probe.is_remote,
        probe.trace_flags,
        probe.trace_state,
    )


CONTEXT_IS_TUPLE = _context_is_tuple()
"""The SDK's ``SpanContext`` is that tuple: its fields can be read by index (no property calls)."""
