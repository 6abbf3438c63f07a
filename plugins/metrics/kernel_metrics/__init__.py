"""Prometheus metrics for milo-kernel: collector service, route-template HTTP middleware, scrape endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports

if TYPE_CHECKING:
    from ._api import GaugeMode, LabelBudget, Metrics
    from ._collector import (
        MULTIPROC_ENV,
        OVERFLOW,
        MetricConflictError,
        MetricsCollector,
        MultiprocessSetupError,
        multiprocess_dir_from_env,
    )
    from ._config import DEFAULT_DB_BUCKETS, DEFAULT_HTTP_BUCKETS, MetricsConfig
    from ._endpoint import metrics_endpoint
    from ._middleware import MetricsMiddleware, route_template
    from ._plugin import MetricsPlugin

_EXPORTS = {
    "DEFAULT_DB_BUCKETS": "._config",
    "DEFAULT_HTTP_BUCKETS": "._config",
    "GaugeMode": "._api",
    "LabelBudget": "._api",
    "MULTIPROC_ENV": "._collector",
    "MetricConflictError": "._collector",
    "Metrics": "._api",
    "MetricsCollector": "._collector",
    "MetricsConfig": "._config",
    "MetricsMiddleware": "._middleware",
    "MetricsPlugin": "._plugin",
    "MultiprocessSetupError": "._collector",
    "OVERFLOW": "._collector",
    "metrics_endpoint": "._endpoint",
    "multiprocess_dir_from_env": "._collector",
    "route_template": "._middleware",
}
"""Public name -> the submodule defining it, imported on first use (PEP 562)."""

__all__ = [
    "DEFAULT_DB_BUCKETS",
    "DEFAULT_HTTP_BUCKETS",
    "GaugeMode",
    "LabelBudget",
    "MULTIPROC_ENV",
    "OVERFLOW",
    "MetricConflictError",
    "Metrics",
    "MetricsCollector",
    "MetricsConfig",
    "MetricsMiddleware",
    "MetricsPlugin",
    "MultiprocessSetupError",
    "metrics_endpoint",
    "multiprocess_dir_from_env",
    "route_template",
]


if not TYPE_CHECKING:  # type checkers read the imports above; lazy loading keeps `import` light
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
