"""The ``MetricsCollector`` service: one private Prometheus registry per kernel."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, Literal, TypeVar, cast

import attrs
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    Summary,
    multiprocess,
    values,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import MetricWrapperBase

from . import _http_series as http_series
from ._api import GaugeMode, LabelBudget, Metrics
from ._config import DEFAULT_HTTP_BUCKETS
from ._http_series import HttpSeries

log = logging.getLogger("kernel.plugins.metrics")

M = TypeVar("M", bound=MetricWrapperBase)
Kind = Literal["counter", "gauge", "histogram", "summary", "builtin"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OVERFLOW = "<other>"
"""Label value that absorbs label sets beyond a metric's series budget."""

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


class MetricConflictError(ValueError):
    """A metric name is declared again with a different type, label names or buckets."""

    def __init__(self, name: str, existing: str, requested: str) -> None:
        self.name = name
        self.existing = existing
        self.requested = requested
        super().__init__(
            f"metric {name!r} is already declared as {existing}; cannot declare it as {requested}"
        )


class MultiprocessSetupError(RuntimeError):
    """``PROMETHEUS_MULTIPROC_DIR`` is set but unusable (missing, or set after prometheus_client loaded)."""


@attrs.frozen
class _Declared:
    kind: Kind
    labelnames: tuple[str, ...]
    extra: tuple[Any, ...]
    metric: MetricWrapperBase | None

    def describe(self) -> str:
        if self.kind == "builtin":
            return "a built-in metric of the collector (record it with observe_http)"
        extra = f", buckets {list(self.extra)}" if self.kind == "histogram" and self.extra else ""
        return f"a {self.kind} with labels {list(self.labelnames)}{extra}"


class _PromHttpSeries:
    """One HTTP label set on prometheus-client's Counter and Histogram (multiprocess mode)."""

    __slots__ = ("_count", "_duration")

    def __init__(self, metrics: tuple[Counter, Histogram], key: tuple[str, str, str]) -> None:
        self._count = metrics[0].labels(*key)
        self._duration = metrics[1].labels(*key)

    def observe(self, seconds: float) -> None:
        self._count.inc()
        self._duration.observe(seconds)


def multiprocess_dir_from_env() -> str | None:
    """The multiprocess directory from the environment, checked for use; ``None`` in single-process mode."""
    path = os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())
    if not path:
        return None
    if not os.path.isdir(path):
        raise MultiprocessSetupError(f"{MULTIPROC_ENV}={path!r} is not an existing directory")
    if values.ValueClass is values.MutexValue:
        # prometheus_client picks its value storage once, at import: metrics would stay per-process.
        raise MultiprocessSetupError(
            f"{MULTIPROC_ENV} was set after prometheus_client was imported; "
            "set it in the environment before the process starts"
        )
    return path


