"""Per-namespace counters, their export to Prometheus, and their snapshot."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:  # the metrics plugin is optional: only its type is needed here
    from kernel_metrics import Metrics
    from prometheus_client import Counter


@attrs.frozen
class CacheStats:
    """A snapshot of one namespace's counters since start (or the last ``reset_stats``)."""

    namespace: str
    hits: int
    misses: int
    sets: int
    deletes: int
    errors: int
    hit_rate: float
    """``hits / (hits + misses)`` between 0 and 1 (0.0 before any read); format with ``f"{r:.2%}"``."""

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as a plain dict (what the ``cache`` health check returns per namespace)."""
        return attrs.asdict(self)


# (attribute, Prometheus name, help text) of each counter a namespace keeps.
_METRICS = (
    ("hits", "cache_hits_total", "Cache reads that found a value"),
    ("misses", "cache_misses_total", "Cache reads that found nothing (or failed open)"),
    ("sets", "cache_sets_total", "Cache writes"),
    ("deletes", "cache_deletes_total", "Cache entries deleted or invalidated"),
    ("errors", "cache_errors_total", "Cache operations that hit a backend outage"),
)


class Count:
    """One counter of one namespace: a local value, and its Prometheus child once exported."""

    __slots__ = ("child", "value")

    def __init__(self) -> None:
        self.value = 0
        self.child: Counter | None = None

    def add(self, n: int = 1) -> None:
        """Count ``n`` more, locally and (when exported) in Prometheus."""
        self.value += n
        if self.child is not None:
            self.child.inc(n)


class Counters:
    """The counters of one namespace: ``hits``, ``misses``, ``sets``, ``deletes``, ``errors``."""

    __slots__ = ("deletes", "errors", "hits", "misses", "namespace", "sets")

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.hits, self.misses, self.sets, self.deletes, self.errors = (Count() for _ in _METRICS)

    def export(self, metrics: Metrics) -> None:
        """Count in Prometheus too, as ``cache_<kind>_total{namespace=...}``, from now on."""
        for attr, name, doc in _METRICS:
            count: Count = getattr(self, attr)
            count.child = metrics.counter(name, doc, ["namespace"]).labels(self.namespace)

    def snapshot(self) -> CacheStats:
        """The current values, with the hit rate."""
        hits, misses = self.hits.value, self.misses.value
        reads = hits + misses
        return CacheStats(
            self.namespace,
            hits,
            misses,
            self.sets.value,
            self.deletes.value,
            self.errors.value,
            hits / reads if reads else 0.0,
        )

    def reset(self) -> None:
        """Zero the local values (Prometheus counters are monotonic and keep theirs)."""
        for attr, _, _ in _METRICS:
            count: Count = getattr(self, attr)
            count.value = 0


class CounterBoard:
    """The :class:`Counters` of every namespace of one cache, exported to the same collector."""

    def __init__(self) -> None:
        self._by_namespace: dict[str, Counters] = {}
        self._metrics: Metrics | None = None

    def for_namespace(self, namespace: str) -> Counters:
        """The counters of ``namespace``, made (and exported, when metrics are on) on first use."""
        found = self._by_namespace.get(namespace)
        if found is None:
            found = self._by_namespace[namespace] = Counters(namespace)
            if self._metrics is not None:
                found.export(self._metrics)
        return found

    def export_to(self, metrics: Metrics) -> None:
        """Count every namespace, present and future, in ``metrics``' Prometheus counters too."""
        self._metrics = metrics
        for counters in self._by_namespace.values():
            counters.export(metrics)

    def snapshots(self) -> dict[str, CacheStats]:
        """A snapshot per namespace used so far."""
        return {name: c.snapshot() for name, c in self._by_namespace.items()}
