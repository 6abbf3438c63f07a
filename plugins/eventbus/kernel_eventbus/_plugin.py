"""The ``eventbus`` plugin: builds the configured bus, registers it, stops it at shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import metadata
from typing import TYPE_CHECKING, Any

from kernel import CheckIssue, Command, HealthCheck, Plugin, PluginContext, Registry, hookimpl

from ._cli import dlq_command
from ._config import EventBusConfig
from ._errors import AdapterUnavailableError

if TYPE_CHECKING:
    from kernel_metrics import Metrics  # both optional: the memory adapter needs neither, metrics may be off
    from kernel_redis import RedisService

    from ._bus import EventBus  # the buses (asyncio for the memory one): imported by build_bus and the hooks


def build_bus(
    config: EventBusConfig, *, redis_connection: RedisService | None = None, metrics: Metrics | None = None
) -> EventBus:
    """The bus ``config`` describes; ``redis_connection`` is the Redis it uses (``kernel_redis.find_redis``).

    Without one, ``adapter = "redis"`` raises ``AdapterUnavailableError``.
    """
    common: dict[str, Any] = {
        "policy": config.retry_policy(),
        "concurrency": config.concurrency,
        "metrics": metrics,
        "idempotency_ttl": config.idempotency_ttl,
        "max_payload_bytes": config.max_payload_bytes,
        "publish_timeout": config.publish_timeout,
    }
    if config.adapter == "memory":
        from ._memory import MemoryEventBus

        return MemoryEventBus(**common)
    if redis_connection is None:
        raise AdapterUnavailableError(
            'eventbus: adapter = "redis" needs the redis plugin, which is not enabled: add "redis" to '
            '[kernel] plugins (pip install milo-kernel-redis), or set adapter = "memory" in '
            "[plugins.eventbus]"
        )
    from ._redis import RedisEventBus  # imports redis-py only when the adapter is used

    # blocking reads get their own connections, with a socket timeout longer than the longest block
    blocking = redis_connection.new_client(socket_timeout=config.read_block + 10.0)
    return RedisEventBus(
        redis_connection.client,
        blocking_client=blocking,
        prefix=config.prefix,
        batch_size=config.batch_size,
        read_block=config.read_block,
        visibility_timeout=config.visibility_timeout,
        reclaim_interval=config.reclaim_interval,
        max_deliveries=config.max_deliveries,
        stream_maxlen=config.stream_maxlen,
        new_group_start=config.new_group_start,
        reconnect_max_delay=config.reconnect_max_delay,
        max_ack_delay=config.max_ack_delay,
        durability=config.durability,
        replicas=config.replicas,
        replication_timeout=config.replication_timeout,
        wait_replicated=redis_connection.wait_replicated,  # write + WAIT on the slot's primary
        **common,
    )


class EventBusPlugin(Plugin):
    """Durable events: publish/subscribe with metadata, retries with backoff, DLQ and replay."""

    name = "eventbus"
    version = metadata.version("milo-kernel-eventbus")  # one source: the distribution's pyproject.toml
    optional = ("redis", "metrics")
    config_class = EventBusConfig
    provides = ("eventbus", "EventBus", "MemoryEventBus", "RedisEventBus")  # the adapter's class too
    install_hints = {"redis": "milo-kernel-redis"}
    description = "Event bus with retries, dead-letter queue and replay (memory or Redis Streams)"

    @hookimpl
    def kernel_check(
        self, ctx: PluginContext[EventBusConfig], enabled: frozenset[str], processes: int
    ) -> list[CheckIssue]:
        """``kernel check``: the redis adapter needs Redis; the memory adapter cannot span processes."""
        issues: list[CheckIssue] = []
        if ctx.config.adapter == "redis" and "redis" not in enabled and not _redis_registered(ctx.registry):
            issues.append(
                CheckIssue.error(
                    "adapter",
                    'adapter = "redis" needs the redis plugin (or set adapter = "memory")',
                    needs="redis",
                )
            )
        if ctx.config.adapter == "memory":
            if ctx.config.durability == "replicated":
                issues.append(
                    CheckIssue.error(
                        "durability",
                        'durability = "replicated" needs adapter = "redis" (the memory adapter has no '
                        "replicas to wait for)",
                    )
                )
            if processes > 1:
                issues.append(
                    CheckIssue.production(
                        "adapter",
                        f'adapter = "memory" delivers only inside one process, but {processes} '
                        "server processes share this config: events published in one never reach the others; "
                        'use adapter = "redis"',
                    )
                )
            if "queue" in enabled:
                issues.append(
                    CheckIssue.production(
                        "adapter",
                        'adapter = "memory" delivers only inside one process, and the queue plugin '
                        "runs jobs in `kernel worker` processes: their events never reach this one; "
                        'use adapter = "redis"',
                    )
                )
        return issues

    @hookimpl
    def kernel_register(self, ctx: PluginContext[EventBusConfig]) -> None:
        """With the redis adapter: tell ``kernel redis migrate-keys`` the earlier key layout."""
        if ctx.config.adapter != "redis":
            return
        try:
            from kernel_redis import KeyLayouts
        except ImportError:  # milo-kernel-redis not installed (or without migrations): nothing to tell
            return
        layouts = ctx.registry.find(KeyLayouts)
        if layouts is not None:
            from ._keys import LegacyKeyLayout

            layouts.add(LegacyKeyLayout(ctx.config.prefix))

    @hookimpl
    async def kernel_lifespan(self, ctx: PluginContext[EventBusConfig]) -> AsyncIterator[None]:
        """Build the configured bus, register it (as ``EventBus`` too), start it; close it at shutdown."""
        from ._bus import EventBus

        bus = build_bus(ctx.config, redis_connection=_redis(ctx), metrics=find_metrics(ctx.registry))
        ctx.provide(bus, name="eventbus", types=(EventBus, type(bus)))
        await bus.start()
        ctx.log.info("eventbus: %s adapter started", bus.adapter)
        try:
            yield
        finally:
            await bus.close()

    @hookimpl
    def kernel_health_checks(self, ctx: PluginContext[EventBusConfig]) -> list[HealthCheck]:
        """A non-critical check that the dead-letter storage answers."""
        from ._bus import EventBus

        async def dlq() -> bool:
            bus = ctx.registry.get(EventBus)
            await bus.dead_letter_count()  # reachable storage; a non-empty DLQ is not unhealthy
            return True

        return [HealthCheck("eventbus", dlq, critical=False)]

    @hookimpl
    def kernel_cli_commands(self) -> list[Command]:
        """``kernel dlq``."""
        return [dlq_command()]


def _redis_registered(registry: Registry) -> bool:
    """Whether a Redis service (or a host's client) is registered already, for the check."""
    try:
        from kernel_redis import redis_available
    except ImportError:  # milo-kernel-redis not installed: nothing can provide one
        return False
    return redis_available(registry)


def _redis(ctx: PluginContext[EventBusConfig]) -> RedisService | None:
    """The Redis the redis adapter uses (``kernel_redis.find_redis``); ``None`` for the memory adapter."""
    if ctx.config.adapter != "redis":
        return None
    try:
        from kernel_redis import find_redis
    except ImportError:  # build_bus says how to install it
        return None
    return find_redis(
        ctx.registry, "eventbus", setting=None, alternative='set adapter = "memory" in [plugins.eventbus]'
    )


def find_metrics(registry: Registry) -> Metrics | None:
    """The metrics plugin's collector when it is enabled (``None`` when it is not installed)."""
    try:
        from kernel_metrics import Metrics
    except ImportError:  # not installed: nothing can have registered one
        return None
    return registry.find(Metrics)
