"""The ``cache`` plugin: registers a ``CacheManager`` on the memory or Redis backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from kernel import CheckIssue, HealthCheck, Plugin, PluginContext, hookimpl

from ._backends import CacheBackend, MemoryBackend, RedisBackend
from ._config import CacheConfig
from ._manager import CacheManager


class CachePlugin(Plugin):
    """Namespaced TTL cache; ``kernel.get(CacheManager).namespace("user")``."""

    name = "cache"
    version = "0.1.0"
    # Not a hard requirement: the memory backend needs no Redis. backend = "redis" checks at boot.
    optional = ("redis", "metrics")
    config_class = CacheConfig
    provides = ("cache", "CacheManager")
    install_hints = {"redis": "milo-kernel-redis", "metrics": "milo-kernel-metrics"}
    description = "Namespaced TTL cache (memory or Redis) with safe invalidation and single-flight get_or_set"

    @hookimpl
    def kernel_check(self, ctx: PluginContext[CacheConfig], enabled: frozenset[str]) -> list[CheckIssue]:
        cfg = ctx.config
        # A host may bring its own client: registered under "redis" before the kernel is built.
        if (cfg.backend == "redis" and cfg.url is None and "redis" not in enabled
                and ctx.registry.find("redis") is None):
            return [CheckIssue.error(
                "backend", "backend = 'redis' needs the redis plugin, or a server of the cache's own: "
                "[plugins.cache] url = \"redis://…\"", needs="redis")]
        return []

    @hookimpl
    async def kernel_lifespan(self, ctx: PluginContext[CacheConfig]) -> AsyncIterator[None]:
        cfg = ctx.config
        backend = _backend(ctx)
        manager = CacheManager(
            backend, ctx.log,
            namespace=cfg.namespace, default_ttl=cfg.default_ttl, key_prefix=cfg.key_prefix,
            jitter=cfg.jitter, fail_open=cfg.fail_open, outage_backoff=cfg.outage_backoff,
            log_interval=cfg.log_interval, lock=cfg.lock, lock_ttl=cfg.lock_ttl, lock_wait=cfg.lock_wait,
        )
        metrics = ctx.registry.find("metrics")
        if metrics is not None:
            if callable(getattr(metrics, "counter", None)):
                manager._sh.export_to(metrics)
            else:
                ctx.log.warning("metrics service %r has no counter() helper: cache stats not exported",
                                type(metrics).__qualname__)
        ctx.provide(manager, name="cache")
        ctx.log.info("cache ready", extra={"backend": cfg.backend, "namespace": cfg.namespace})
        try:
            yield
        finally:
            await manager.close()

    @hookimpl
    def kernel_health_checks(self, ctx: PluginContext[CacheConfig]) -> list[HealthCheck]:
        async def probe() -> dict[str, Any]:
            manager: CacheManager = ctx.registry.get("cache")
            # Straight to the backend: the manager's own calls would fail open and hide an outage.
            await manager.backend.exists(manager.key("__health__"))
            return {name: s.to_dict() for name, s in manager.all_stats().items()}

        # The cache fails open, so its backend being down degrades the kernel rather than failing it;
        # the redis plugin's own check is the critical one.
        return [HealthCheck("cache", probe, critical=False)]


def _backend(ctx: PluginContext[CacheConfig]) -> CacheBackend:
    cfg = ctx.config
    if cfg.backend == "memory":
        return MemoryBackend(cfg.max_entries)
    # The cache's clients: short timeouts and no retries, so a write is bounded by `timeout`
    # and an outage fails open at once instead of stalling requests.
    limits: dict[str, Any] = {
        "socket_timeout": cfg.timeout, "socket_connect_timeout": cfg.timeout, "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }
    if cfg.url is not None:
        pool = aioredis.BlockingConnectionPool.from_url(
            cfg.url.get_secret_value(), timeout=cfg.timeout, max_connections=cfg.max_connections, **limits
        )
        return RedisBackend(aioredis.Redis.from_pool(pool), owns_client=True)
    connection = ctx.registry.find("redis.connection")
    if connection is None:
        client = ctx.registry.find("redis")
        if client is not None:  # a client registered (or overridden) by the host: used as is
            return RedisBackend(client)
        raise RuntimeError(
            "[plugins.cache] backend = 'redis' needs the redis plugin: add \"redis\" to [kernel] plugins "
            "(pip install milo-kernel-redis), or give the cache its own server: [plugins.cache] url = \"redis://…\""
        )
    client = connection.new_client(pool_timeout=cfg.timeout, max_connections=cfg.max_connections, **limits)
    return RedisBackend(client, owns_client=True)
