"""The ``metrics`` plugin: registers the collector, serves the scrape route, wraps HTTP in the middleware."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from importlib import metadata

from kernel import CheckIssue, Middleware, Plugin, PluginContext, Route, hookimpl
from kernel.web import ASGIApp

from ._config import MetricsConfig

# prometheus_client is imported by the hooks that record or serve (kernel_register onwards), not
# by reading metadata or validating config: hence the function-local imports below.

log = logging.getLogger("kernel.plugins.metrics")


class MetricsPlugin(Plugin):
    """Prometheus metrics: ``MetricsCollector`` service, HTTP middleware and ``GET /health/metrics``."""

    name = "metrics"
    version = metadata.version("milo-kernel-metrics")  # one source: the distribution's pyproject.toml
    config_class = MetricsConfig
    provides = ("metrics", "MetricsCollector", "Metrics")
    description = "Prometheus metrics, HTTP middleware and the /health/metrics endpoint"

    @hookimpl
    def kernel_check(self, ctx: PluginContext[MetricsConfig]) -> list[CheckIssue]:
        """A production issue when the scrape endpoint is open to any client."""
        cfg = ctx.config
        if cfg.token is None and not cfg.loopback_only:
            return [
                CheckIssue.production(
                    "token",
                    f"the scrape endpoint {cfg.path} is open to any client: set token (scrapers send "
                    "'Authorization: Bearer <token>') or loopback_only = true",
                )
            ]
        return []

    @hookimpl
    def kernel_register(self, ctx: PluginContext[MetricsConfig]) -> None:
        """Register the ``MetricsCollector`` (also as ``Metrics``, named ``metrics``) before any lifespan."""
        # No I/O here, so every plugin can find the collector from its own lifespan.
        from ._api import Metrics
        from ._collector import MetricsCollector

        cfg = ctx.config
        collector = MetricsCollector(
            process_metrics=cfg.process_metrics,
            http_buckets=cfg.http_buckets,
            max_series=cfg.max_series,
            # Every MetricsMiddleware on this collector skips these, a host app's own included.
            exclude_routes=[*cfg.exclude_routes, *([] if cfg.record_scrapes else [cfg.path])],
        )
        ctx.provide(collector, name="metrics", types=(Metrics, MetricsCollector))

    @hookimpl
    async def kernel_lifespan(self, ctx: PluginContext[MetricsConfig]) -> AsyncIterator[None]:
        """Warn about an open endpoint in production; at shutdown, mark this process's gauges dead."""
        from ._collector import MetricsCollector

        collector = ctx.registry.get(MetricsCollector)
        cfg = ctx.config
        if ctx.settings.env == "production" and cfg.token is None and not cfg.loopback_only:
            ctx.log.warning(
                "metrics endpoint %s is open to any client: set plugins.metrics.token "
                "or plugins.metrics.loopback_only",
                cfg.path,
            )
        ctx.log.info("metrics ready", extra={"multiprocess": collector.multiprocess, "path": cfg.path})
        yield
        # Live gauges of this process must not linger in the shared multiprocess directory.
        collector.mark_process_dead()

    @hookimpl
    def kernel_routes(self, ctx: PluginContext[MetricsConfig]) -> list[Route]:
        """The scrape endpoint at ``path`` (GET)."""
        from ._collector import MetricsCollector
        from ._endpoint import metrics_endpoint

        cfg = ctx.config
        app = metrics_endpoint(
            ctx.registry.get(MetricsCollector), token=cfg.token, loopback_only=cfg.loopback_only
        )
        return [Route(cfg.path, app, methods=("GET",), name="metrics")]

    @hookimpl
    def kernel_middleware(self, ctx: PluginContext[MetricsConfig]) -> list[Middleware]:
        """The HTTP ``MetricsMiddleware`` unless ``http_middleware`` is off."""
        cfg = ctx.config
        if not cfg.http_middleware:
            return []
        from ._collector import MetricsCollector
        from ._middleware import MetricsMiddleware

        collector = ctx.registry.get(MetricsCollector)

        def wrap(app: ASGIApp) -> ASGIApp:
            # The collector carries exclude_routes and the scrape path (see kernel_register).
            return MetricsMiddleware(
                app, collector, unmatched_route=cfg.unmatched_route, max_routes=cfg.max_routes
            )

        return [Middleware(wrap, order=cfg.middleware_order, name="metrics")]
