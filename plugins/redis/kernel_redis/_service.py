"""The Redis other plugins use: its public type, and the one rule that finds it.

A consumer (cache, event bus, queue, a plugin of yours) never reads the ``redis`` plugin's config
or resolves a client by name; it asks :func:`use_redis` and gets a :class:`RedisService`::

    async with use_redis(ctx.registry, "cache", url=cfg.url) as redis:
        client = redis.new_client(socket_timeout=None)  # e.g. for blocking reads
        ...

The rule: the plugin's own ``url`` when it has one, else the :class:`RedisService` in the registry
(the ``redis`` plugin's connection, or whatever the host registered or overrode under that type),
else a client the host registered as ``"redis"`` without the redis plugin, else
:class:`RedisUnavailableError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypedDict, Unpack, runtime_checkable

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry

from kernel import Registry, Secret

from ._clients import AnyRedis
from ._config import RedisConfig
from ._connection import RedisConnection, TopologyMismatchError
from ._durability import NodeClients, WriteFn, cluster_write_and_wait, write_and_wait
from ._url import Topology

HOST_CLIENT_NAME = "redis"
"""Name under which the redis plugin registers its shared client, and a host without it may put its own."""


class ClientOptions(TypedDict, total=False):
    """Settings a consumer may override in :meth:`RedisService.new_client` (redis-py client keywords)."""

    max_connections: int
    """Per node on a cluster."""
    pool_timeout: float
    """> 0: a pool that waits this long for a free connection; 0: fail at once when all are busy.
    Not used on a cluster (its client has no blocking pool)."""
    socket_timeout: float | None
    """``None`` for clients doing blocking reads (``BLPOP``, ``XREAD BLOCK``)."""
    socket_connect_timeout: float | None
    health_check_interval: float
    retry: Retry
    client_name: str | None


@runtime_checkable
class RedisService(Protocol):
    """The Redis connection the ``redis`` plugin offers to other plugins (registered under this type).

    :class:`~kernel_redis.RedisConnection` implements it. A host replaces Redis for every consumer at
    once by registering (or overriding) another implementation under ``RedisService``.
    """

    @property
    def client(self) -> AnyRedis:
        """The shared client (consumers never close it): ``redis.asyncio.Redis`` (standalone; sentinel:
        bound to the master) or ``redis.asyncio.cluster.RedisCluster`` (cluster)."""
        ...

    @property
    def topology(self) -> Topology:
        """``"standalone"``, ``"cluster"`` or ``"sentinel"``."""
        ...

    @property
    def embedded(self) -> bool:
        """True for a private server of this process (``url = "embedded"``): no other process sees it."""
        ...

    @property
    def redacted_url(self) -> str:
        """The URL with the password masked, for logs and messages."""
        ...

    def new_client(self, **options: Unpack[ClientOptions]) -> AnyRedis:
        """Another client on the same deployment (same kind as :attr:`client`) with ``options`` over the
        service's settings.

        The service closes it when it stops; a caller may close it earlier.
        """
        ...

    async def wait_replicated(
        self,
        key: str | bytes,
        write: WriteFn,
        *,
        replicas: int,
        timeout: float,  # noqa: ASYNC109 - WAIT's own timeout (the replicas' deadline)
    ) -> tuple[list[Any], int]:
        """Run the writes ``write(pipe)`` queues on a ``redis.asyncio`` pipeline, then
        ``WAIT replicas timeout``, on one connection to the primary owning ``key``'s slot
        (standalone and sentinel: the master).

        Returns (write results, replicas acknowledged); raises
        :class:`~kernel_redis.ReplicationTimeoutError` when fewer acknowledged within ``timeout`` s.
        """
        ...


class RedisUnavailableError(RuntimeError):
    """A plugin needs Redis, but has no ``url`` of its own and no Redis service is registered."""

    def __init__(self, plugin: str, *, setting: str | None = "url", alternative: str | None = None) -> None:
        self.plugin = plugin
        self.setting = setting
        fix = 'add "redis" to [kernel] plugins (pip install milo-kernel-redis)'
        if setting is not None:
            fix += f', or give it a server of its own: [plugins.{plugin}] {setting} = "redis://…"'
        if alternative is not None:
            fix += f", or {alternative}"
        super().__init__(f"plugin {plugin!r} needs Redis, but none is available: {fix}")


class HostClient:
    """A :class:`RedisService` around a client the host registered as ``"redis"``: used as is.

    A ``redis.asyncio.Redis`` (standalone or sentinel: the topology is ``"standalone"``, as nothing
    tells them apart) or a ``redis.asyncio.cluster.RedisCluster``. Every consumer shares that one
    client (:meth:`new_client` returns it, options ignored), and no consumer closes it: the host owns it.
    """

    embedded = False

    def __init__(self, client: AnyRedis) -> None:
        self._client = client

    @property
    def client(self) -> AnyRedis:
        """The host's client."""
        return self._client

    @property
    def topology(self) -> Topology:
        """``"cluster"`` for a ``RedisCluster``, else ``"standalone"``."""
        return "cluster" if isinstance(self._client, RedisCluster) else "standalone"

    @property
    def redacted_url(self) -> str:
        """A description of the host's client (its URL is not known here)."""
        return f"<client given by the host: {type(self._client).__qualname__}>"

    def new_client(self, **options: Unpack[ClientOptions]) -> AnyRedis:
        """The host's client itself: a host that brings its own client decides its settings."""
        return self._client

    async def wait_replicated(
        self,
        key: str | bytes,
        write: WriteFn,
        *,
        replicas: int,
        timeout: float,  # noqa: ASYNC109 - WAIT's own timeout (the replicas' deadline)
    ) -> tuple[list[Any], int]:
        """:meth:`RedisService.wait_replicated` through the host's client (on a cluster: a client per
        primary with the cluster client's connection settings, made and closed per call). The host's
        own client keeps its socket timeout: it must exceed ``timeout``."""
        client = self._client
        if not isinstance(client, RedisCluster):
            return await write_and_wait(client, key, write, replicas=replicas, timeout=timeout)
        nodes = NodeClients(lambda host, port: _node_of(client, host, port))
        try:
            return await cluster_write_and_wait(client, nodes, key, write, replicas=replicas, timeout=timeout)
        finally:
            await nodes.aclose()


