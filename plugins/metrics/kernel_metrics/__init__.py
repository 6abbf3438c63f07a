"""Prometheus metrics for milo-kernel: collector service, route-template HTTP middleware, scrape endpoint."""

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
