"""The outbox's trace context: entries keep the writer's W3C context, the relay publishes in it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager

from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()


class OutboxPropagation:
    """A :class:`kernel_repository.TracePropagation` with W3C trace context (``traceparent``,
    ``tracestate``): the relay's publish span is a child of the span that wrote the entry."""

    def inject(self) -> dict[str, str]:
        """The current span's W3C ``traceparent``/``tracestate`` headers (empty outside a span)."""
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)  # nothing outside a span
        return carrier

    def continuing(self, carrier: Mapping[str, str]) -> AbstractContextManager[None]:
        """A block run in the trace context that ``carrier`` (from :meth:`inject`) holds."""
        return _attached(carrier)


@contextmanager
def _attached(carrier: Mapping[str, str]) -> Iterator[None]:
    token = otel_context.attach(_PROPAGATOR.extract(dict(carrier)))
    try:
        yield
    finally:
        otel_context.detach(token)
