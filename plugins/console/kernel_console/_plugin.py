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
    # No ``optional``: the sections resolve their services when the HTTP app is built, after the
    # whole boot, so the console needs no plugin to start before it.
    config_class = ConsoleConfig
    description = (
        "Operator console: server-rendered pages to see and act on plugins, health, queues and events"
    )

    @hookimpl
    def kernel_check(self, ctx: PluginContext[ConsoleConfig]) -> list[CheckIssue]:
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
    """The sections of the enabled plugins, each on a service resolved by its public type.

    A plugin that is not installed, or installed but not enabled, has no section.
    """
    out: list[Section | None] = [
        _queues(registry, config),
        _events(registry, config),
        _cache(registry),
        _repository(registry),
    ]
    return [s for s in out if s is not None]


def _queues(registry: Registry, config: ConsoleConfig) -> Section | None:
    try:
        from kernel_queue import QueueManager
    except ImportError:
        return None
    from ._queues import QueuesSection

    qm = registry.find(QueueManager)
    return QueuesSection(qm, config.page_size) if qm is not None else None


def _events(registry: Registry, config: ConsoleConfig) -> Section | None:
    try:
        from kernel_eventbus import EventBus
    except ImportError:
        return None
    from ._events import EventsSection

    bus = registry.find(EventBus)
    return EventsSection(bus, config.page_size) if bus is not None else None


def _cache(registry: Registry) -> Section | None:
    try:
        from kernel_cache import CacheManager
    except ImportError:
        return None
    from ._cache import CacheSection

    cache = registry.find(CacheManager)
    return CacheSection(cache) if cache is not None else None


def _repository(registry: Registry) -> Section | None:
    try:
        from kernel_repository import RepositoryManager
    except ImportError:
        return None
    from ._repository import RepositorySection

    rm = registry.find(RepositoryManager)
    return RepositorySection(rm) if rm is not None else None


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