class _Budget(Generic[M]):
    """One metric's children, at most ``limit`` label sets (the rest share the ``<other>`` child)."""

    __slots__ = ("_children", "_collector", "_metric", "_name")

    def __init__(self, collector: MetricsCollector, metric: M, name: str) -> None:
        self._collector = collector
        self._metric = metric
        self._name = name
        self._children: dict[tuple[str, ...], M] = {}

    def labels(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            if len(self._children) >= self._collector.max_series:
                self._collector._warn_overflow(self._name)
                return self._metric.labels(*(OVERFLOW for _ in values))
            child = self._children[values] = self._metric.labels(*values)
        return child


class MetricsCollector(Metrics):
    """Prometheus metrics of one kernel, on its own ``CollectorRegistry``.

    It implements :class:`~kernel_metrics.Metrics`, the API other plugins hold it as (and inherits
    the docstrings of the methods that do only what that API says).

    The standard service metrics are created up front; plugins and hosts declare their own
    with :meth:`counter`, :meth:`gauge`, :meth:`histogram` and :meth:`summary`
    (get-or-create: the same name returns the same object).

    >>> m = MetricsCollector(process_metrics=False)
    >>> m.counter("signups_total", "Accounts created", ["plan"]).labels("free").inc()
    >>> m.bounded(m.counter("logins_total", "Logins", ["client"])).labels("ios").inc()

    ``exclude_routes`` are route templates that every :class:`MetricsMiddleware` recording
    into this collector leaves out (the plugin puts its scrape path here unless
    ``record_scrapes``, plus its ``exclude_routes``), so host apps' middleware follows the config.
    """

    def __init__(
        self,
        *,
        process_metrics: bool = True,
        http_buckets: Sequence[float] = DEFAULT_HTTP_BUCKETS,
        max_series: int = 10_000,
        multiprocess_dir: str | Literal["auto"] | None = "auto",
        exclude_routes: Iterable[str] = (),
        buckets: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        self.exclude_routes: frozenset[str] = frozenset(exclude_routes)
        self._bucket_overrides = {
            name: tuple(float(b) for b in bounds) for name, bounds in (buckets or {}).items()
        }
        self._mp_dir = multiprocess_dir_from_env() if multiprocess_dir == "auto" else multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._declared: dict[str, _Declared] = {}
        self._budgets: dict[str, _Budget[Any]] = {}
        self.max_series = max_series
        """Label sets per metric recorded through :meth:`bounded` (and per built-in metric)."""
        self._http_children: dict[tuple[str, str, int], Any] = {}
        self._overflowed: set[str] = set()
        if process_metrics and self._mp_dir is None:
            ProcessCollector(registry=self.registry)

        # The HTTP metrics are recorded on every request: plain numbers exported at scrape time,
        # except in multiprocess mode where values must go to the shared files.
        self._http_fast: HttpSeries | None = None
        self._mp_http: tuple[Counter, Histogram] | None = None
        if self._mp_dir is None:
            self._http_fast = HttpSeries(http_buckets)
            self.registry.register(self._http_fast)
        else:
            self._mp_http = (
                Counter(
                    http_series.REQUESTS,
                    http_series.REQUESTS_HELP,
                    http_series.LABELS,
                    registry=self.registry,
                ),
                Histogram(
                    http_series.DURATION,
                    http_series.DURATION_HELP,
                    http_series.LABELS,
                    registry=self.registry,
                    buckets=tuple(http_buckets),
                ),
            )
        for name in (http_series.REQUESTS, http_series.DURATION):
            self._declared[name] = _Declared("builtin", http_series.LABELS, (), None)
        self.http_active = self.gauge(
            "http_active_connections", "HTTP requests being served right now", multiprocess_mode="livesum"
        )
        self._in_flight = 0
        if self._mp_dir is None:
            # A plain int read at scrape time: no lock per request (the event loop is one thread).
            self.http_active.set_function(lambda: self._in_flight)

    # ------------------------------------------------------------------ state

    @property
    def multiprocess(self) -> bool:
        """True when values go to ``PROMETHEUS_MULTIPROC_DIR`` and scrapes aggregate every process."""
        return self._mp_dir is not None

    # ------------------------------------------------------------------ declaring metrics

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
        """Get or create a counter (a ``_total`` suffix of ``name`` is optional: it is exported with one)."""
        return self._declare(Counter, "counter", name.removesuffix("_total"), documentation, labelnames, ())

    def gauge(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        multiprocess_mode: GaugeMode = "livesum",
    ) -> Gauge:
        """Get or create a gauge; ``multiprocess_mode`` says how the processes' values combine."""
        return self._declare(
            Gauge,
            "gauge",
            name,
            documentation,
            labelnames,
            (multiprocess_mode,),
            multiprocess_mode=multiprocess_mode,
        )

    def histogram(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float] | None = None,
    ) -> Histogram:
        """Get or create a histogram (default buckets are the HTTP ones, in seconds).

        Bounds configured for ``name`` (the collector's ``buckets``) win over ``buckets``.
        """
        bounds = self._bucket_overrides.get(name) or tuple(
            float(b) for b in (buckets if buckets is not None else DEFAULT_HTTP_BUCKETS)
        )
        return self._declare(Histogram, "histogram", name, documentation, labelnames, bounds, buckets=bounds)

    def summary(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Summary:
        """Get or create a summary (count and sum only, as prometheus-client does)."""
        return self._declare(Summary, "summary", name, documentation, labelnames, ())

    def bounded(self, metric: M) -> LabelBudget[M]:
        """``metric``'s children through the series budget: at most ``max_series`` label sets.

        Beyond that, new label sets are recorded with every label ``<other>`` and a warning is
        logged once per metric. The same metric always gets the same budget.
        """
        name = metric._name  # prometheus-client keeps the declared name here (a counter's without _total)
        if isinstance(metric, Counter):
            name += "_total"
        with self._lock:
            budget = self._budgets.get(name)
            if budget is None:
                budget = self._budgets[name] = _Budget(self, metric, name)
            return cast(LabelBudget[M], budget)

    def _declare(
        self,
        cls: type[M],
        kind: Kind,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        extra: tuple[Any, ...],
        **kwargs: Any,
    ) -> M:
        if isinstance(labelnames, str):
            raise TypeError(f"labelnames of {name!r} must be a sequence of names, not a string")
        labels = tuple(labelnames)
        with self._lock:
            found = self._declared.get(name)
            if found is not None:
                same = (found.kind, found.labelnames, found.extra) == (kind, labels, extra)
                if found.metric is None or not same:
                    requested = _Declared(kind, labels, extra, found.metric).describe()
                    raise MetricConflictError(name, found.describe(), requested)
                return cast(M, found.metric)
            try:
                metric = cls(name, documentation, labels, registry=self.registry, **kwargs)
            except ValueError as exc:
                if "Duplicated timeseries" in str(exc):
                    raise MetricConflictError(
                        name, "a series of another metric (or a process metric)", f"a {kind}"
                    ) from exc
                raise
            self._declared[name] = _Declared(kind, labels, extra, metric)
            return metric

    # ------------------------------------------------------------------ the recording API

    def request_started(self) -> None:
        """One more HTTP request in flight (``http_active_connections``)."""
        if self._mp_dir is None:
            self._in_flight += 1
        else:
            self.http_active.inc()

    def request_finished(self) -> None:
        """One HTTP request fewer in flight."""
        if self._mp_dir is None:
            self._in_flight -= 1
        else:
            self.http_active.dec()

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one served request in ``http_requests_total`` and ``http_request_duration_seconds``.

        ``route`` must be a route *template* (``/users/{id}``), never a raw path.
        """
        series = self._http_children.get((method, route, status))
        if series is None:
            series = self._http_series(method, route, status)
        series.observe(seconds)

    def http_observer(self, method: str, route: str, status: int) -> Callable[[float], None]:
        """What :meth:`observe_http` does for one label set, as a callable taking the seconds.

        For a caller that records the same label sets over and over (the HTTP middleware keeps them).
        """
        series = self._http_children.get((method, route, status))
        if series is None:
            series = self._http_series(method, route, status)
        return cast(Callable[[float], None], series.observe)

    def _http_series(self, method: str, route: str, status: int) -> Any:
        m = method if method in _KNOWN_METHODS else "OTHER"
        key = (m, route, str(status))
        full = len(self._http_children) >= self.max_series
        if full:
            self._warn_overflow("http_requests_total")
            key = (m, OVERFLOW, str(status))
        series: Any = (
            self._http_fast.series(key)
            if self._http_fast is not None
            else _PromHttpSeries(cast(tuple[Counter, Histogram], self._mp_http), key)
        )
        if not full:
            self._http_children[(method, route, status)] = series
        return series

    def _warn_overflow(self, name: str) -> None:
        if name not in self._overflowed:
            self._overflowed.add(name)
            log.warning(
                "metric %s reached %d label sets; new ones are recorded as %r",
                name,
                self.max_series,
                OVERFLOW,
                extra={"metric": name},
            )

    # ------------------------------------------------------------------ exposition

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """``(body, content type)`` for a scrape: OpenMetrics when ``accept`` asks for it.

        In multiprocess mode the body aggregates every process writing to the directory.
        """
        encoder, content_type = choose_encoder(accept or "")
        if self._mp_dir is None:
            return encoder(self.registry), content_type
        scrape = CollectorRegistry()
        multiprocess.MultiProcessCollector(scrape, path=self._mp_dir)  # type: ignore[no-untyped-call]
        return encoder(scrape), content_type

    def mark_process_dead(self, pid: int | None = None) -> None:
        """Multiprocess mode: drop a finished worker's live gauges (no-op otherwise)."""
        if self._mp_dir is not None:
            multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
                os.getpid() if pid is None else pid, self._mp_dir
            )

    def __repr__(self) -> str:
        mode = f"multiprocess dir={self._mp_dir!r}" if self._mp_dir else "single-process"
        return f"<MetricsCollector {mode} metrics={len(self._declared)}>"
