"""Private Redis servers for tests: a server, a Redis Cluster, a Sentinel group, and pytest fixtures.

In a plugin's ``tests/conftest.py``::

    from kernel_redis.testing import redis_server, redis_url  # noqa: F401

``redis_url`` (session scope) is parametrised by ``$KERNEL_REDIS_TOPOLOGIES`` (a comma list of
``standalone``, ``cluster``, ``sentinel``; default ``standalone``): the tests that take it run once
per topology (ids ``[cluster]``, ``[sentinel]``; no id suffix when only standalone is asked for).
Each topology is started once per session, when a test first needs it: standalone is
``redis_server``, cluster a private 3 primaries + 3 replicas cluster (``redis+cluster://`` URL),
sentinel a private master + replica watched by 3 sentinels (``redis+sentinel://.../kernel-test``).
``redis_topology`` names the topology of the running test's ``redis_url``.

Take ``redis_url`` as a fixture argument: pytest parametrises only fixtures a test asks for by
name, so ``request.getfixturevalue("redis_url")`` fails ("no parameter defined") as soon as more
than one topology is asked for. A fixture that needs Redis for only some of its own params can
build them from :func:`redis_topologies` and get the URL with
``shared_topology(topology, request.config).url``.

``redis_server`` (session scope) is a private ``redis-server`` on a free
loopback port, or a handle on the server at ``$REDIS_URL`` when that is set
(then it cannot be stopped, and tests must use unique key prefixes instead of
flushing). Tests that stop or restart the server use ``private_redis_server()`` and are marked
``standalone_only`` (the ``cluster`` tox env deselects them); failover tests start their own
``private_redis_cluster()`` / ``private_redis_sentinel()`` rather than kill the shared ones.

Every key a test creates starts with one of :data:`TEST_KEY_PATTERNS` and is removed by
that test. Import ``redis_keys_left_behind`` too: against ``$REDIS_URL`` it fails the
session if keys under those patterns remain at its end.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
import weakref
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Generic, TypeVar

import pytest
import redis.cluster

from ._clients import connect_sync
from ._cluster_harness import ClusterNodeInfo, PrivateRedisCluster, PrivateRedisSentinel
from ._server import RedisServer, RedisServerError, find_redis_server
from ._url import Topology, topology_of

__all__ = [
    "SENTINEL_SERVICE",
    "TEST_KEY_PATTERNS",
    "TEST_SET_MEMBERS",
    "TOPOLOGIES",
    "TOPOLOGIES_ENV",
    "ClusterNodeInfo",
    "FailoverRun",
    "PrivateRedisCluster",
    "PrivateRedisSentinel",
    "RedisServer",
    "RedisServerError",
    "FAILOVER_ITEMS",
    "FAILOVER_KILL_AT",
    "FAILOVER_LEAKS_IGNORED",
    "FAILOVER_MARKS",
    "close_dropped_cluster_connections",
    "find_redis_server",
    "leftover_test_keys",
    "private_redis_cluster",
    "private_redis_sentinel",
    "private_redis_server",
    "redis_cluster",
    "redis_keys_left_behind",
    "redis_sentinel",
    "redis_server",
    "redis_topologies",
    "redis_topology",
    "redis_url",
    "run_migrate_keys",
    "shared_topology",
]

TOPOLOGIES: tuple[Topology, ...] = ("standalone", "cluster", "sentinel")
"""The topologies ``redis_url`` can run a test on."""
TOPOLOGIES_ENV = "KERNEL_REDIS_TOPOLOGIES"
"""Environment variable: the comma list of topologies ``redis_url`` is parametrised by."""
SENTINEL_SERVICE = "kernel-test"
"""The master (service) name of the sentinel groups these helpers start."""


FAILOVER_LEAKS_IGNORED = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
"""Mark of a failover test: the connections redis-py drops unclosed when a node dies are not its failure
(the test's own assertions are about what was lost, duplicated or recovered)."""
FAILOVER_MARKS = [pytest.mark.anyio, pytest.mark.slow, FAILOVER_LEAKS_IGNORED]
"""``pytestmark`` of a failover test module: async, slow, and :data:`FAILOVER_LEAKS_IGNORED`."""
FAILOVER_ITEMS = 1000
"""How many items (events, jobs) a failover test writes."""
FAILOVER_KILL_AT = 300
"""After how many acknowledged writes a failover test kills the primary."""


K = TypeVar("K", bound=Hashable)


class FailoverRun(Generic[K]):
    """What one failover test saw of the items it wrote (events, jobs) while a primary was killed.

    A writer calls :meth:`writing` before each write and :meth:`acknowledged` after a write that
    returned (or counts it in :attr:`refused`); the reader calls :meth:`read`. The test sets
    :attr:`killed_at` (``time.monotonic()``) when it kills the primary and :attr:`promoted` (seconds
    after the kill) once a replica took over.
    """

    def __init__(self) -> None:
        self.acked: set[K] = set()
        self.ack_times: list[float] = []
        """When each acknowledged write returned (``time.monotonic()``), in that order."""
        self.refused: Counter[str] = Counter()
        """Writes that raised, by exception class name."""
        self.seen: Counter[K] = Counter()
        """How often each item was read (handled, run)."""
        self.after_kill: set[K] = set()
        """Items whose write started after the kill."""
        self.killed_at = 0.0
        self.promoted = 0.0
        self.write_back = 0.0
        """Seconds from the kill to the first acknowledged write of those started after it."""
        self.read_back = 0.0
        """Seconds from the kill to the first read of an item written after it."""

    def writing(self, item: K) -> float:
        """A write of ``item`` starts now (``time.monotonic()``, returned for :meth:`acknowledged`)."""
        if self.killed_at:
            self.after_kill.add(item)
        return time.monotonic()

    def acknowledged(self, item: K, started: float) -> None:
        """The write of ``item`` that started at ``started`` returned."""
        returned = time.monotonic()
        self.acked.add(item)
        self.ack_times.append(returned)
        if self.killed_at and started > self.killed_at and not self.write_back:
            self.write_back = returned - self.killed_at

    def read(self, item: K) -> None:
        """``item`` was read (handled, run) once more."""
        self.seen[item] += 1
        if item in self.after_kill and not self.read_back:
            self.read_back = time.monotonic() - self.killed_at


async def close_dropped_cluster_connections() -> int:
    """Disconnect the asyncio cluster nodes and connections still open; the count disconnected.

    Call it after a failover test has closed its own clients: redis-py's asyncio cluster client
    keeps the open connections of the nodes a topology refresh drops (redis/redis-py#4053), and
    their warnings would otherwise surface in whichever later test the garbage collector runs in.
    Mark the failover test with :data:`FAILOVER_LEAKS_IGNORED`: redis-py also drops connections
    to the dead node unclosed while the failover happens (cluster and sentinel clients alike).
    """
    from redis.asyncio.cluster import ClusterNode
    from redis.asyncio.connection import AbstractConnection

    closed = 0
    for obj in gc.get_objects():
        if type(obj) in weakref.ProxyTypes:  # isinstance() of a dead proxy raises
            continue
        if isinstance(obj, ClusterNode) or (isinstance(obj, AbstractConnection) and obj.is_connected):
            await obj.disconnect()
            closed += 1
    gc.collect()  # what is left is dropped now, inside the failover test, not in a later one
    return closed


TEST_KEY_PATTERNS: tuple[str, ...] = (
    "evtest-*",  # event bus test prefixes (the idempotency markers, the legacy layout)
    "{evtest-*",  # a test stream and its subscriptions' keys: {<prefix>:<event>}:..., {<prefix>}:dlq:events
    "kctest*",  # cache test key prefixes
    "{kctest*",  # cache test entries and locks: {<prefix>:<namespace>}:<key>
    "kqtest*",  # queue test names (and the fault tests' run logs)
    "{kqtest*",  # a test queue's own keys in its slot
    "saq:kqtest*",  # a test queue's sets (untagged layout)
    "saq:job:kqtest*",  # a test queue's job records (untagged layout)
    "saq:{kqtest*",  # a test queue's sets: saq:{<queue>}:<field>
    "saq:job:{kqtest*",  # its job records: saq:job:{<queue>}:<id>
    "saq:abort:{kqtest*",  # its abort flags
)
"""Glob patterns of the keys the plugins' test suites create; each test removes its own."""
TEST_SET_MEMBERS: Mapping[str, str] = {"kernel_queue:queues": "kqtest*"}
"""Shared sets the tests add members to: set key -> pattern of the test members."""
MAX_LISTED = 50


@contextmanager
def private_redis_server(**options: str | int | float | bool | Path) -> Iterator[RedisServer]:
    """A started :class:`RedisServer` (``RedisServer(**options)``), closed after the block."""
    with RedisServer(**options) as server:  # type: ignore[arg-type]
        yield server


@contextmanager
def private_redis_cluster(
    primaries: int = 3, replicas: int = 1, **options: str | int | float | bool | Path | None
) -> Iterator[PrivateRedisCluster]:
    """A started :class:`PrivateRedisCluster` (every node stopped and removed after the block).

    ``options``: ``password`` (str, or True for a random one), ``binary``, ``node_timeout_ms``
    (failover speed, default 2000), ``startup_timeout``, and ``redis.conf`` settings for every node.
    """
    with PrivateRedisCluster(primaries, replicas, **options) as cluster:  # type: ignore[arg-type]
        yield cluster


@contextmanager
def private_redis_sentinel(
    replicas: int = 1, sentinels: int = 3, **options: str | int | float | bool | Path | None
) -> Iterator[PrivateRedisSentinel]:
    """A started :class:`PrivateRedisSentinel` (master ``kernel-test``), stopped after the block.

    ``options``: ``service_name``, ``password``, ``binary``, ``down_after_ms`` (default 1000),
    ``failover_timeout_ms`` (default 3000), ``startup_timeout``, and data nodes' ``redis.conf`` settings.
    """
    options.setdefault("service_name", SENTINEL_SERVICE)
    with PrivateRedisSentinel(replicas, sentinels, **options) as group:  # type: ignore[arg-type]
        yield group


def run_migrate_keys(config: Path, *args: str, timeout: float = 60.0) -> str:
    """Run ``kernel -c CONFIG redis migrate-keys ARGS`` in a child process and return what it printed.

    The command must exit 0; otherwise an ``AssertionError`` shows its output.
    """
    out = subprocess.run(
        [sys.executable, "-m", "kernel", "-c", str(config), "redis", "migrate-keys", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, (out.stdout, out.stderr)
    return out.stdout


def redis_topologies(value: str | None = None) -> tuple[Topology, ...]:
    """The topologies named by ``value`` (default: ``$KERNEL_REDIS_TOPOLOGIES``, else standalone).

    Raises ``ValueError`` naming the variable and the unknown entry.
    """
    text = os.environ.get(TOPOLOGIES_ENV, "") if value is None else value
    chosen: list[Topology] = []
    for entry in (part.strip().lower() for part in text.split(",")):
        if not entry:
            continue
        if entry not in TOPOLOGIES:
            raise ValueError(
                f"${TOPOLOGIES_ENV}: unknown Redis topology {entry!r} in {text!r} "
                f"(choose from {', '.join(TOPOLOGIES)}, comma-separated)"
            )
        topology: Topology = entry
        if topology not in chosen:
            chosen.append(topology)
    return tuple(chosen) or ("standalone",)


_SHARED: dict[Topology, RedisServer | PrivateRedisCluster | PrivateRedisSentinel] = {}
_STARTERS: dict[Topology, Callable[[], RedisServer | PrivateRedisCluster | PrivateRedisSentinel]] = {
    "standalone": lambda: (
        RedisServer.external(os.environ["REDIS_URL"])
        if os.environ.get("REDIS_URL")
        else RedisServer().start()
    ),
    "cluster": lambda: PrivateRedisCluster().start(),
    "sentinel": lambda: PrivateRedisSentinel(service_name=SENTINEL_SERVICE).start(),
}


def shared_topology(
    topology: Topology, config: pytest.Config
) -> RedisServer | PrivateRedisCluster | PrivateRedisSentinel:
    """The session's one server / cluster / sentinel group of ``topology``, started on first use and
    stopped when the pytest session ends (``config``'s cleanup). Do not kill or restart it."""
    if topology not in _SHARED:
        started = _STARTERS[topology]()
        _SHARED[topology] = started

        def stop() -> None:
            if _SHARED.get(topology) is started:
                del _SHARED[topology]
            started.close()

        config.add_cleanup(stop)
    return _SHARED[topology]


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest) -> RedisServer:
    """A private server for the session, or the one at ``$REDIS_URL`` (the standalone ``redis_url``)."""
    server = shared_topology("standalone", request.config)
    assert isinstance(server, RedisServer)
    return server


@pytest.fixture(scope="session")
def redis_cluster(request: pytest.FixtureRequest) -> PrivateRedisCluster:
    """The session's private cluster (3 primaries, 3 replicas): the cluster ``redis_url`` points at."""
    cluster = shared_topology("cluster", request.config)
    assert isinstance(cluster, PrivateRedisCluster)
    return cluster


@pytest.fixture(scope="session")
def redis_sentinel(request: pytest.FixtureRequest) -> PrivateRedisSentinel:
    """The session's private sentinel group: the one the sentinel ``redis_url`` points at."""
    group = shared_topology("sentinel", request.config)
    assert isinstance(group, PrivateRedisSentinel)
    return group


_ASKED = redis_topologies()


@pytest.fixture(scope="session", params=None if _ASKED == ("standalone",) else _ASKED, ids=str)
def redis_url(request: pytest.FixtureRequest) -> str:
    """The URL of the topology this test runs on (see the module docstring): ``redis://`` for
    standalone (``$REDIS_URL`` when set), ``redis+cluster://...``, ``redis+sentinel://.../kernel-test``."""
    topology: Topology = getattr(request, "param", "standalone")
    return shared_topology(topology, request.config).url


@pytest.fixture(scope="session")
def redis_topology(redis_url: str) -> Topology:
    """``"standalone"``, ``"cluster"`` or ``"sentinel"``: the topology of this test's ``redis_url``."""
    return topology_of(redis_url)


def leftover_test_keys(
    url: str, patterns: tuple[str, ...] = TEST_KEY_PATTERNS, set_members: Mapping[str, str] = TEST_SET_MEMBERS
) -> set[str]:
    """Keys at ``url`` matching ``patterns``, and test members of ``set_members`` (``"<set> member <m>"``).

    Any URL form: on a cluster every primary is scanned; on a sentinel URL, the current master.
    """
    client = connect_sync(url)
    try:
        if isinstance(client, redis.cluster.RedisCluster):
            primaries = client.get_primaries()  # type: ignore[no-untyped-call]
            nodes = [client.get_redis_connection(node) for node in primaries]
        else:
            nodes = [client]
        found = {
            k.decode(errors="replace")
            for node in nodes
            for p in patterns
            for k in node.scan_iter(match=p, count=1000)
        }
        for key, pattern in set_members.items():
            found |= {
                f"{key} member {m.decode(errors='replace')}"
                for m in client.sscan_iter(key, match=pattern, count=1000)
            }
        return found
    finally:
        client.close()


@pytest.fixture(scope="session", autouse=True)
def redis_keys_left_behind() -> Iterator[None]:
    """With ``$REDIS_URL`` set: fail the session if keys under :data:`TEST_KEY_PATTERNS` remain.

    Keys that were there before the session (an earlier, interrupted run) are not this
    session's: they are ignored. Without ``$REDIS_URL`` the private server is thrown away
    after the session anyway, so nothing is checked.
    """
    url = os.environ.get("REDIS_URL")
    if not url:
        yield
        return
    before = leftover_test_keys(url)
    yield
    left = sorted(leftover_test_keys(url) - before)
    if left:
        shown = "\n  ".join(left[:MAX_LISTED])
        more = f"\n  ... and {len(left) - MAX_LISTED} more" if len(left) > MAX_LISTED else ""
        pytest.fail(
            f"{len(left)} Redis key(s) under the test prefixes were left on $REDIS_URL "
            f"(every test must remove what it creates):\n  {shown}{more}",
            pytrace=False,
        )
