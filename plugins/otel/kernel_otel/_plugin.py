"""The otel plugin: an OpenTelemetry TracerProvider for the kernel, and the instrumentation it installs."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from importlib import metadata
from typing import TYPE_CHECKING

from kernel import CheckIssue, ConfigError, Middleware, Plugin, PluginContext, hookimpl
from kernel.web import ASGIApp

from ._config import OtelConfig, OtelSettingError, Settings, resolve

if TYPE_CHECKING:
    from ._sdk import Tracing


def _settings(ctx: PluginContext[OtelConfig]) -> Settings:
    try:
        return resolve(ctx.config, os.environ)
    except OtelSettingError as exc:
        raise ConfigError([f"plugins.otel: {exc}"]) from None


class OtelPlugin(Plugin):
    """Sets up the OpenTelemetry SDK and traces HTTP requests and the event bus.

    Nothing imports ``opentelemetry`` unless this plugin is enabled and the kernel boots.
    """

    name = "otel"
    version = metadata.version("milo-kernel-otel")
    optional = ("eventbus", "queue", "repository", "cache", "redis")  # started first: observers for them
    config_class = OtelConfig
    provides = ("otel", "Tracing")
    description = "OpenTelemetry traces: HTTP server spans, event publish and handling"

    @hookimpl
    def kernel_check(self, ctx: PluginContext[OtelConfig]) -> list[CheckIssue]:
        """Invalid settings, and exporter choices that do not suit production."""
        try:
            settings = resolve(ctx.config, os.environ)
        except OtelSettingError as exc:
            return [CheckIssue.error("", str(exc))]
        issues: list[CheckIssue] = []
        if settings.exporter == "memory" and ctx.settings.env == "production":
            message = 'exporter = "memory" keeps spans in memory and exports none (tests only)'
            issues.append(CheckIssue.error("exporter", message))
        if settings.exporter == "otlp" and settings.endpoint.startswith("http://") and settings.headers:
            message = f"export headers are sent over plain http:// to {settings.endpoint}"
            issues.append(CheckIssue.warning("headers", message))
        return issues

    @hookimpl
    async def kernel_lifespan(self, ctx: PluginContext[OtelConfig]) -> AsyncIterator[None]:
        """Set up the SDK and the instrumentation for the kernel's life; flush and shut down after."""
        settings = _settings(ctx)
        if settings.disabled:  # OTEL_SDK_DISABLED=true: no provider, no instrumentation
            ctx.log.info("otel: OTEL_SDK_DISABLED=true, tracing is off")
            yield
            return
        from ._sdk import Tracing, span_ids_in_log_records  # the SDK: only for a booted, enabled plugin

        tracing = Tracing(settings)
        if ctx.config.set_global:
            from opentelemetry import trace

            trace.set_tracer_provider(tracing.provider)
        ctx.provide(tracing, name="otel", types=Tracing)
        undo: list[Callable[[], None]] = [
            _instrument_bus(ctx, tracing),
            _instrument_queue(ctx, tracing),
            _instrument_repositories(ctx, tracing),
        ]
        from ._stores import instrument_stores  # cache and Redis spans, when asked for

        undo += instrument_stores(ctx.registry, ctx.config, tracing.kernel_tracer)
        with ExitStack() as stack:
            stack.enter_context(span_ids_in_log_records())
            try:
                yield
            finally:
                for step in undo:
                    step()
                tracing.shutdown()  # flushes the batch processor

    @hookimpl
    def kernel_middleware(self, ctx: PluginContext[OtelConfig]) -> list[Middleware]:
        """The :class:`~kernel_otel._http.TracingMiddleware` (none when the SDK is disabled)."""
        from ._sdk import Tracing

        tracing = ctx.registry.find(Tracing)
        if tracing is None:  # OTEL_SDK_DISABLED
            return []
        from ._http import TracingMiddleware

        tracer = tracing.tracer

        def wrap(app: ASGIApp) -> ASGIApp:
            return TracingMiddleware(app, tracer)

        return [Middleware(wrap, order=ctx.config.middleware_order, name="otel")]


def _instrument_bus(ctx: PluginContext[OtelConfig], tracing: Tracing) -> Callable[[], None]:
    """Trace the event bus when the eventbus plugin is enabled; the function undoing it."""
    try:
        from kernel_eventbus import EventBus
    except ImportError:  # milo-kernel-eventbus not installed
        return lambda: None
    bus = ctx.registry.find(EventBus)
    if bus is None:
        return lambda: None
    from ._eventbus import instrument_bus

    return instrument_bus(bus, tracing.kernel_tracer)


def _instrument_queue(ctx: PluginContext[OtelConfig], tracing: Tracing) -> Callable[[], None]:
    """Trace jobs when the queue plugin is enabled; the function undoing it."""
    try:
        from kernel_queue import QueueManager
    except ImportError:  # milo-kernel-queue not installed
        return lambda: None
    manager = ctx.registry.find(QueueManager)
    if manager is None:
        return lambda: None
    from ._queue import instrument_queue

    return instrument_queue(manager, tracing.kernel_tracer)


def _instrument_repositories(ctx: PluginContext[OtelConfig], tracing: Tracing) -> Callable[[], None]:
    """Trace repository operations when the repository plugin is enabled; the function undoing it."""
    try:
        from kernel_repository import RepositoryManager
    except ImportError:  # milo-kernel-repository not installed
        return lambda: None
    manager = ctx.registry.find(RepositoryManager)
    if manager is None:
        return lambda: None
    from ._repository import instrument_repositories

    return instrument_repositories(manager, tracing.kernel_tracer)
