"""HTTP request metrics kept as plain numbers and exported at scrape time (single-process mode).

The middleware records every request, so this is the hot path: one lock and three
additions per request instead of prometheus-client's five locked value updates and
its per-call checks. Multiprocess mode can't use it (values must live in the shared
files) and falls back to prometheus-client's Counter and Histogram.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LABELS = ("method", "route", "status")
REQUESTS = "http_requests"
DURATION = "http_request_duration_seconds"
REQUESTS_HELP = "HTTP requests served"
DURATION_HELP = "HTTP request duration in seconds"


class Series:
    """Sum and per-bucket (non-cumulative) counts of one label set; the count is their total."""

    __slots__ = ("buckets", "first", "lock", "sum", "upper")

    def __init__(self, upper: tuple[float, ...], lock: threading.Lock) -> None:
        self.upper = upper
        self.first = upper[0] if upper else -math.inf
        """The first bucket's bound: most requests end within it, and one comparison says so."""
        self.lock = lock
        self.sum = 0.0
        self.buckets = [0] * (len(upper) + 1)  # the last one is +Inf

    def observe(self, seconds: float) -> None:
        """Count one request that took ``seconds``."""
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le = "less or equal").
        # Most requests end within the first bucket: one float comparison instead of the bisection.
        index = 0 if seconds <= self.first else bisect_left(self.upper, seconds)
        # acquire/release: a third of the cost of ``with lock`` (this runs on every request)
        lock = self.lock
        lock.acquire()
        try:
            self.sum += seconds
            self.buckets[index] += 1
        finally:
            lock.release()


class HttpSeries(Collector):
    """``http_requests_total`` and ``http_request_duration_seconds`` for one collector."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self._upper = tuple(float(b) for b in buckets)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, str], Series] = {}

    def series(self, labels: tuple[str, str, str]) -> Series:
        """The series of one ``(method, route, status)``, created on first use."""
        with self._lock:
            found = self._series.get(labels)
            if found is None:
                found = self._series[labels] = Series(self._upper, self._lock)
            return found

    def describe(self) -> Iterator[Metric]:
        """The two metric families, without samples (for registration)."""
        yield CounterMetricFamily(REQUESTS, REQUESTS_HELP, labels=LABELS)
        yield HistogramMetricFamily(DURATION, DURATION_HELP, labels=LABELS)

    def collect(self) -> Iterator[Metric]:
        """A snapshot of every series: request counts and duration histograms."""
        with self._lock:
            snapshot = [(k, sum(s.buckets), s.sum, list(s.buckets)) for k, s in self._series.items()]
        requests = CounterMetricFamily(REQUESTS, REQUESTS_HELP, labels=LABELS)
        duration = HistogramMetricFamily(DURATION, DURATION_HELP, labels=LABELS)
        bounds = [*(floatToGoString(b) for b in self._upper), "+Inf"]  # type: ignore[no-untyped-call]
        for labels, count, total, buckets in snapshot:
            requests.add_metric(labels, count)
            cumulative: list[tuple[str, float]] = []
            running = 0
            for bound, n in zip(bounds, buckets, strict=True):
                running += n
                cumulative.append((bound, running))
            duration.add_metric(labels, cumulative, total)
        yield requests
        yield duration
