"""The shared connection: effective URL, the main client and extra clients on the same deployment."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Unpack, cast

import anyio
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff

from kernel import Secret, redact_url

from ._clients import AnyRedis, build_client, is_tls
from ._config import RedisConfig
from ._durability import DEFAULT_MARGIN, NodeClients, WriteFn, cluster_write_and_wait, write_and_wait
from ._observe import RedisObserver, observe_client
from ._server import RedisServer
from ._url import Topology, parse_multi_host, topology_of

if TYPE_CHECKING:
    from ._service import ClientOptions


class TopologyMismatchError(ConnectionError):
    """The URL names one topology, the server it reaches another (``redis://`` to a cluster node)."""


class RedisConnection:
    """The ``redis`` plugin's :class:`~kernel_redis.RedisService`: registered under that type, its own
    type and the name ``"redis.connection"``.

    ``url`` is the effective URL (with the embedded server's address and password)
    as a :class:`~kernel.Secret`; its scheme names the :attr:`topology`. :attr:`client` and
    :meth:`new_client` are ``redis.asyncio.Redis`` (standalone; sentinel: bound to the master,
    following a failover) or ``redis.asyncio.cluster.RedisCluster`` (cluster), with the plugin's
    settings, e.g. one without a socket timeout for blocking reads::

        conn = ctx.registry.get(RedisService)
        blocking = conn.new_client(socket_timeout=None)

    Clients from :meth:`new_client` are for the caller's lifetime (make them at
    start-up); the caller may close one early, and every one, dropped or not, is
    closed when the connection closes (the plugin stops after its consumers).
    """

    def __init__(self, url: Secret, config: RedisConfig, server: RedisServer | None = None) -> None:
        self.url = url
        self.config = config
        self.server = server
        """The embedded server, when ``url = "embedded"``."""
        # Held strongly: a consumer may drop its client without closing it; aclose() still closes it.
        self._extra: list[AnyRedis] = []
        self.observer: RedisObserver | None = None
        """Told about every command of the clients built here (tracing); see :meth:`set_observer`."""
        self.client: AnyRedis = self._build({})
        # Made on first use by wait_replicated: no socket timeout (WAIT blocks up to its own timeout).
        self._replication: AnyRedis | None = None
        self._nodes = NodeClients(self._node_client)

    @property
    def topology(self) -> Topology:
        """``"standalone"``, ``"cluster"`` or ``"sentinel"``, as the URL's scheme names it."""
        return topology_of(self.url)

    @property
    def embedded(self) -> bool:
        """True when the server is this process's private one (``url = "embedded"``)."""
        return self.server is not None

    @property
    def redacted_url(self) -> str:
        """The effective URL with the password masked (for logs)."""
        return redact_url(self.url.get_secret_value())

    def client_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Client settings the plugin uses, with ``overrides``: redis-py connection keywords plus
        ``pool_timeout`` (> 0: a blocking pool waiting that long for a free connection; not for a
        cluster, whose client has no blocking pool)."""
        return client_settings(self.config, url=self.url.get_secret_value(), **overrides)

    def new_client(self, **overrides: Unpack[ClientOptions]) -> AnyRedis:
        """Another client on the same deployment (own pool) with ``overrides`` over the plugin's settings."""
        client = self._build(dict(overrides))
        self._extra.append(client)
        return client

    def _build(self, overrides: dict[str, Any]) -> AnyRedis:
        client = build_client(self.url.get_secret_value(), self.client_kwargs(**overrides))
        if self.observer is not None:
            observe_client(client, self.observer)
        return client

    def set_observer(self, observer: RedisObserver | None) -> None:
        """Tell ``observer`` about every command and pipeline of :attr:`client` and of the clients
        :meth:`new_client` made or makes (None: stop). Without one, the clients are redis-py's own,
        untouched. Clients of a plugin's own ``url`` and a host's client are not observed."""
        self.observer = observer
        for client in (self.client, *self._extra):
            observe_client(client, observer)
        if self._replication is not None:
            observe_client(self._replication, observer)

    async def wait_replicated(
        self,
        key: str | bytes,
        write: WriteFn,
        *,
        replicas: int,
        timeout: float,  # noqa: ASYNC109 - WAIT's own timeout (the replicas' deadline)
    ) -> tuple[list[Any], int]:
        """Run the writes ``write(pipe)`` queues, then ``WAIT replicas timeout``, on one connection to
        the primary owning ``key``'s slot (standalone and sentinel: the master).

        Returns (write results, replicas that acknowledged them); raises
        :class:`~kernel_redis.ReplicationTimeoutError` when fewer than ``replicas`` did within
        ``timeout`` seconds (the writes are on the primary anyway). The writes are pipelined, not a
        ``MULTI`` transaction (use a Lua script for atomicity); they touch ``key``'s slot only.
        """
        margin = self.config.socket_timeout or DEFAULT_MARGIN
        if self.topology == "cluster":
            return await cluster_write_and_wait(
                cast("RedisCluster", self.client),
                self._nodes,
                key,
                write,
                replicas=replicas,
                timeout=timeout,
                attempts=self.config.retries + 1,
                margin=margin,
            )
        if self._replication is None:
            self._replication = self._build({"socket_timeout": None})
        client = cast("aioredis.Redis", self._replication)
        return await write_and_wait(client, key, write, replicas=replicas, timeout=timeout, margin=margin)

    def node_client(self, host: str, port: int) -> aioredis.Redis:
        """The plain client of one cluster node (made once; no socket timeout: bound each call), e.g. for
        a command on that node only. Closed with the connection."""
        return self._nodes.get(host, port)

    def _node_client(self, host: str, port: int) -> aioredis.Redis:
        """A plain client of one cluster node, with the plugin's settings and no socket timeout."""
        parsed = parse_multi_host(self.url)
        settings = self.client_kwargs(socket_timeout=None)
        settings.pop("pool_timeout")
        settings.update(host=host, port=port, username=parsed.username, password=parsed.password)
        if parsed.tls:
            settings["ssl"] = True
        return aioredis.Redis(**settings)

    async def ping(self, within: float | None = None) -> float:
        """PING through the shared client; the round trip in seconds.

        Raises on failure, or ``TimeoutError`` after ``within`` seconds (default ``health_timeout``).
        """
        limit = self.config.health_timeout if within is None else within
        t0 = time.perf_counter()
        with anyio.fail_after(limit):
            if isinstance(self.client, RedisCluster):  # every primary (a replica down is no outage)
                await cast("Awaitable[bool]", self.client.ping(target_nodes=RedisCluster.PRIMARIES))
            else:
                await cast("Awaitable[bool]", self.client.ping())
        return time.perf_counter() - t0

    async def check_topology(self, within: float | None = None) -> None:
        """Raise :class:`~kernel_redis.TopologyMismatchError` when the server is not what the URL says:
        a ``redis://`` URL (or a sentinel's master) that reaches a Redis Cluster node or a Sentinel.

        (A cluster URL that reaches a server without cluster mode fails in the cluster client itself.)
        """
        if isinstance(self.client, RedisCluster):
            return
        limit = self.config.health_timeout if within is None else within
        with anyio.fail_after(limit):
            info = await self.client.info("server")
        mode = str(info.get("redis_mode", "standalone"))
        if mode == "cluster":
            raise TopologyMismatchError(
                f"{self.redacted_url} reaches a Redis Cluster node: write the url as "
                "redis+cluster://host:port[,host:port…] (a plain client would fail on every key of "
                "another node with MOVED)"
            )
        if mode == "sentinel":
            raise TopologyMismatchError(
                f"{self.redacted_url} reaches a Sentinel, not a data server: write the url as "
                "redis+sentinel://host:port[,host:port…]/<service>[/db]"
            )

    async def aclose(self) -> None:
        """Close the shared client and every extra client still open."""
        for client in self._extra:
            await client.aclose()
        self._extra.clear()
        if self._replication is not None:
            await self._replication.aclose()
            self._replication = None
        await self._nodes.aclose()
        await self.client.aclose()

    def __repr__(self) -> str:
        return f"<RedisConnection {self.redacted_url}>"


def client_settings(config: RedisConfig, url: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The client settings ``config`` implies for ``url`` (default: ``config.url``), with ``overrides``."""
    cfg = config
    kwargs: dict[str, Any] = {
        "decode_responses": False,
        "max_connections": cfg.max_connections,
        "pool_timeout": cfg.pool_timeout,
        "socket_timeout": cfg.socket_timeout,
        "socket_connect_timeout": cfg.socket_connect_timeout,
        "health_check_interval": cfg.health_check_interval,
        "retry": Retry(EqualJitterBackoff(cap=1.0, base=0.05), cfg.retries),
        "client_name": cfg.client_name,
    }
    if is_tls(url if url is not None else cfg.url.get_secret_value()):
        kwargs["ssl_cert_reqs"] = cfg.ssl_cert_reqs
        if cfg.ssl_ca_certs is not None:
            kwargs["ssl_ca_certs"] = str(cfg.ssl_ca_certs)
    kwargs.update(overrides)
    return kwargs
