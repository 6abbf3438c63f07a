"""One database operation: timed into ``db_query_duration_seconds``, driver errors mapped.

Every repository call runs its driver work inside :class:`DatabaseOperation`; this module is
also the one place that knows how query durations reach the metrics plugin.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Protocol

from ._errors import map_error


class QueryMetrics(Protocol):
    """Where the repository records query durations (the metrics plugin's ``MetricsCollector``)."""

    def record_db_query(self, operation: str, collection: str, seconds: float) -> None:
        """Observe one ``operation`` on ``collection`` that took ``seconds``."""


class DatabaseOperation:
    """Context manager around one database operation: ``with DatabaseOperation("find", "users", metrics):``.

    On exit the block's duration is recorded (when ``metrics`` is given, also on
    failure), and an exception from the driver is re-raised as the ``errors`` plugin's
    type (:func:`map_error`) with the original chained as ``__cause__``; exceptions
    that are not database errors pass unchanged.
    """

    __slots__ = ("_collection", "_metrics", "_name", "_t0")

    def __init__(self, name: str, collection: str, metrics: QueryMetrics | None = None) -> None:
        self._name = name
        self._collection = collection
        self._metrics = metrics
        self._t0 = 0.0

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._metrics is not None:
            self._metrics.record_db_query(self._name, self._collection, time.perf_counter() - self._t0)
        if isinstance(exc, Exception):
            mapped = map_error(exc, self._name, self._collection)
            if mapped is not exc:
                raise mapped from exc
