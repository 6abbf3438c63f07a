"""The ``redis`` plugin: owns the Redis connection (and the embedded server) for the kernel's lifetime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from importlib import metadata
from typing import TYPE_CHECKING

from kernel import CheckIssue, Command, HealthCheck, Plugin, PluginContext, Secret, hookimpl

from ._checks import check_settings
from ._config import EMBEDDED, RedisConfig
from ._layouts import KeyLayouts

if TYPE_CHECKING:  # redis-py (and the child-process helpers) are imported by the hooks that connect
    from ._connection import RedisConnection
    from ._server import RedisServer

log = logging.getLogger("kernel.plugins.redis")


class RedisPlugin(Plugin):
    """One shared Redis client (standalone, cluster or sentinel) for cache, event bus and queue."""

    name = "redis"
    version = metadata.version("milo-kernel-redis")  # one source: the distribution's pyproject.toml
    config_class = RedisConfig
    provides = ("redis", "redis.connection", "Redis", "RedisConnection", "RedisService", "KeyLayouts")
    description = "Redis connection (standalone, cluster, sentinel; TLS, health) or an embedded redis-server"

    @hookimpl
    def kernel_check(self, ctx: PluginContext[RedisConfig]) -> list[CheckIssue]:
        """Production rule: ``url = "embedded"`` is a private per-process server, not a shared Redis;
        and settings that cannot work with the URL's topology (:func:`~kernel_redis.check_settings`)."""
        issues = check_settings(ctx.config)
        if ctx.config.url.get_secret_value() == EMBEDDED:
            issues.append(
                CheckIssue.production(
                    "url",
                    'url = "embedded" runs a private redis-server per process: other processes (workers) '
                    "never see its data, and it is lost when the process ends; point url at a shared server",
                )
            )
        return issues

    @hookimpl
    def kernel_register(self, ctx: PluginContext[RedisConfig]) -> None:
        """Register the :class:`~kernel_redis.KeyLayouts` other plugins add their old key layouts to."""
        ctx.provide(KeyLayouts(), types=KeyLayouts)

    @hookimpl
    def kernel_cli_commands(self) -> list[Command]:
        """``kernel redis info`` and ``kernel redis migrate-keys``."""
        from ._cli import redis_command

        return [redis_command()]

    @hookimpl
    async def kernel_lifespan(self, ctx: PluginContext[RedisConfig]) -> AsyncIterator[None]:
        """Start the embedded server if asked, connect, check; register the client and the connection."""
        import redis.asyncio as aioredis

        from ._connection import RedisConnection
        from ._service import RedisService

        cfg = ctx.config
        server: RedisServer | None = None
        url = cfg.url
        if url.get_secret_value() == EMBEDDED:
            server = await start_embedded(cfg)
            url = Secret(server.url)
        try:
            connection = RedisConnection(url, cfg, server)
            try:
                if cfg.check_on_start:
                    await _check_reachable(connection)
                # A cluster's RedisCluster is not a redis.asyncio.Redis: registered by name only.
                client_type = aioredis.Redis if isinstance(connection.client, aioredis.Redis) else ()
                ctx.provide(connection.client, name="redis", types=client_type)
                ctx.provide(connection, name="redis.connection", types=(RedisService, RedisConnection))
                ctx.log.info(
                    "redis: connected to %s%s",
                    connection.redacted_url,
                    f" (embedded redis-server pid {server.pid})" if server else "",
                )
                yield
            finally:
                await connection.aclose()
        finally:
            if server is not None:
                await server.aclose()

    @hookimpl
    def kernel_health_checks(self, ctx: PluginContext[RedisConfig]) -> list[HealthCheck]:
        """Critical ``redis``: standalone and sentinel: the server (master) answers ``PING``; cluster:
        every primary answers and ``cluster_state`` is ``ok``. Sentinel adds the non-critical
        ``redis.sentinels``: a majority of the sentinels answer. Each within ``health_timeout``."""
        from ._url import topology_of

        timeout = ctx.config.health_timeout
        topology = topology_of(ctx.config.url)

        async def ping() -> bool:
            await _connection(ctx).ping()
            return True

        async def nodes() -> bool:
            from ._topology import RedisHealthError, inspect_topology

            # Two steps (the nodes' view, then every PING), each bounded: within the check's timeout.
            report = await inspect_topology(_connection(ctx), within=timeout * 0.4)
            problems = report.problems()
            if problems:
                raise RedisHealthError("; ".join(problems))
            return True

        async def sentinels() -> bool:
            from ._topology import RedisHealthError, inspect_topology

            report = await inspect_topology(_connection(ctx), within=timeout * 0.4)
            if report.sentinels_answering * 2 <= report.sentinels_total:
                raise RedisHealthError(
                    f"{report.sentinels_answering} of {report.sentinels_total} sentinels answer: "
                    "no majority to agree on a failover"
                )
            return True

        if topology == "cluster":
            return [HealthCheck("redis", nodes, critical=True, timeout=timeout)]
        checks = [HealthCheck("redis", ping, critical=True, timeout=timeout)]
        if topology == "sentinel":
            checks.append(HealthCheck("redis.sentinels", sentinels, critical=False, timeout=timeout))
        return checks


def _connection(ctx: PluginContext[RedisConfig]) -> RedisConnection:
    from ._connection import RedisConnection

    return ctx.registry.get(RedisConnection)


async def start_embedded(cfg: RedisConfig) -> RedisServer:
    """Start the private server described by ``[plugins.redis.embedded]`` and wait until it answers."""
    from ._server import RedisServer

    emb = cfg.embedded
    options: dict[str, str | bool] = {"appendonly": emb.appendonly}
    if emb.maxmemory:
        options["maxmemory"] = emb.maxmemory
    if emb.maxmemory_policy:
        options["maxmemory_policy"] = emb.maxmemory_policy
    server = RedisServer(
        binary=emb.binary,
        port=emb.port,
        unix_socket=emb.unix_socket,
        password=emb.password,
        data_dir=emb.data_dir,
        startup_timeout=emb.startup_timeout,
        **options,
    )
    await server.start_from_loop()
    log.debug("embedded redis-server %s started (pid %s)", server.binary, server.pid)
    return server


async def _check_reachable(connection: RedisConnection) -> None:
    from ._connection import TopologyMismatchError

    cfg = connection.config
    try:
        await connection.ping(within=cfg.socket_connect_timeout + cfg.health_timeout)
        await connection.check_topology()
    except TopologyMismatchError:
        raise
    except Exception as exc:
        raise ConnectionError(
            f"cannot reach Redis at {connection.redacted_url}: {type(exc).__name__}: {exc} "
            "(set [plugins.redis] check_on_start = false to boot anyway)"
        ) from exc
