"""The cluster and sentinel test harness itself: real topologies, real failovers, no orphans."""

from __future__ import annotations

import itertools
import uuid

import pytest
import redis
import redis.cluster
import redis.sentinel
from kernel_redis.testing import (
    SENTINEL_SERVICE,
    PrivateRedisCluster,
    PrivateRedisSentinel,
    leftover_test_keys,
    private_redis_cluster,
    private_redis_sentinel,
    redis_cluster,  # noqa: F401 - fixtures
    redis_sentinel,  # noqa: F401
)
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from kernel.testing import assert_dies_with_parent, wait_gone

SLOTS = 16384


def cluster_client(cluster: PrivateRedisCluster, **options: object) -> redis.cluster.RedisCluster:
    nodes = [redis.cluster.ClusterNode("127.0.0.1", port) for port in cluster.ports]  # type: ignore[no-untyped-call]
    return redis.cluster.RedisCluster(startup_nodes=nodes, password=cluster.password, **options)  # type: ignore[arg-type]


def sentinel_master(group: PrivateRedisSentinel) -> tuple[redis.sentinel.Sentinel, redis.Redis]:
    sentinel = redis.sentinel.Sentinel(group.sentinel_addresses)  # type: ignore[no-untyped-call]
    master: redis.Redis = sentinel.master_for(group.service_name, password=group.password)  # type: ignore[no-untyped-call]
    return sentinel, master


def close_sentinel(sentinel: redis.sentinel.Sentinel, master: redis.Redis) -> None:
    master.close()
    for client in sentinel.sentinels:
        client.close()


def two_keys_on_one_node_in_two_slots(cluster: PrivateRedisCluster, prefix: str) -> tuple[str, str, int]:
    """Two keys served by the same primary from different slots, and that primary's port."""
    first = f"{prefix}-0"
    port = cluster.primary_of(first).port
    for n in itertools.count(1):
        other = f"{prefix}-{n}"
        if key_slot(other.encode()) != key_slot(first.encode()) and cluster.primary_of(other).port == port:
            return first, other, port
    raise AssertionError("unreachable")


def test_the_cluster_has_three_primaries_serving_every_slot_and_three_linked_replicas(
    redis_cluster: PrivateRedisCluster,  # noqa: F811
) -> None:
    nodes = redis_cluster.nodes
    primaries = [n for n in nodes if n.role == "primary"]
    replicas = [n for n in nodes if n.role == "replica"]
    assert len(primaries) == 3 and len(replicas) == 3
    served = sorted(slot for p in primaries for first, last in p.slots for slot in range(first, last + 1))
    assert served == list(range(SLOTS))
    assert sorted(r.primary_id or "" for r in replicas) == sorted(p.node_id for p in primaries)
    assert not any(n.failed for n in nodes) and all(n.connected for n in nodes)
    assert redis_cluster.url.startswith("redis+cluster://127.0.0.1:")
    assert redis_cluster.url.count(",") == 5
    for node in nodes:
        with redis_cluster.client(node.port) as client:
            assert client.execute_command("CLUSTER", "INFO").startswith("cluster_state:ok")
            replication = client.info("replication")
        if node.role == "replica":
            assert replication["role"] == "slave" and replication["master_link_status"] == "up"
        else:
            assert replication["role"] == "master" and replication["connected_slaves"] == 1


def test_a_cross_slot_command_fails_and_a_hash_tagged_one_works(
    redis_cluster: PrivateRedisCluster,  # noqa: F811
) -> None:
    prefix = f"kctest-crossslot-{uuid.uuid4().hex[:8]}"
    first, other, port = two_keys_on_one_node_in_two_slots(redis_cluster, prefix)
    tagged = (f"{{{prefix}}}:a", f"{{{prefix}}}:b")
    assert key_slot(tagged[0].encode()) == key_slot(tagged[1].encode())
    # The server's CROSSSLOT error (redis-py keeps its text, not the code).
    with (
        redis_cluster.client(port) as node,
        pytest.raises(redis.ResponseError, match="hash to the same slot"),
    ):
        node.mset({first: "1", other: "2"})
    client = cluster_client(redis_cluster)
    try:
        assert client.mset({tagged[0]: "1", tagged[1]: "2"})
        assert client.mget(list(tagged)) == [b"1", b"2"]
        assert sorted(leftover_test_keys(redis_cluster.url, patterns=(f"{{{prefix}}}*",))) == sorted(tagged)
    finally:
        client.delete(*tagged)
        client.close()


def test_leftover_test_keys_scans_every_primary_of_a_cluster(
    redis_cluster: PrivateRedisCluster,  # noqa: F811
) -> None:
    prefix = f"kqtest-spread-{uuid.uuid4().hex[:8]}"
    keys = [f"{prefix}-{n}" for n in range(30)]
    assert len({redis_cluster.primary_of(k).port for k in keys}) == 3  # on every primary
    member = f"kqtest-member-{uuid.uuid4().hex[:8]}"
    client = cluster_client(redis_cluster)
    try:
        for key in keys:
            client.set(key, 1)
        client.sadd("kernel_queue:queues", member)
        found = leftover_test_keys(redis_cluster.url)
        assert set(keys) <= found
        assert f"kernel_queue:queues member {member}" in found
    finally:
        for key in keys:
            client.delete(key)
        client.srem("kernel_queue:queues", member)
        client.close()
    assert not {k for k in leftover_test_keys(redis_cluster.url) if prefix in k or member in k}


