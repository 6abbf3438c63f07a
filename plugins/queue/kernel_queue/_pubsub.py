"""Pub/sub on any topology: redis-py's asyncio ``RedisCluster`` has no ``pubsub()`` (7.4.1).

Classic ``PUBLISH`` on a Redis Cluster reaches every node (primaries and replicas), so a
subscriber may listen on any one of them. :func:`listener_client` gives a plain client for
``SUBSCRIBE``: the client itself on standalone and Sentinel (a Sentinel master client follows
failovers), and on a cluster a client whose connection goes to the first cluster node that
answers, trying the next one when it reconnects (a killed node is left behind).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, ConnectionPool

if TYPE_CHECKING:
    from kernel_redis import AnyRedis


def cluster_nodes(cluster: RedisCluster) -> list[tuple[str, int]]:
    """``(host, port)`` of every node the cluster client knows (its seeds before it first connected)."""
    nodes = cluster.get_nodes() or list(cluster.nodes_manager.startup_nodes.values())
    return [(node.host, int(node.port)) for node in nodes]


def _any_node_connection(base: type[Connection]) -> type[Connection]:
    """``base`` (plain or TLS connection) connecting to the first node of a list that answers."""

    class AnyNodeConnection(base):  # type: ignore[valid-type,misc]
        def __init__(self, *, nodes: Callable[[], list[tuple[str, int]]], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._nodes = nodes

        async def _connect(self) -> None:
            failure: BaseException | None = None
            for host, port in self._nodes():
                self.host, self.port = host, port
                try:
                    await super()._connect()
                    return
                except (TimeoutError, OSError) as exc:
                    failure = exc
            raise failure or ConnectionRefusedError("no cluster node known")

    return AnyNodeConnection


def listener_client(client: AnyRedis) -> tuple[aioredis.Redis, bool]:
    """A client whose ``pubsub()`` receives what ``client`` publishes; True when the caller must close it."""
    if not isinstance(client, RedisCluster):
        return client, False
    seeds = list(client.nodes_manager.startup_nodes.values())
    kwargs = dict(seeds[0].connection_kwargs) if seeds else {}
    kwargs.update(socket_timeout=None)  # a subscriber waits as long as it takes
    connection_class = seeds[0].connection_class if seeds else Connection
    pool = ConnectionPool(
        connection_class=_any_node_connection(connection_class),
        nodes=lambda: cluster_nodes(client),
        **kwargs,
    )
    return aioredis.Redis(connection_pool=pool), True


async def close_listener(listener: aioredis.Redis) -> None:
    """Close a client from :func:`listener_client` (and its pool)."""
    await listener.aclose()
    await listener.connection_pool.disconnect()
