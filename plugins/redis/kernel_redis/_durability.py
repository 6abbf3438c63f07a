"""Replicated writes: run a few writes and ``WAIT`` for replicas on one connection to the key's primary.

Redis replication is asynchronous: a write a primary acknowledged can vanish if it dies before a
replica copied it. ``WAIT numreplicas timeout`` blocks until that many replicas acknowledged every
write *of the same connection*, so the writes and the ``WAIT`` share one connection (one pipeline,
one round trip) to the primary owning the key's slot (standalone and sentinel: the master).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError, MovedError, TimeoutError

from ._url import key_slot

WriteFn = Callable[[Pipeline], object]
"""Queues the writes on the pipeline it is given (its return value is ignored)."""
NodeFactory = Callable[[str, int], aioredis.Redis]
"""Builds a client of one cluster node from its host and port."""

DEFAULT_MARGIN = 5.0
"""Seconds a replicated write may take beyond its ``WAIT`` timeout before it is abandoned."""


class ReplicationTimeoutError(RuntimeError):
    """Fewer replicas than asked acknowledged the writes within the timeout.

    The writes were applied on the primary (``results``); they may still replicate, or be lost if
    the primary fails first. ``acknowledged`` replicas had them when ``WAIT`` returned.
    """

    def __init__(
        self, key: str | bytes, acknowledged: int, required: int, timeout: float, results: list[Any]
    ):
        self.key = key
        self.acknowledged = acknowledged
        self.required = required
        self.timeout = timeout
        self.results = results
        super().__init__(
            f"writes to {key!r} were acknowledged by {acknowledged} of {required} replica(s) within "
            f"{timeout:g}s: they are on the primary, and lost if it fails before they replicate"
        )


class CrossSlotWriteError(ValueError):
    """On a cluster, a replicated write touched a key outside the slot of its ``key`` (nothing was sent)."""

    def __init__(self, key: str | bytes, other: str | bytes, slot: int) -> None:
        self.key, self.other, self.slot = key, other, slot
        super().__init__(
            f"a write queued for {key!r} (slot {key_slot(key)}) touches {other!r} (slot {slot}): every key "
            f"of a replicated write must share the hash tag of {key!r}; nothing was written"
        )


def _keys_of(args: tuple[Any, ...]) -> list[Any] | None:
    """The keys of ``EVAL``/``EVALSHA``/``FCALL`` (``None``: ask the commands parser)."""
    name = str(args[0]).upper()
    if name in ("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO") and len(args) > 2:
        return list(args[3 : 3 + int(args[2])])
    return None


def slot_check(cluster: RedisCluster, key: str | bytes) -> Callable[[Pipeline], Awaitable[None]]:
    """A ``check`` for :func:`write_and_wait` refusing any queued command with a key of another slot."""
    slot = key_slot(key)

    async def check(pipe: Pipeline) -> None:
        for args, _options in pipe.command_stack:
            keys = _keys_of(args)
            if keys is None:
                keys = list(await cluster.commands_parser.get_keys(*args) or ())
            for other in keys:
                other_slot = cluster.keyslot(other)
                if other_slot != slot:
                    raise CrossSlotWriteError(key, other, other_slot)

    return check


def _check(replicas: int, timeout: float) -> int:
    """``timeout`` in whole milliseconds for ``WAIT`` (never 0, which would block forever)."""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    if not timeout > 0 or math.isinf(timeout):
        raise ValueError(f"timeout must be a finite number of seconds > 0, got {timeout}")
    return max(1, math.ceil(timeout * 1000))


async def write_and_wait(
    client: aioredis.Redis,
    key: str | bytes,
    write: WriteFn,
    *,
    replicas: int,
    timeout: float,  # noqa: ASYNC109 - WAIT's own timeout (the replicas' deadline)
    margin: float = DEFAULT_MARGIN,
    check: Callable[[Pipeline], Awaitable[None]] | None = None,
) -> tuple[list[Any], int]:
    """``write(pipe)``'s commands, then ``WAIT replicas timeout``, in one pipeline (one connection).
    ``check(pipe)`` may refuse the queued commands before anything is sent.

    Returns (write results, replicas acknowledged); :class:`ReplicationTimeoutError` when fewer
    acknowledged. The whole call is bounded by ``timeout + margin`` seconds (``TimeoutError``).
    """
    timeout_ms = _check(replicas, timeout)
    with anyio.fail_after(timeout + margin):
        async with client.pipeline(transaction=False) as pipe:
            write(pipe)
            if check is not None:
                await check(pipe)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            results = await pipe.execute()
    *writes, acknowledged = results
    if int(acknowledged) < replicas:
        raise ReplicationTimeoutError(key, int(acknowledged), replicas, timeout, writes)
    return writes, int(acknowledged)


class NodeClients:
    """One plain client per cluster primary (by address), made on first use, closed together."""

    def __init__(self, factory: NodeFactory) -> None:
        self._factory = factory
        self._clients: dict[tuple[str, int], aioredis.Redis] = {}

    def get(self, host: str, port: int) -> aioredis.Redis:
        """The client of the node at ``host:port``."""
        client = self._clients.get((host, port))
        if client is None:
            client = self._clients[(host, port)] = self._factory(host, port)
        return client

    async def aclose(self) -> None:
        """Close every node client."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


async def cluster_write_and_wait(
    cluster: RedisCluster,
    nodes: NodeClients,
    key: str | bytes,
    write: WriteFn,
    *,
    replicas: int,
    timeout: float,  # noqa: ASYNC109 - WAIT's own timeout (the replicas' deadline)
    attempts: int = 3,
    margin: float = DEFAULT_MARGIN,
) -> tuple[list[Any], int]:
    """:func:`write_and_wait` on the primary owning ``key``'s slot, found through ``cluster``.

    A queued command with a key of another slot raises :class:`CrossSlotWriteError` before anything
    is sent. A ``MOVED`` reply (the slot changed hands: nothing was written) retries on the node it names;
    a connection error asks ``cluster`` to refresh its view (a failover promotes a replica) and
    retries. At most ``attempts`` tries; the last error is raised.
    """
    _check(replicas, timeout)
    await cluster.initialize()
    check = slot_check(cluster, key)
    node = cluster.get_node_from_key(key)  # type: ignore[arg-type]  # bytes keys are hashed alike
    address = (str(node.host), int(node.port)) if node is not None else None
    for attempt in range(1, attempts + 1):
        if address is None:
            address = await _primary_of(cluster, key)
        try:
            return await write_and_wait(
                nodes.get(*address),
                key,
                write,
                replicas=replicas,
                timeout=timeout,
                margin=margin,
                check=check,
            )
        except MovedError as exc:
            if attempt == attempts:
                raise
            address = (str(exc.host), int(exc.port))
        except (ConnectionError, TimeoutError):
            if attempt == attempts:
                raise
            address = None
    raise AssertionError("unreachable")  # pragma: no cover  (the loop returns or raises)


async def _primary_of(cluster: RedisCluster, key: str | bytes) -> tuple[str, int]:
    """The primary of ``key``'s slot after a keyed command through ``cluster`` (which follows
    redirections and re-reads the slot table after a failover)."""
    await cluster.exists(key)
    node = cluster.get_node_from_key(key)  # type: ignore[arg-type]
    if node is None:  # pragma: no cover  (get_node_from_key raises SlotNotCoveredError instead)
        raise ConnectionError(f"no primary serves the slot of {key!r}")
    return str(node.host), int(node.port)