def test_kill_primary_of_a_key_promotes_its_replica_and_the_data_survives() -> None:
    key = f"kqtest-failover-{uuid.uuid4().hex[:8]}"
    with private_redis_cluster() as cluster:
        pids = cluster.pids
        owner = cluster.primary_of(key)
        replica = next(n for n in cluster.nodes if n.primary_id == owner.node_id)
        # WAIT counts the replicas that acknowledged the writes *of its own connection*: the write
        # and the WAIT go down one connection to the key's primary, or WAIT proves nothing of it.
        with cluster.client(owner.port) as node:
            pipe = node.pipeline(transaction=False)
            pipe.set(key, "kept")
            pipe.execute_command("WAIT", 1, 5000)
            assert pipe.execute() == [True, 1]
        assert cluster.kill_primary_of(key) == owner.port
        assert not cluster.server(owner.port).running
        assert cluster.wait_promoted(owner.port) == replica.port
        assert cluster.primary_of(key).port == replica.port
        with cluster.client(replica.port) as node:
            assert node.get(key) == "kept"
        cluster.revive(owner.port)  # rejoins as the new primary's replica
        revived = next(n for n in cluster.nodes if n.port == owner.port)
        assert revived.role == "replica" and revived.primary_id == replica.node_id
    assert all(wait_gone(pid) for pid in pids), "a cluster node outlived the context"


def test_a_password_protected_cluster_links_its_replicas_and_refuses_anonymous_clients() -> None:
    with private_redis_cluster(password=True) as cluster:
        assert cluster.password and f":{cluster.password}@" in cluster.url
        assert all(n.role == "primary" or n.primary_id for n in cluster.nodes)  # masterauth worked
        once = Retry(NoBackoff(), 0)  # an authentication error is a ConnectionError: no retries
        with (
            redis.Redis(port=cluster.ports[0], retry=once) as anonymous,
            pytest.raises(redis.AuthenticationError),
        ):
            anonymous.ping()
        client = cluster_client(cluster)
        try:
            key = f"kctest-auth-{uuid.uuid4().hex[:8]}"
            client.set(key, 1)
            assert client.get(key) == b"1"
        finally:
            client.close()


def test_sentinel_promotes_the_replica_when_the_master_dies() -> None:
    key = f"kqtest-sentinel-{uuid.uuid4().hex[:8]}"
    with private_redis_sentinel() as group:
        pids = group.pids
        assert len(pids) == 5  # master, replica, 3 sentinels
        assert group.url.startswith("redis+sentinel://127.0.0.1:") and group.url.endswith(
            f"/{SENTINEL_SERVICE}"
        )
        old = group.master_port()
        replica = next(s.port for s in group.servers if s.port != old)
        sentinel, master = sentinel_master(group)
        try:
            pipe = master.pipeline(transaction=False)  # the write and its WAIT on one connection
            pipe.set(key, "kept")
            pipe.execute_command("WAIT", 1, 5000)
            assert pipe.execute() == [True, 1]
            assert group.kill_master() == old
            assert group.wait_new_master(old) == replica
            assert master.get(key) == b"kept"  # the master-bound client followed the failover
            group.revive(old)
            # It rejoins as a replica of the current master, or is the master again when the sentinels
            # failed over a second time meanwhile (a loaded machine can miss down-after-milliseconds).
            expected = "master" if group.master_port() == old else "slave"
            with group.client(old) as node:
                assert node.info("replication")["role"] == expected
        finally:
            close_sentinel(sentinel, master)
    assert all(wait_gone(pid) for pid in pids), "a sentinel group process outlived the context"


def test_the_shared_sentinel_group_knows_its_master_replica_and_sentinels(
    redis_sentinel: PrivateRedisSentinel,  # noqa: F811
) -> None:
    assert redis_sentinel.healthy()
    master = redis_sentinel.master_port()
    key = f"kctest-shared-{uuid.uuid4().hex[:8]}"
    sentinel, client = sentinel_master(redis_sentinel)
    try:
        client.set(key, 1)
        assert {k for k in leftover_test_keys(redis_sentinel.url) if key in k} == {key}
        assert client.connection_pool.get_master_address()[1] == master  # type: ignore[attr-defined]
    finally:
        client.delete(key)
        close_sentinel(sentinel, client)


def test_cluster_nodes_die_with_the_test_process() -> None:
    # SIGKILL the test process: its nodes get the parent-death signal (each node is a RedisServer).
    script = (
        "import threading\n"
        "from kernel_redis.testing import PrivateRedisCluster\n"
        "cluster = PrivateRedisCluster(primaries=1, replicas=1).start()\n"
        "print(*cluster.pids, flush=True)\n"
        "threading.Event().wait()  # until the test SIGKILLs this process\n"
    )
    assert_dies_with_parent(script, what="a cluster node")