def _node_of(cluster: RedisCluster, host: str, port: int) -> aioredis.Redis:
    """A plain client of one node with ``cluster``'s connection settings."""
    kwargs: dict[str, Any] = dict(cluster.get_connection_kwargs())
    kwargs.pop("response_callbacks", None)  # the cluster's own; the plain client has its defaults
    kwargs["socket_timeout"] = None  # WAIT blocks up to its own timeout
    pool = aioredis.ConnectionPool(host=host, port=port, **kwargs)
    return aioredis.Redis.from_pool(pool)


def redis_available(registry: Registry) -> bool:
    """Whether :func:`use_redis` would find a Redis without a ``url`` of the plugin's own (for checks).

    Before boot only services registered by the host are there: a check also accepts ``"redis"`` among
    the enabled plugins.
    """
    return registry.find(RedisService) is not None or registry.find(HOST_CLIENT_NAME) is not None


def find_redis(
    registry: Registry, plugin: str, *, setting: str | None = "url", alternative: str | None = None
) -> RedisService:
    """The registry's Redis for ``plugin`` (no ``url`` of its own); raises :class:`RedisUnavailableError`.

    ``setting`` names the plugin's own URL setting in the error's advice (``None``: it has none);
    ``alternative`` is one more way out for it (``'set adapter = "memory"'``).
    """
    service = registry.find(RedisService)
    if service is not None:
        return service
    client = registry.find(HOST_CLIENT_NAME)
    if client is None:
        raise RedisUnavailableError(plugin, setting=setting, alternative=alternative)
    if not isinstance(client, (aioredis.Redis, RedisCluster)):
        raise TypeError(
            f"plugin {plugin!r}: the service registered as {HOST_CLIENT_NAME!r} is a "
            f"{type(client).__qualname__}, not a redis.asyncio.Redis or RedisCluster "
            "(register a RedisService instead)"
        )
    return HostClient(client)


@asynccontextmanager
async def use_redis(
    registry: Registry, plugin: str, *, url: Secret | None = None, setting: str | None = "url"
) -> AsyncIterator[RedisService]:
    """The Redis ``plugin`` uses, for the duration of the block: its own ``url`` when set, else
    :func:`find_redis`.

    A connection built from ``url`` gets the ``redis`` plugin's default settings and is closed (with
    every client made from it) when the block ends. When its server answers, a URL whose topology
    does not match it (``redis://`` to a cluster node or a sentinel) raises
    :class:`~kernel_redis.TopologyMismatchError`.
    """
    if url is None:
        yield find_redis(registry, plugin, setting=setting)
        return
    own = RedisConnection(url, RedisConfig(url=url, check_on_start=False))
    try:
        await _check_topology(own)
        yield own
    finally:
        await own.aclose()


async def _check_topology(connection: RedisConnection) -> None:
    """Fail on a URL of one topology that reaches a server of another (a ``redis://`` URL to a cluster
    node); an unreachable server is the plugin's to handle (it may fail open), so it passes here."""
    try:
        await connection.check_topology()
    except TopologyMismatchError:
        raise
    except Exception:  # unreachable or slow: not a mismatch; the plugin's own error handling applies
        return
