"""The repository's instrumentation seam: what an observer (tracing) is told around each database operation.

No observer by default: an operation then costs two attribute tests more than before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Protocol


class QueryObserver(Protocol):
    """Told about every repository operation (see :meth:`RepositoryManager.set_observer`)."""

    def operation(self, name: str, collection: str, database: str) -> Callable[[BaseException | None], None]:
        """Operation ``name`` (``find_one``, ``create`` ...) on ``collection`` of ``database`` starts;
        the callback is called once it ended, with the driver's exception if it failed."""


class TracePropagation(Protocol):
    """Carries the trace context across the outbox (see :meth:`OutboxStore.set_propagation`).

    An entry keeps the W3C ``traceparent`` (and ``tracestate``) current when it was written, and
    the relay publishes it in that context: the publish continues the writer's trace.
    """

    def inject(self) -> dict[str, str]:
        """The current context as W3C headers (``traceparent``, ``tracestate`` when set); ``{}``
        outside any span."""
        ...

    def continuing(self, carrier: Mapping[str, str]) -> AbstractContextManager[None]:
        """Entered around work that continues the context ``carrier`` names (as :meth:`inject` wrote it)."""
        ...
