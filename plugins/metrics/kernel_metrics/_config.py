"""The ``[plugins.metrics]`` table."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import attrs

from kernel import Secret

DEFAULT_HTTP_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def _increasing(_inst: Any, attribute: attrs.Attribute[Any], value: list[float]) -> None:
    if not value:
        raise ValueError(f"'{attribute.name}' must list at least one bucket bound")
    if any(b <= a for a, b in pairwise(value)):
        raise ValueError(f"'{attribute.name}' must be strictly increasing, got {value!r}")


def _absolute_path(_inst: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value.startswith("/"):
        raise ValueError(f"'{attribute.name}' must start with '/', got {value!r}")


@attrs.define(frozen=True)
class MetricsConfig:
    """Settings of the metrics plugin; every key is optional."""

    path: str = attrs.field(default="/health/metrics", validator=_absolute_path)
    """Where the scrape endpoint is served."""
    token: Secret | None = None
    """When set, scrapes must send ``Authorization: Bearer <token>``."""
    loopback_only: bool = False
    """Answer scrapes only from 127.0.0.0/8 and ::1 clients (403 otherwise)."""
    process_metrics: bool = True
    """Export ``process_*`` metrics (CPU, memory, fds) of this process (single-process mode only)."""
    http_middleware: bool = True
    """Wrap the served app in the HTTP metrics middleware."""
    middleware_order: int = 10
    """Position among kernel middleware (lower is further out; outside error handling by default)."""
    record_scrapes: bool = False
    """Count requests to the scrape endpoint itself in the HTTP metrics."""
    exclude_routes: list[str] = attrs.field(factory=list)
    """Route templates whose requests are not recorded (e.g. ``/health``)."""
    unmatched_route: str = "<unmatched>"
    """The one ``route`` label for requests no route matched."""
    max_routes: int = attrs.field(default=1000, validator=attrs.validators.gt(0))
    """Distinct ``route`` labels before new ones collapse into ``<other>`` (a safety net)."""
    max_series: int = attrs.field(default=10_000, validator=attrs.validators.gt(0))
    """Distinct label sets per built-in metric before new ones collapse into ``<other>``."""
    http_buckets: list[float] = attrs.field(factory=lambda: list(DEFAULT_HTTP_BUCKETS), validator=_increasing)
    """Bucket bounds (seconds) of ``http_request_duration_seconds``."""
