"""The ``console`` plugin: mounts the operator console through the kernel's route hook."""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING

from kernel import CheckIssue, Plugin, PluginContext, Registry, Route, hookimpl

from ._config import ConsoleConfig

if TYPE_CHECKING:
    from prometheus_client import Counter

    from ._app import Section


class ConsolePlugin(Plugin):
    """Operator console at ``/console``: overview, queues, events and DLQ, cache, repositories."""

    name = "console"
    version = metadata.version("milo-kernel-console")  # one source: the distribution's pyproject.toml
    optional = ("metrics", "queue", "eventbus", "cache", "repository")
    config_class = ConsoleConfig
    description = (
        "Operator console: server-rendered pages to see and act on plugins, health, queues and events"
    )

    @hookimpl
    def kernel_check(self, ctx: PluginContext[ConsoleConfig], enabled: frozenset[str]) -> list[CheckIssue]:
        """Refuse the console open to any client in production."""
        cfg = ctx.config
        issues: list[CheckIssue] = []
        if not cfg.loopback_only and not cfg.authenticated:
            issues.append(
                CheckIssue.production(
                    "loopback_only",
                    f"the operator console {cfg.path} is open to any client: keep loopback_only = true, "
                    "or set token or username and password",
                )
            )
        if ctx.settings.env == "production" and cfg.authenticated and cfg.csrf_secret is None:
            issues.append(
                CheckIssue.warning(
                    "csrf_secret",
                    "no csrf_secret: each process signs its own CSRF tokens, so with several serving "
                    "processes a form posted to another process is refused",
                )
            )
        return issues

    @hookimpl
    def kernel_routes(self, ctx: PluginContext[ConsoleConfig]) -> list[Route]:
        """The console, a prefix route at ``path`` (GET pages, POST actions)."""
        from ._app import ConsoleApp

        app = ConsoleApp(
            ctx.config, sections(ctx.registry, ctx.config), actions_counter=_counter(ctx.registry)
        )
        ctx.log.info(
            "console at %s (%s)",
            ctx.config.path,
            "loopback only" if ctx.config.loopback_only else "authenticated clients",
        )
        return [Route(ctx.config.path, app, methods=("GET", "HEAD", "POST"), name="console", prefix=True)]


def sections(registry: Registry, config: ConsoleConfig) -> list[Section]:
    """The sections of the enabled plugins (each resolved by its public type; absent when not enabled)."""
    out: list[Section] = []
    try:
        from kernel_queue import QueueManager
    except ImportError:
        pass
    else:
        qm = registry.find(QueueManager)
        if qm is not None:
            from ._queues import QueuesSection

            out.append(QueuesSection(qm, config.page_size))
    try:
        from kernel_eventbus import EventBus
    except ImportError:
        pass
    else:
        bus = registry.find(EventBus)
        if bus is not None:
            from ._events import EventsSection

            out.append(EventsSection(bus, config.page_size))
    return out


def _counter(registry: Registry) -> Counter | None:
    """``console_actions_total{action, outcome}`` when the metrics plugin is enabled."""
    try:
        from kernel_metrics import Metrics
    except ImportError:  # not installed: nothing can have registered one
        return None
    metrics = registry.find(Metrics)
    if metrics is None:
        return None
    return metrics.counter("console_actions_total", "Operator console actions", ["action", "outcome"])
