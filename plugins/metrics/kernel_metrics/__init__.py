"""Prometheus metrics for milo-kernel: collector service, route-template HTTP middleware, scrape endpoint."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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


if not TYPE_CHECKING:  # type checkers see the imports above; __getattr__ would hide misspelt names

    def __getattr__(name: str) -> object:
        """Import the submodule behind a public name on first access (importing the package stays light)."""
        try:
            module = _EXPORTS[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    """The module's names, the not yet imported public ones included."""
    return sorted({*globals(), *__all__})
