"""Pub/sub on any topology: redis-py's asyncio ``RedisCluster`` has no ``pubsub()`` (7.4.1).

Classic ``PUBLISH`` on a Redis Cluster reaches every node (primaries and replicas), so a
subscriber may listen on any one of them. :func:`listener_client` gives a plain client for
``SUBSCRIBE``: the client itself on standalone and Sentinel (a Sentinel master client follows
failovers), and on a cluster a client whose connection goes to the first cluster node that
answers, trying the next one when it reconnects (a killed node is left behind).

A queue's job events are the exception on a cluster: a classic ``PUBLISH`` there is sent to
every node over the cluster bus, so the queue's scripts publish them on a *shard* channel
(``SPUBLISH``, Redis 7), which reaches only the nodes of the slot's shard.
:func:`channel_messages` reads them with ``SSUBSCRIBE`` on the slot's primary
(:func:`shard_messages`), following failovers and slot moves.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any

import anyio
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

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


def _node_settings(cluster: RedisCluster) -> tuple[type[Connection], dict[str, Any]]:
    """The connection class and settings (auth, TLS) of ``cluster``'s nodes, without a read timeout."""
    seeds = list(cluster.nodes_manager.startup_nodes.values())
    kwargs = dict(seeds[0].connection_kwargs) if seeds else {}
    kwargs.update(socket_timeout=None)  # a subscriber waits as long as it takes
    return (seeds[0].connection_class if seeds else Connection), kwargs


def listener_client(client: AnyRedis) -> tuple[aioredis.Redis, bool]:
    """A client whose ``pubsub()`` receives what ``client`` publishes; True when the caller must close it."""
    if not isinstance(client, RedisCluster):
        return client, False
    connection_class, kwargs = _node_settings(client)
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


async def channel_messages(
    client: AnyRedis, listener: aioredis.Redis, channel: str
) -> AsyncGenerator[Any, None]:
    """The data of every message on a queue's event ``channel``, from now on, until closed.

    On a cluster a shard channel (:func:`shard_messages`), else ``SUBSCRIBE`` through ``listener``
    (from :func:`listener_client`).
    """
    if isinstance(client, RedisCluster):
        messages = shard_messages(client, channel)
        try:
            async for data in messages:
                yield data
        except _NoShardChannels:  # Redis < 7: the scripts fell back to PUBLISH as well
            pass
        finally:
            await messages.aclose()
        async for data in _resubscribing(listener, channel):  # a classic PUBLISH reaches every node
            yield data
        return
    pubsub: Any = listener.pubsub()
    await pubsub.subscribe(channel)
    try:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message["type"] == "message":
                yield message["data"]
    finally:
        await pubsub.unsubscribe()
        await pubsub.aclose()


async def _resubscribing(listener: aioredis.Redis, channel: str) -> AsyncGenerator[Any, None]:
    """``SUBSCRIBE channel`` through ``listener`` (any cluster node), again on another node when its node
    is lost (failover): messages published while no node holds the subscription are missed."""
    delay = 0.0
    while True:
        pubsub: Any = listener.pubsub()
        try:
            await pubsub.subscribe(channel)
            delay = 0.0
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message["type"] == "message":
                    yield message["data"]
        except (RedisConnectionError, RedisTimeoutError, OSError):
            delay = min(max(delay * 2, 0.05), _RETRY_MAX)
        finally:
            await pubsub.aclose()  # closes its connection (no UNSUBSCRIBE on a connection that may be dead)
        await anyio.sleep(delay)


class _NoShardChannels(Exception):
    """The server has no ``SSUBSCRIBE`` (Redis < 7)."""


_RETRY_MAX = 1.0
"""Longest wait (s) between two attempts to subscribe again after a node was lost."""
_CONFIRM_TIMEOUT = 5.0
"""Seconds a node has to confirm ``SSUBSCRIBE``."""


async def shard_messages(cluster: RedisCluster, channel: str) -> AsyncGenerator[Any, None]:
    """The data of every message on shard ``channel`` (``SSUBSCRIBE`` on a node of its shard).

    Subscribes again when the connection drops (failover) or Redis unsubscribes us (the slot
    moved): on the node it had, else on any node the cluster client knows, following ``MOVED``
    (:func:`_subscribe`). Its own connections only: the cluster client is not asked to refresh.
    Messages sent while no node holds the subscription are missed, as with any Redis pub/sub.
    ``_NoShardChannels`` when the server has no ``SSUBSCRIBE``.
    """
    connection_class, kwargs = _node_settings(cluster)
    await cluster.initialize()
    address: tuple[str, int] | None = None
    delay = 0.0
    while True:
        try:
            connection = await _subscribe(connection_class, kwargs, channel, address, cluster_nodes(cluster))
        except (RedisConnectionError, RedisTimeoutError, MovedError, OSError):
            address = None
            delay = min(max(delay * 2, 0.05), _RETRY_MAX)
            await anyio.sleep(delay)
            continue
        delay = 0.0
        address = (connection.host, int(connection.port))
        try:
            while True:
                reply = await connection.read_response(timeout=1.0)
                kind = _kind(reply)
                if kind == "smessage":
                    yield reply[2]
                elif kind == "sunsubscribe":  # the slot left this node
                    address = None
                    break
        except (RedisConnectionError, RedisTimeoutError, OSError):
            address = None
        finally:
            await connection.disconnect()


_HOPS = 16
"""Nodes tried (redirections included) per attempt to subscribe."""


async def _subscribe(
    connection_class: type[Connection],
    kwargs: dict[str, Any],
    channel: str,
    first: tuple[str, int] | None,
    known: list[tuple[str, int]],
) -> Any:
    """A connection subscribed to shard ``channel``: on ``first``, else the ``known`` nodes in turn;
    a node of another shard answers ``MOVED`` and the node it names is tried next.

    Raises the last failure when none subscribed within :data:`_HOPS` tries.
    """
    candidates = deque(([first] if first else []) + known)
    failure: Exception = RedisConnectionError(f"no cluster node to subscribe to {channel!r}")
    for _ in range(_HOPS):
        if not candidates:
            break
        host, port = candidates.popleft()
        connection: Any = connection_class(**{**kwargs, "host": host, "port": port})
        subscribed = False
        try:
            await connection.connect()
            await connection.send_command("SSUBSCRIBE", channel)
            subscribed = _kind(await connection.read_response(timeout=_CONFIRM_TIMEOUT)) == "ssubscribe"
            if subscribed:
                return connection
            failure = RedisTimeoutError(f"{host}:{port} did not confirm SSUBSCRIBE {channel!r}")
        except MovedError as moved:
            candidates.appendleft((str(moved.host), int(moved.port)))
            failure = moved
        except ResponseError as exc:
            if "unknown command" in str(exc).lower():
                raise _NoShardChannels(str(exc)) from exc
            raise
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            failure = exc
        finally:
            if not subscribed:
                await connection.disconnect()
    raise failure


def _kind(reply: Any) -> str | None:
    """The kind of a pub/sub reply (``smessage``, ``ssubscribe``, ...), None for no reply."""
    if not isinstance(reply, list) or not reply:
        return None
    kind = reply[0]
    return kind.decode() if isinstance(kind, bytes) else str(kind)
