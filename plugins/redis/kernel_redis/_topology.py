"""What the connection is connected to: nodes, roles, slots, replicas, sentinels; per-node health.

:func:`inspect_topology` asks the deployment itself (``INFO replication``; ``CLUSTER NODES`` and
``CLUSTER INFO``; ``SENTINEL MASTER`` / ``SENTINEL REPLICAS`` on every sentinel) and PINGs every
node it names, each bounded by a timeout, concurrently.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, cast

import anyio
import attrs
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from ._url import Topology

if TYPE_CHECKING:
    from ._connection import RedisConnection

Role = Literal["primary", "replica", "sentinel"]


class RedisHealthError(RuntimeError):
    """What the ``redis`` health checks found wrong (every failed primary, the cluster state…)."""


@attrs.frozen
class NodeStatus:
    """One server of the deployment as seen now."""

    address: str
    """``host:port`` (or the socket path)."""
    role: Role
    slots: tuple[tuple[int, int], ...] = ()
    """Slot ranges a cluster primary serves (inclusive)."""
    primary: str | None = None
    """For a replica: the address of its primary."""
    flags: str = ""
    """Cluster or sentinel flags (``fail``, ``s_down``…) when there are any beyond the role."""
    latency: float | None = None
    """Seconds a PING took; ``None`` when it failed (see ``error``)."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Answered PING (and is not flagged failed)."""
        return self.error is None


