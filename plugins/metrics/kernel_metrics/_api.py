"""What other plugins use of the metrics plugin: the :class:`Metrics` registration API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, TypeVar, runtime_checkable

from prometheus_client import Counter, Gauge, Histogram, Summary
from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)
M_co = TypeVar("M_co", bound=MetricWrapperBase, covariant=True)

GaugeMode = Literal[
    "all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent", "livemostrecent"
]
"""How the values of a gauge combine across processes in multiprocess mode."""


class LabelBudget(Protocol[M_co]):
    """Children of one labelled metric, at most ``max_series`` label sets (see :meth:`Metrics.bounded`)."""

    def labels(self, *values: str) -> M_co:
        """The child for ``values``; beyond the budget, the one with every label ``<other>``."""
        ...


@runtime_checkable
class Metrics(Protocol):
    """The metrics collector as other plugins see it (registered under this type).

    Each plugin declares its own metrics (get-or-create: the same name returns the same object;
    another type, label names or buckets raise ``MetricConflictError``)::

        metrics = ctx.registry.find(Metrics)      # None when the metrics plugin is not enabled
        if metrics is not None:
            jobs = metrics.counter("jobs_total", "Jobs run", ["queue"])
            jobs.labels("emails").inc()
    """

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
        """Get or create a counter (``name`` with or without its ``_total`` suffix)."""
        ...

    def gauge(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        multiprocess_mode: GaugeMode = "livesum",
    ) -> Gauge:
        """Get or create a gauge; ``multiprocess_mode`` says how processes' values combine."""
        ...

    def histogram(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float] | None = None,
    ) -> Histogram:
        """Get or create a histogram (default buckets are the HTTP ones, in seconds).

        Bounds the operator configured for ``name`` win over ``buckets``.
        """
        ...

    def summary(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Summary:
        """Get or create a summary (count and sum only)."""
        ...

    def bounded(self, metric: M) -> LabelBudget[M]:
        """``metric``'s children through the collector's series budget (``max_series`` label sets).

        For labels fed from outside (event names, collections): once the budget is spent, new label
        sets are recorded with every label ``<other>`` and a warning is logged once. Children are
        cached, so ``bounded(m).labels(...)`` costs one dict lookup.
        """
        ...
