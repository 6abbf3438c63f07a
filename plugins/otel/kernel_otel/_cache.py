"""Cache spans: one CLIENT span per backend call, through kernel_cache's observer seam.

Spans are made only *inside* a recording span (a request, an event handler, a job): a call
outside any trace starts no trace of its own. No key or value is recorded (keys carry user ids
and e-mail addresses).
"""

from __future__ import annotations

from kernel_cache import CallEnded
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from ._spans import record_error


class CacheTracing:
    """A :class:`kernel_cache.CacheObserver`: one CLIENT span ``cache.<operation> <namespace>`` per
    backend call, with ``kernel.cache.operation``, ``kernel.cache.namespace``,
    ``kernel.cache.backend``, ``kernel.cache.keys`` and, for reads, ``kernel.cache.hits``."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def operation(self, name: str, namespace: str, backend: str, keys: int) -> CallEnded:
        """Start a CLIENT span for a cache call inside a recording span; returns what ends it."""
        if not trace.get_current_span().is_recording():
            return _nothing
        span = self._tracer.start_span(
            f"cache.{name} {namespace}",
            kind=SpanKind.CLIENT,
            attributes={
                "kernel.cache.operation": name,
                "kernel.cache.namespace": namespace,
                "kernel.cache.backend": backend,
                "kernel.cache.keys": keys,
            },
        )

        # current until it ends (ObservedBackend ends it in the same task): Redis spans nest in it
        token = otel_context.attach(trace.set_span_in_context(span))

        def ended(error: BaseException | None, hits: int | None) -> None:
            otel_context.detach(token)
            if error is not None:
                record_error(span, error)
            elif hits is not None:
                span.set_attribute("kernel.cache.hits", hits)
            span.end()

        return ended


def _nothing(error: BaseException | None, hits: int | None) -> None:
    return None
