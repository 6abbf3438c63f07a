"""The ``cache`` plugin: registers a ``CacheManager`` on the memory or Redis backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from importlib import metadata
from typing import TYPE_CHECKING, Any

from kernel import CheckIssue, HealthCheck, Plugin, PluginContext, Registry, hookimpl

from ._config import CacheConfig

if TYPE_CHECKING:  # redis-py comes with the backends: imported by the lifespan, not by metadata or check
    from kernel_metrics import Metrics
    from redis.asyncio.cluster import RedisCluster

    from ._backends import CacheBackend, RedisBackend


class CachePlugin(Plugin):
    """Namespaced TTL cache; ``kernel.get(CacheManager).namespace("user")``."""

    name = "cache"
    version = metadata.version("milo-kernel-cache")  # one source: the distribution's pyproject.toml
    # Not a hard requirement: the memory backend needs no Redis. backend = "redis" checks at boot.
    optional = ("redis", "metrics")
    config_class = CacheConfig
    provides = ("cache", "CacheManager")
    install_hints = {"redis": "milo-kernel-redis", "metrics": "milo-kernel-metrics"}
    description = "Namespaced TTL cache (memory or Redis) with safe invalidation and single-flight get_or_set"

    @hookimpl
    def kernel_check(self, ctx: PluginContext[CacheConfig], enabled: frozenset[str]) -> list[CheckIssue]:
        """``backend = 'redis'`` without ``url`` needs a Redis: the redis plugin's, or the host's."""
        cfg = ctx.config
        if cfg.backend != "redis" or cfg.url is not None or "redis" in enabled:
            return []
        from kernel_redis import redis_available

        # A host may bring its own Redis: registered before the kernel is built.
        if not redis_available(ctx.registry):
            return [
                CheckIssue.error(
                    "backend",
                    "backend = 'redis' needs the redis plugin, or a server of the cache's own: "
                    '[plugins.cache] url = "redis://…"',
                    needs="redis",
                )
            ]
        return []

    @hookimpl
    def kernel_register(self, ctx: PluginContext[CacheConfig]) -> None:
        """On the redis plugin's server: tell ``kernel redis migrate-keys`` the pre-hash-tag key layout."""
        cfg = ctx.config
        if cfg.backend != "redis" or cfg.url is not None:  # own url: a server migrate-keys does not see
            return
        from kernel_redis import KeyLayouts

        layouts = ctx.registry.find(KeyLayouts)
        if layouts is not None:
            from ._keys import LegacyLayout

            layouts.add(LegacyLayout(cfg.key_prefix))

    @hookimpl
    async def kernel_lifespan(self, ctx: PluginContext[CacheConfig]) -> AsyncIterator[None]:
        """Build the backend and the manager, export stats when metrics are on, close at shutdown."""
        from ._manager import CacheManager

        cfg = ctx.config
        async with AsyncExitStack() as stack:
            backend = await _backend(ctx, stack)
            manager = CacheManager(
                backend,
                ctx.log,
                namespace=cfg.namespace,
                default_ttl=cfg.default_ttl,
                key_prefix=cfg.key_prefix,
                jitter=cfg.jitter,
                fail_open=cfg.fail_open,
                outage_backoff=cfg.outage_backoff,
                log_interval=cfg.log_interval,
                lock=cfg.lock,
                lock_ttl=cfg.lock_ttl,
                lock_wait=cfg.lock_wait,
            )
            metrics = find_metrics(ctx.registry)
            if metrics is not None:
                manager._sh.export_to(metrics)
            ctx.provide(manager, name="cache")
            ctx.log.info("cache ready", extra={"backend": cfg.backend, "namespace": cfg.namespace})
            try:
                yield
            finally:
                await manager.close()

    @hookimpl
    def kernel_health_checks(self, ctx: PluginContext[CacheConfig]) -> list[HealthCheck]:
        """A non-critical ``cache`` check: probes the backend, returns every namespace's stats."""

        async def probe() -> dict[str, Any]:
            from ._manager import CacheManager  # loaded by the lifespan already: no import cost here

            manager = ctx.registry.get(CacheManager)
            # Straight to the backend: the manager's own calls would fail open and hide an outage.
            await manager.backend.exists(manager.key("__health__"))
            return {name: s.to_dict() for name, s in manager.all_stats().items()}

        # The cache fails open, so its backend being down degrades the kernel rather than failing it;
        # the redis plugin's own check is the critical one.
        return [HealthCheck("cache", probe, critical=False)]


def find_metrics(registry: Registry) -> Metrics | None:
    """The metrics plugin's collector when it is enabled (``None`` when it is not installed)."""
    try:
        from kernel_metrics import Metrics
    except ImportError:  # not installed: nothing can have registered one
        return None
    return registry.find(Metrics)


async def _backend(ctx: PluginContext[CacheConfig], stack: AsyncExitStack) -> CacheBackend:
    from kernel_redis import use_redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from ._backends import MemoryBackend, RedisBackend

    cfg = ctx.config
    if cfg.backend == "memory":
        return MemoryBackend(cfg.max_entries)
    # Its own url, else the redis plugin's connection (or the host's Redis): kernel_redis.use_redis.
    redis = await stack.enter_async_context(use_redis(ctx.registry, "cache", url=cfg.url))
    # The cache's client: short timeouts and no retries, so a write is bounded by `timeout`
    # and an outage fails open at once instead of stalling requests.
    client = redis.new_client(
        pool_timeout=cfg.timeout,
        max_connections=cfg.max_connections,
        socket_timeout=cfg.timeout,
        socket_connect_timeout=cfg.timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
    # A client the host gave is shared by every consumer: used as is, never closed by the cache.
    # pool_timeout: on a cluster a burst past max_connections waits for a turn up to `timeout`.
    backend = RedisBackend(client, owns_client=client is not redis.client, pool_timeout=cfg.timeout)
    if isinstance(client, RedisCluster):
        await _learn_the_cluster(client, backend, ctx)
    return backend


async def _learn_the_cluster(
    client: RedisCluster, backend: RedisBackend, ctx: PluginContext[CacheConfig]
) -> None:
    """Fetch the slot map now: a cold cluster client hit by a burst of first commands re-initialises
    under them and drops their connections. Unreachable: the cache fails open and learns it later."""
    try:
        await client.initialize()
    except backend.outage_errors as exc:
        ctx.log.warning(
            "cache: the cluster is not reachable at startup (%s: %s); failing open until it is",
            type(exc).__name__,
            exc,
        )
