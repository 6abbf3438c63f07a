"""The ``outbox`` plugin: runs an :class:`OutboxRelay` for the kernel's lifetime; health, metrics, CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import metadata
from typing import TYPE_CHECKING

import anyio

from kernel import Command, HealthCheck, Plugin, PluginContext, Registry, hookimpl

from ._cli import outbox_command
from ._config import OutboxConfig

if TYPE_CHECKING:
    from kernel_metrics import Metrics


class OutboxPlugin(Plugin):
    """Relays the transactional outbox (repository ``events=``) to the event bus, at least once."""

    name = "outbox"
    version = metadata.version("milo-kernel-outbox")  # one source: the distribution's pyproject.toml
    requires = ("repository", "eventbus")
    optional = ("metrics",)
    config_class = OutboxConfig
    provides = ("outbox", "OutboxRelay")
    description = "Transactional outbox relay: events committed with documents reach the bus at least once"

    @hookimpl
    async def kernel_lifespan(self, ctx: PluginContext[OutboxConfig]) -> AsyncIterator[None]:
        """Check the server runs transactions, register the relay, run it (``relay = true``); stop it."""
        from kernel_eventbus import EventBus
        from kernel_repository import RepositoryManager

        from ._relay import OutboxRelay

        store = ctx.registry.get(RepositoryManager).outbox
        await store.ensure_indexes()  # the collection must exist before a transaction writes to it
        await store.check_transactions()  # a standalone mongod fails the boot here, named
        relay = OutboxRelay(store, ctx.registry.get(EventBus), ctx.config, metrics=find_metrics(ctx.registry))
        ctx.provide(relay, name="outbox", types=OutboxRelay)
        async with anyio.create_task_group() as tg:  # the relay's life is this lifespan's
            if ctx.config.relay:
                await tg.start(relay.serve)
                ctx.log.info("outbox: relay %s started on collection %r", relay.owner, store.collection_name)
            try:
                yield
            finally:
                await relay.stop()

    @hookimpl
    def kernel_health_checks(self, ctx: PluginContext[OutboxConfig]) -> list[HealthCheck]:
        """``outbox`` (not critical): degraded while the oldest unpublished entry is older than
        ``lag_degraded_seconds``."""
        from ._relay import OutboxRelay

        async def lag() -> bool:
            return await ctx.registry.get(OutboxRelay).check_lag()

        return [HealthCheck("outbox", lag, critical=False)]

    @hookimpl
    def kernel_cli_commands(self) -> list[Command]:
        """``kernel outbox``."""
        return [outbox_command()]


def find_metrics(registry: Registry) -> Metrics | None:
    """The metrics plugin's collector when it is enabled (``None`` when it is not installed)."""
    try:
        from kernel_metrics import Metrics
    except ImportError:  # not installed: nothing can have registered one
        return None
    return registry.find(Metrics)