@attrs.frozen
class TopologyReport:
    """The deployment behind a :class:`~kernel_redis.RedisConnection`."""

    topology: Topology
    url: str
    """The redacted URL."""
    nodes: tuple[NodeStatus, ...]
    state: str = "ok"
    """``cluster_state`` for a cluster; ``ok``/``fail`` (the master answers) otherwise."""
    service: str | None = None
    """The sentinel service name."""
    sentinels_answering: int = 0
    sentinels_total: int = 0

    @property
    def primaries(self) -> tuple[NodeStatus, ...]:
        """The primaries (a cluster's, the sentinel master, the standalone server)."""
        return tuple(n for n in self.nodes if n.role == "primary")

    def problems(self) -> list[str]:
        """Why the deployment is not fully healthy (empty when it is): failed primaries, cluster state."""
        # A cluster primary without slots serves nothing (e.g. a dead one whose replica took over).
        serving = [n for n in self.primaries if n.slots or self.topology != "cluster"]
        out = [f"primary {n.address}: {n.error}" for n in serving if n.error]
        if (
            not self.primaries and self.topology != "standalone"
        ):  # a standalone replica is read-only, not down
            out.append("no primary found")
        if self.topology == "cluster" and self.state != "ok":
            out.append(f"cluster_state is {self.state}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return attrs.asdict(self, recurse=True)


async def _timed(
    within: float, call: Callable[..., Awaitable[object]], *args: Any
) -> tuple[float | None, str | None]:
    """(seconds, None) when ``call(*args)`` completes within ``within`` seconds, else (None, why)."""
    t0 = time.perf_counter()
    try:
        with anyio.fail_after(within):
            await call(*args)
    except Exception as exc:  # a health probe reports every failure, never raises
        reason = f"no answer within {within:g}s" if isinstance(exc, TimeoutError) else str(exc)
        return None, f"{type(exc).__name__}: {reason}"
    return time.perf_counter() - t0, None


async def _ping_all(
    nodes: list[NodeStatus], ping: Callable[[NodeStatus], Awaitable[object]], within: float
) -> list[NodeStatus]:
    """``nodes`` with latency/error from a concurrent PING each (a node flagged failed keeps its error)."""
    results: list[NodeStatus] = list(nodes)

    async def one(i: int) -> None:
        node = nodes[i]
        latency, error = await _timed(within, ping, node)
        results[i] = attrs.evolve(node, latency=latency, error=node.error or error)

    async with anyio.create_task_group() as tg:
        for i in range(len(nodes)):
            tg.start_soon(one, i)
    return results


async def inspect_topology(connection: RedisConnection, within: float | None = None) -> TopologyReport:
    """Ask the deployment behind ``connection`` what it is, and PING each node (``within`` s each;
    default ``health_timeout``)."""
    limit = connection.config.health_timeout if within is None else within
    if connection.topology == "cluster":
        return await _cluster(connection, limit)
    if connection.topology == "sentinel":
        return await _sentinel(connection, limit)
    return await _standalone(connection, limit)


def _address(client: aioredis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return str(kwargs["path"]) if "path" in kwargs else f"{kwargs.get('host')}:{kwargs.get('port')}"


async def _standalone(connection: RedisConnection, within: float) -> TopologyReport:
    client = cast("aioredis.Redis", connection.client)
    address = _address(client)
    primary = NodeStatus(address, "primary")
    replicas: list[NodeStatus] = []
    info: dict[str, Any] = {}
    latency, error = await _timed(within, _info, client, info)
    if error is None and info.get("role") == "slave":
        of = f"{info.get('master_host')}:{info.get('master_port')}"
        primary = NodeStatus(address, "replica", primary=of)
    for key, value in sorted(info.items()):
        if key.startswith("slave") and isinstance(value, dict):
            state = str(value.get("state", ""))
            replica = NodeStatus(
                f"{value.get('ip')}:{value.get('port')}", "replica", primary=address, flags=state
            )
            replicas.append(replica)
    primary = attrs.evolve(primary, latency=latency, error=error)
    return TopologyReport(
        "standalone", connection.redacted_url, (primary, *replicas), state="ok" if error is None else "fail"
    )


async def _info(client: aioredis.Redis, into: dict[str, Any]) -> None:
    into.update(await client.info("replication"))


async def _cluster(connection: RedisConnection, within: float) -> TopologyReport:
    cluster = cast("RedisCluster", connection.client)
    if not cluster.get_nodes():  # never connected yet: learn the nodes from the seeds
        with anyio.fail_after(within + connection.config.socket_connect_timeout):
            await cluster.initialize()
    candidates = {(str(n.host), int(n.port)) for n in [*cluster.get_nodes(), *cluster.startup_nodes]}
    nodes, info = await _first_view(connection, sorted(candidates), within)
    statuses = _cluster_nodes(nodes)

    async def ping(node: NodeStatus) -> None:
        host, _sep, port = node.address.rpartition(":")
        await _ping(connection.node_client(host, int(port)))

    pinged = await _ping_all(statuses, ping, within)
    return TopologyReport(
        "cluster", connection.redacted_url, tuple(pinged), state=str(info.get("cluster_state", "unknown"))
    )


async def _first_view(
    connection: RedisConnection, candidates: list[tuple[str, int]], within: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``CLUSTER NODES`` and ``CLUSTER INFO`` of the first of ``candidates`` that answers (all asked at
    once: a dead node costs no extra wait)."""
    found: list[tuple[dict[str, Any], dict[str, Any]]] = []
    errors: list[str] = []

    async with anyio.create_task_group() as tg:

        async def ask(host: str, port: int) -> None:
            nodes: dict[str, Any] = {}
            info: dict[str, Any] = {}
            _latency, error = await _timed(
                within, _cluster_views, connection.node_client(host, port), nodes, info
            )
            if error is not None:
                errors.append(f"{host}:{port}: {error}")
            elif not found:
                found.append((nodes, info))
                tg.cancel_scope.cancel()

        for host, port in candidates:
            tg.start_soon(ask, host, port)
    if not found:
        raise ConnectionError(
            f"cannot describe the cluster at {connection.redacted_url}: no node answered CLUSTER NODES "
            f"({'; '.join(errors) or 'no node known'})"
        )
    return found[0]


async def _cluster_views(client: aioredis.Redis, nodes: dict[str, Any], info: dict[str, Any]) -> None:
    nodes.update(await client.execute_command("CLUSTER NODES"))  # type: ignore[no-untyped-call]
    info.update(await client.execute_command("CLUSTER INFO"))  # type: ignore[no-untyped-call]


def _cluster_nodes(nodes: dict[str, Any]) -> list[NodeStatus]:
    """``CLUSTER NODES`` (as redis-py parses it) as statuses: primaries by first slot, each followed
    by its replicas."""
    by_id = {str(v.get("node_id")): k.split("@")[0] for k, v in nodes.items()}
    out: list[NodeStatus] = []
    for raw_address, node in nodes.items():
        address = raw_address.split("@")[0]
        roles = ("myself", "master", "slave", "noflags")
        flags = [f for f in str(node.get("flags", "")).split(",") if f not in roles]
        is_primary = "master" in str(node.get("flags", ""))
        slots = tuple(sorted((int(r[0]), int(r[-1])) for r in node.get("slots", []) if r))
        failed = next((f for f in flags if f in ("fail", "fail?", "handshake", "noaddr")), None)
        out.append(
            NodeStatus(
                address,
                "primary" if is_primary else "replica",
                slots=slots,
                primary=None if is_primary else by_id.get(str(node.get("master_id"))),
                flags=",".join(flags),
                error=f"flagged {failed} by the cluster" if failed else None,
            )
        )

    def order(n: NodeStatus) -> tuple[int, str, int, str]:
        home = n if n.role == "primary" else next((p for p in out if p.address == n.primary), n)
        first = home.slots[0][0] if home.slots else 1 << 14
        return (first, home.address, 0 if n.role == "primary" else 1, n.address)

    return sorted(out, key=order)


async def _sentinel(connection: RedisConnection, within: float) -> TopologyReport:
    from ._url import parse_multi_host

    service = parse_multi_host(connection.url).service or ""
    client = connection.client
    manager = getattr(cast("aioredis.Redis", client).connection_pool, "sentinel_manager", None)
    sentinels: list[aioredis.Redis] = list(getattr(manager, "sentinels", []))
    found: list[tuple[dict[str, Any], list[dict[str, Any]]] | None] = [None] * len(sentinels)
    statuses: list[NodeStatus] = [NodeStatus(_address(s), "sentinel") for s in sentinels]

    async def ask(i: int) -> None:
        master: dict[str, Any] = {}
        replicas: list[dict[str, Any]] = []
        latency, error = await _timed(within, _sentinel_view, sentinels[i], service, master, replicas)
        statuses[i] = attrs.evolve(statuses[i], latency=latency, error=error)
        if error is None:
            found[i] = (master, replicas)

    async with anyio.create_task_group() as tg:
        for i in range(len(sentinels)):
            tg.start_soon(ask, i)
    views = [v for v in found if v is not None]
    nodes: list[NodeStatus] = []
    if views:
        master, replicas = views[0]
        address = f"{master.get('ip')}:{master.get('port')}"
        flags = str(master.get("flags", "")).replace("master", "").strip(",")
        latency, error = await _timed(within, _ping, client)
        nodes.append(NodeStatus(address, "primary", flags=flags, latency=latency, error=error))
        for r in replicas:
            rflags = str(r.get("flags", "")).replace("slave", "").strip(",")
            down = "s_down" in rflags or "o_down" in rflags or "disconnected" in rflags
            nodes.append(
                NodeStatus(
                    f"{r.get('ip')}:{r.get('port')}",
                    "replica",
                    primary=address,
                    flags=rflags,
                    error=f"flagged {rflags} by the sentinels" if down else None,
                )
            )
    answering = len(views)
    return TopologyReport(
        "sentinel",
        connection.redacted_url,
        (*nodes, *statuses),
        state="ok" if nodes and nodes[0].ok else "fail",
        service=service,
        sentinels_answering=answering,
        sentinels_total=len(sentinels),
    )


async def _ping(client: aioredis.Redis | RedisCluster) -> None:
    await cast("Awaitable[object]", client.ping())


async def _sentinel_view(
    sentinel: aioredis.Redis, service: str, master: dict[str, Any], replicas: list[dict[str, Any]]
) -> None:
    master.update(await sentinel.sentinel_master(service))  # type: ignore[no-untyped-call]
    replicas.extend(await sentinel.sentinel_slaves(service))  # type: ignore[no-untyped-call]
