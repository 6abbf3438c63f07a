"""Per-namespace counters and their snapshot."""

from __future__ import annotations

from typing import Any

import attrs


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
        return attrs.asdict(self)


class Counters:
    """Mutable counters of one namespace, plus their Prometheus children when metrics are on."""

    __slots__ = ("deletes", "errors", "exported", "hits", "misses", "namespace", "sets")

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.hits = self.misses = self.sets = self.deletes = self.errors = 0
        self.exported: Exported | None = None

    def snapshot(self) -> CacheStats:
        reads = self.hits + self.misses
        return CacheStats(self.namespace, self.hits, self.misses, self.sets, self.deletes, self.errors,
                          self.hits / reads if reads else 0.0)

    def reset(self) -> None:
        self.hits = self.misses = self.sets = self.deletes = self.errors = 0


class Exported:
    """Prometheus counter children of one namespace (``cache_hits_total{namespace=...}`` …)."""

    __slots__ = ("deletes", "errors", "hits", "misses", "sets")

    def __init__(self, metrics: Any, namespace: str) -> None:
        def child(name: str, doc: str) -> Any:
            return metrics.counter(name, doc, ["namespace"]).labels(namespace)

        self.hits = child("cache_hits_total", "Cache reads that found a value")
        self.misses = child("cache_misses_total", "Cache reads that found nothing (or failed open)")
        self.sets = child("cache_sets_total", "Cache writes")
        self.deletes = child("cache_deletes_total", "Cache entries deleted or invalidated")
        self.errors = child("cache_errors_total", "Cache operations that hit a backend outage")
