"""Clients of every topology from one URL: standalone, Redis Cluster and Sentinel, async and sync.

``settings`` are the plugin's client settings (``RedisConnection.client_kwargs``): redis-py
connection keywords plus ``pool_timeout`` (> 0: wait that long for a free pooled connection).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeAlias, cast

import redis
import redis.asyncio as aioredis
import redis.cluster
import redis.sentinel
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from kernel import Secret

from ._url import MultiHostUrl, parse_multi_host, topology_of

AnyRedis: TypeAlias = aioredis.Redis | RedisCluster
"""The shared client of any topology: ``redis.asyncio.Redis`` (standalone, sentinel master) or
``redis.asyncio.cluster.RedisCluster``."""
AnySyncRedis: TypeAlias = redis.Redis | redis.cluster.RedisCluster
"""The sync client :func:`connect_sync` returns."""

TLS_SCHEMES = ("rediss", "rediss+cluster", "rediss+sentinel")
_SSL_KEYS = ("ssl_cert_reqs", "ssl_ca_certs")
# Settings the sentinels' own connections take from the master's (redis-py does the same for socket_*).
_SENTINEL_SHARED = ("socket_timeout", "socket_connect_timeout", "retry", "decode_responses")


def is_tls(url: str) -> bool:
    """Whether the URL's scheme asks for TLS (``rediss://``, ``rediss+cluster://``, ``rediss+sentinel://``)."""
    return url.partition("://")[0] in TLS_SCHEMES


class SentinelMasterClient(aioredis.Redis):
    """A ``redis.asyncio.Redis`` bound to a Sentinel service's master (``Sentinel.master_for``).

    It follows a failover by itself; closing it also closes its connections to the sentinels.
    """

    sentinel_manager: Sentinel | None = None
    """The sentinels this client asks for the master's address."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the client, its pool and its sentinel connections."""
        await super().aclose(close_connection_pool)
        sentinel, self.sentinel_manager = self.sentinel_manager, None
        if sentinel is not None:
            for client in sentinel.sentinels:
                await client.aclose()


class SyncSentinelMasterClient(redis.Redis):
    """The sync :class:`SentinelMasterClient`: closing it also closes its sentinel connections."""

    sentinel_manager: redis.sentinel.Sentinel | None = None

    def close(self) -> None:
        """Close the client, its pool and its sentinel connections."""
        super().close()
        sentinel, self.sentinel_manager = self.sentinel_manager, None
        if sentinel is not None:
            for client in sentinel.sentinels:
                client.close()


class InitializingRedisCluster(RedisCluster):
    """``redis.asyncio.cluster.RedisCluster`` that finishes (re)initializing before it routes a command.

    redis-py 7.4.1 (``redis/asyncio/cluster.py``, ``RedisCluster.execute_command``) picks a command's
    target before it initializes: while the client is uninitialized (first use, or after it closed
    itself on ClusterDown, SlotNotCovered or every ``reinitialize_steps``-th MOVED) it knows no default
    node, so a keyed command is routed keyless, to a random primary, and gets MOVED. A burst of such
    commands (e.g. 1,500 concurrent first SETs: ~800 MOVEDs) reaches ``reinitialize_steps`` again and
    again, and each time ``RedisCluster.aclose()`` disconnects every connection of every node, the ones
    other commands are using too: they fail with ``ConnectionError`` or ``AttributeError: 'NoneType'
    object has no attribute 'writelines'``. Initializing first routes by slot (no MOVED). No upstream
    issue for the routing found; the MOVED/aclose path: https://github.com/redis/redis-py/pull/4322.
    Cost: one attribute check per command (cluster clients only).
    """

    def execute_command(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        """The command, after :meth:`initialize` when the client is not (or no longer) initialized."""
        if self._initialize:
            return self._initialized_command(args, kwargs)
        return super().execute_command(*args, **kwargs)

    async def _initialized_command(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        await self.initialize()
        return await RedisCluster.execute_command(self, *args, **kwargs)


class BlockingSentinelConnectionPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """A Sentinel master pool that waits ``timeout`` seconds for a free connection when all are busy."""


def build_client(url: str, settings: dict[str, Any]) -> AnyRedis:
    """An async client of the topology ``url`` names, with ``settings`` (see the module docstring)."""
    topology = topology_of(url)
    if topology == "standalone":
        return _standalone(url, dict(settings))
    parsed = parse_multi_host(url)
    if topology == "cluster":
        return _cluster(parsed, dict(settings))
    return _sentinel(parsed, dict(settings))


def _standalone(url: str, settings: dict[str, Any]) -> aioredis.Redis:
    pool_timeout = settings.pop("pool_timeout", 0)
    pool: aioredis.ConnectionPool
    if pool_timeout:
        # A burst beyond max_connections waits for a free connection instead of failing
        # with "Too many connections" (redis-py's default pool).
        pool = aioredis.BlockingConnectionPool.from_url(url, timeout=pool_timeout, **settings)
    else:
        pool = aioredis.ConnectionPool.from_url(url, **settings)
    return aioredis.Redis.from_pool(pool)


def _tls(parsed: MultiHostUrl, settings: dict[str, Any]) -> dict[str, Any]:
    """``ssl=True`` and the certificate settings for a TLS URL; nothing (and no ssl_* key) otherwise."""
    ssl = {k: settings.pop(k) for k in _SSL_KEYS if k in settings}
    return {"ssl": True, **ssl} if parsed.tls else {}


def _cluster(parsed: MultiHostUrl, settings: dict[str, Any]) -> RedisCluster:
    # The cluster client keeps max_connections per node and has no blocking pool: pool_timeout
    # does not apply (a burst beyond it raises MaxConnectionsError).
    settings.pop("pool_timeout", None)
    return InitializingRedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.hosts],
        username=parsed.username,
        password=parsed.password,
        **_tls(parsed, settings),
        **settings,
    )


