"""Prometheus metrics for milo-kernel: collector service, route-template HTTP middleware, scrape endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports

if TYPE_CHECKING:  # what type checkers and IDEs read
    from ._api import GaugeMode as GaugeMode
    from ._api import LabelBudget as LabelBudget
    from ._api import Metrics as Metrics
    from ._collector import MULTIPROC_ENV as MULTIPROC_ENV
    from ._collector import OVERFLOW as OVERFLOW
    from ._collector import MetricConflictError as MetricConflictError
    from ._collector import MetricsCollector as MetricsCollector
    from ._collector import MultiprocessSetupError as MultiprocessSetupError
    from ._collector import multiprocess_dir_from_env as multiprocess_dir_from_env
    from ._config import DEFAULT_HTTP_BUCKETS as DEFAULT_HTTP_BUCKETS
    from ._config import MetricsConfig as MetricsConfig
    from ._endpoint import metrics_endpoint as metrics_endpoint
    from ._middleware import MetricsMiddleware as MetricsMiddleware
    from ._middleware import route_template as route_template
    from ._plugin import MetricsPlugin as MetricsPlugin
else:  # PEP 562: a submodule is imported on first use of one of its names
    _EXPORTS = {  # submodule -> the public names it defines
        "._api": ["GaugeMode", "LabelBudget", "Metrics"],
        "._collector": [
            "MULTIPROC_ENV",
            "OVERFLOW",
            "MetricConflictError",
            "MetricsCollector",
            "MultiprocessSetupError",
            "multiprocess_dir_from_env",
        ],
        "._config": ["DEFAULT_HTTP_BUCKETS", "MetricsConfig"],
        "._endpoint": ["metrics_endpoint"],
        "._middleware": ["MetricsMiddleware", "route_template"],
        "._plugin": ["MetricsPlugin"],
    }
    __getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
