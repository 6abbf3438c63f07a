"""Helpers the span-making observers share."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode


def record_error(span: trace.Span, error: BaseException) -> None:
    """Mark ``span`` failed by ``error``: the exception event, ``error.type`` and status ``ERROR``."""
    span.record_exception(error)
    span.set_attribute("error.type", f"{type(error).__module__}.{type(error).__qualname__}")
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