def _sentinel_settings(
    parsed: MultiHostUrl, settings: dict[str, Any], tls: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings of the sentinels' own connections, and those of the master client (async or sync)."""
    sentinels = {k: settings[k] for k in _SENTINEL_SHARED if k in settings}
    sentinels.update(username=parsed.sentinel_username, password=parsed.sentinel_password, **tls)
    master = dict(db=parsed.db, username=parsed.username, password=parsed.password, **tls, **settings)
    return sentinels, master


def _sentinel(parsed: MultiHostUrl, settings: dict[str, Any]) -> SentinelMasterClient:
    tls = _tls(parsed, settings)
    pool_timeout = settings.pop("pool_timeout", 0)
    pool_class: type[SentinelConnectionPool] = SentinelConnectionPool
    if pool_timeout:
        pool_class = BlockingSentinelConnectionPool
        settings["timeout"] = pool_timeout
    sentinel_kwargs, master = _sentinel_settings(parsed, settings, tls)
    sentinel = Sentinel(list(parsed.hosts), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    assert parsed.service is not None  # parse_multi_host requires it for a sentinel URL
    client = cast(
        "SentinelMasterClient",
        sentinel.master_for(
            parsed.service, redis_class=SentinelMasterClient, connection_pool_class=pool_class, **master
        ),
    )
    client.sentinel_manager = sentinel
    return client


def connect(url: str | Secret, **options: Any) -> AnyRedis:
    """An async client for any URL form, with the ``redis`` plugin's default settings and ``options``
    (redis-py keywords) over them. The caller closes it (``await client.aclose()``).

    It connects on its first command; ``client = await connect(url)`` connects at once (a cluster
    client then knows its nodes).
    """
    from ._config import RedisConfig
    from ._connection import client_settings

    value = url.get_secret_value() if isinstance(url, Secret) else url
    config = RedisConfig(url=Secret(value), check_on_start=False)
    return build_client(value, client_settings(config, **options))


def connect_sync(url: str | Secret, **options: Any) -> AnySyncRedis:
    """A sync redis-py client of the kind the URL names (for tests, scripts and CLI tools):
    ``redis.Redis`` (standalone, or a Sentinel master), or ``redis.cluster.RedisCluster``.

    ``options`` are redis-py keywords; the caller closes the client (``client.close()``).
    """
    value = url.get_secret_value() if isinstance(url, Secret) else url
    topology = topology_of(value)
    if topology == "standalone":
        return redis.Redis.from_url(value, **options)
    parsed = parse_multi_host(value)
    tls: dict[str, Any] = {"ssl": True} if parsed.tls else {}
    if topology == "cluster":
        return redis.cluster.RedisCluster(
            startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in parsed.hosts],  # type: ignore[no-untyped-call]
            username=parsed.username,
            password=parsed.password,
            **tls,
            **options,
        )
    sentinel_kwargs, master = _sentinel_settings(parsed, options, tls)
    sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(parsed.hosts), sentinel_kwargs=sentinel_kwargs
    )
    assert parsed.service is not None
    client = cast(
        "SyncSentinelMasterClient",
        sentinel.master_for(parsed.service, redis_class=SyncSentinelMasterClient, **master),  # type: ignore[no-untyped-call]
    )
    client.sentinel_manager = sentinel
    return client
