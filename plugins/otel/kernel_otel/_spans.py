"""Helpers the span-making observers share."""

from __future__ import annotations

import re

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


_TRACEPARENT_00 = re.compile("00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
"""A ``traceparent`` of version 00 and nothing else (what this plugin's publishers write)."""
_FLAG_VALUES = tuple(TraceFlags(flags) for flags in range(256))
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16
_new_context = tuple.__new__
_DEFAULT_STATE = trace.DEFAULT_TRACE_STATE


def remote_span_context(traceparent: str) -> SpanContext | None:
    """The remote span context the W3C propagator reads from ``traceparent`` alone (no
    ``tracestate``) when it is a version-00 header and nothing else, with non-zero ids; else None
    (the caller asks the propagator, which reads every other form as the spec says)."""
    match = _TRACEPARENT_00.fullmatch(traceparent)
    if match is None or not CONTEXT_IS_TUPLE:
        return None
    trace_hex, span_hex, flags = match.groups()
    if trace_hex == _ZERO_TRACE_ID or span_hex == _ZERO_SPAN_ID:
        return None
    # SpanContext(trace_id, span_id, is_remote=True, trace_flags, no trace state): a valid context
    fields = (int(trace_hex, 16), int(span_hex, 16), True, _FLAG_VALUES[int(flags, 16)])
    return _new_context(SpanContext, (*fields, _DEFAULT_STATE, True))
