"""One database operation: timed into ``db_query_duration_seconds``, driver errors mapped.

Every repository call runs its driver work inside :class:`DatabaseOperation`; this module is
also the one place that knows how query durations reach the metrics plugin.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from kernel import Registry

from ._config import DEFAULT_DB_BUCKETS
from ._errors import map_error
from ._observe import QueryObserver

if TYPE_CHECKING:  # the metrics plugin is optional: not a dependency of this package
    from kernel_metrics import LabelBudget, Metrics
    from prometheus_client import Histogram

DB_QUERY_DURATION = "db_query_duration_seconds"
"""The histogram of query durations, labelled ``operation`` and ``collection``; bucket bounds:
``[plugins.repository] db_buckets``."""


class QueryMetrics(Protocol):
    """Where the repository records query durations (the metrics plugin's ``MetricsCollector``)."""

    def record_db_query(self, operation: str, collection: str, seconds: float) -> None:
        """Observe one ``operation`` on ``collection`` that took ``seconds``."""


class CollectorMetrics:
    """:class:`QueryMetrics` on the metrics plugin's collector: declares :data:`DB_QUERY_DURATION`
    with bucket bounds ``buckets`` (seconds).

    Label sets go through the collector's series budget (``max_series``).
    """

    __slots__ = ("_series",)

    def __init__(self, metrics: Metrics, buckets: Sequence[float] = DEFAULT_DB_BUCKETS) -> None:
        histogram = metrics.histogram(
            DB_QUERY_DURATION,
            "Database query duration in seconds",
            ["operation", "collection"],
            buckets=buckets,
        )
        self._series: LabelBudget[Histogram] = metrics.bounded(histogram)

    def record_db_query(self, operation: str, collection: str, seconds: float) -> None:
        """Observe one query's duration."""
        self._series.labels(operation, collection).observe(seconds)


def find_query_metrics(
    registry: Registry, buckets: Sequence[float] = DEFAULT_DB_BUCKETS
) -> QueryMetrics | None:
    """Query metrics (bounds ``buckets``) on the metrics plugin's collector if it is enabled, else None."""
    try:
        from kernel_metrics import Metrics
    except ImportError:  # not installed: nothing can have registered a collector
        return None
    metrics = registry.find(Metrics)
    return None if metrics is None else CollectorMetrics(metrics, buckets)


class DatabaseOperation:
    """Context manager around one database operation: ``with DatabaseOperation("find", "users", metrics):``.

    On exit the block's duration is recorded (when ``metrics`` is given, also on
    failure), and an exception from the driver is re-raised as the ``errors`` plugin's
    type (:func:`map_error`) with the original chained as ``__cause__``; exceptions
    that are not database errors pass unchanged.
    """

    __slots__ = ("_collection", "_database", "_done", "_metrics", "_name", "_observer", "_t0")

    def __init__(
        self,
        name: str,
        collection: str,
        metrics: QueryMetrics | None = None,
        observer: QueryObserver | None = None,
        database: str = "",
    ) -> None:
        self._name = name
        self._collection = collection
        self._metrics = metrics
        self._observer = observer
        """Told when the operation starts and ends (tracing); ``database`` is only for it."""
        self._database = database
        self._done: Callable[[BaseException | None], None] | None = None
        self._t0 = 0.0

    def __enter__(self) -> None:
        if self._observer is not None:
            self._done = self._observer.operation(self._name, self._collection, self._database)
        self._t0 = time.perf_counter()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._done is not None:
            self._done(exc)
        if self._metrics is not None:
            self._metrics.record_db_query(self._name, self._collection, time.perf_counter() - self._t0)
        if isinstance(exc, Exception):
            mapped = map_error(exc, self._name, self._collection)
            if mapped is not exc:
                raise mapped from exc
