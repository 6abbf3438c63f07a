"""The queue on every topology: its keys' slots, durability = "replicated", and migrating old keys."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from kernel_queue import EnqueueNotReplicatedError, JobContext, QueueManager, queue_tag
from kernel_queue._queue import KernelRedisQueue
from kernel_redis import key_slot
from kernel_redis.testing import PrivateRedisCluster, run_migrate_keys
from saq.queue.redis import RedisQueue

from kernel import ConfigError
from kernel.testing import boot_kernel, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def names(
    redis_url: str, delete_keys: Callable[[str, str], Awaitable[None]]
) -> AsyncIterator[list[str]]:
    """Twelve fresh queue names; their keys are removed after the test."""
    made = [f"kqtest{uuid.uuid4().hex[:10]}" for _ in range(12)]
    yield made
    for name in made:
        await delete_keys(redis_url, name)


async def test_every_key_of_a_queue_shares_its_slot_and_queues_spread(
    redis_url: str, redis_topology: str, names: list[str], request: pytest.FixtureRequest
) -> None:
    async with boot_kernel("redis", "queue", config={"redis": {"url": redis_url}}) as k:
        qm = k.get(QueueManager)
        for name in names:
            await qm.add_job(name, "n", {"i": 1})
            await qm.add_job(name, "n", {"i": 2}, delay=60)
            q = qm.get_queue(name)
            keys = [key.decode() async for key in qm.redis.scan_iter(match=f"saq:*{queue_tag(name)}*")]
            assert len(keys) >= 5, keys  # incomplete, waiting, wake, seq, two job records
            assert {key_slot(key) for key in keys} == {key_slot(queue_tag(name))}, keys
            job = await q.job(await qm.add_job(name, "n", {}))
            assert job is not None and key_slot(job.abort_id) == key_slot(queue_tag(name))
    slots = {key_slot(queue_tag(name)) for name in names}
    assert len(slots) == len(names)
    if redis_topology == "cluster":
        cluster: PrivateRedisCluster = request.getfixturevalue("redis_cluster")
        primaries = {cluster.primary_of(queue_tag(name)).port for name in names}
        assert len(primaries) >= 2, primaries


def _bus_publishes(cluster: PrivateRedisCluster) -> dict[str, int]:
    """Classic and shard ``PUBLISH`` messages every node sent over the cluster bus, summed."""
    totals = {"publish": 0, "publishshard": 0}
    for port in cluster.ports:
        with cluster.client(port) as client:
            info = client.execute_command("CLUSTER INFO")
        for kind in totals:
            totals[kind] += int(info.get(f"cluster_stats_messages_{kind}_sent", 0))
    return totals


async def test_job_events_stay_in_the_queue_shard_on_a_cluster(
    redis_url: str, redis_topology: str, qname: str, request: pytest.FixtureRequest
) -> None:
    """On a cluster an enqueue's event is a shard message (``SPUBLISH``): it reaches the nodes of
    the queue's shard, not every node over the cluster bus, and listeners still get every event."""
    if redis_topology != "cluster":
        pytest.skip("shard channels are a cluster matter")
    cluster: PrivateRedisCluster = request.getfixturevalue("redis_cluster")
    admin = cluster.client(cluster.ports[0])
    try:
        version = str(admin.info("server")["redis_version"])
    finally:
        admin.close()
    if int(version.split(".")[0]) < 7:
        pytest.skip(f"shard channels need Redis >= 7 (this redis-server is {version}; it gets PUBLISH)")
    async with boot_kernel("redis", "queue", config={"redis": {"url": redis_url}}) as k:
        qm = k.get(QueueManager)
        events: list[dict[str, Any]] = []
        listener = qm.listen_to_queue_events(qname, events.append)

        async def subscribed() -> bool:
            node = qm.redis.get_node_from_key(qm.get_queue(qname).events_channel)
            reply = await qm.redis.execute_command(
                "PUBSUB", "SHARDNUMSUB", qm.get_queue(qname).events_channel, target_nodes=node
            )
            return int(reply[1]) == 1

        await wait_until(subscribed, timeout=10, what="listener subscribed")
        before = _bus_publishes(cluster)
        ids = [await qm.add_job(qname, "n", {"i": i}) for i in range(20)]
        await wait_until(lambda: len(events) == 20, timeout=10, what="20 events")
        after = _bus_publishes(cluster)
        listener.cancel()
    assert [e["job_id"] for e in events] == ids and {e["event"] for e in events} == {"waiting"}
    assert after["publish"] == before["publish"]  # nothing broadcast to every node
    assert after["publishshard"] - before["publishshard"] == 20 * cluster.replicas  # the shard's replicas


def _settings(**extra: Any) -> dict[str, Any]:
    return {"poll_interval": 0.2, "schedule_interval": 0.05, **extra}


async def test_replicated_enqueue_waits_for_a_replica(
    redis_url: str, redis_topology: str, qname: str
) -> None:
    if redis_topology == "standalone":
        pytest.skip("a standalone server has no replica to wait for")
    config = {
        "redis": {"url": redis_url},
        "queue": _settings(durability="replicated", replication_timeout=5.0),
    }
    async with boot_kernel("redis", "queue", config=config) as k:
        qm = k.get(QueueManager)
        ran: list[Any] = []

        async def proc(job: JobContext) -> None:
            ran.append(job.data)

        one = await qm.add_job(qname, "n", {"i": 1}, job_id="one")
        assert one == "one"
        assert await qm.add_job(qname, "n", {"i": "again"}, job_id="one") == "one"  # not enqueued twice
        assert await qm.add_bulk_jobs(qname, [{"name": "n", "data": {"i": i}} for i in (2, 3)])
        await qm.create_worker(qname, proc)
        await wait_until(lambda: len(ran) == 3, what="the three replicated jobs to run")
        assert sorted(d["i"] for d in ran) == [1, 2, 3]


async def test_too_few_replicas_is_a_typed_error_and_the_job_is_kept(redis_url: str, qname: str) -> None:
    config = {
        "redis": {"url": redis_url},
        "queue": _settings(durability="replicated", replicas=5, replication_timeout=0.2),
    }
    async with boot_kernel("redis", "queue", config=config) as k:
        qm = k.get(QueueManager)
        with pytest.raises(EnqueueNotReplicatedError, match=r"fewer than 5 replica\(s\).*within 0.2s") as err:
            await qm.add_job(qname, "n", {"i": 1}, job_id="j1")
        assert (err.value.queue, err.value.job_ids, err.value.required) == (qname, ["j1"], 5)
        with pytest.raises(EnqueueNotReplicatedError):
            await qm.add_bulk_jobs(qname, [{"name": "n", "job_id": "j2"}])
        # On the primary all the same: it runs (and a retry with the same job_id adds nothing).
        stats = await qm.get_queue_stats(qname)
        assert (stats["waiting"], stats["total"]) == (2, 2)


async def test_a_bad_durability_setting_names_its_key(redis_url: str) -> None:
    config = {"redis": {"url": redis_url}, "queue": {"durability": "always"}}
    with pytest.raises(ConfigError, match="durability"):
        async with boot_kernel("redis", "queue", config=config):
            pass


class _EarlierLayoutQueue(KernelRedisQueue):
    """The queue as the release before the hash tags stored it: SAQ's own key names."""

    namespace = RedisQueue.namespace  # type: ignore[assignment]
    job_id = RedisQueue.job_id  # type: ignore[assignment]
    job_key_from_id = RedisQueue.job_key_from_id  # type: ignore[assignment]


def _migrate_keys(redis_url: str, tmp_path: Path, *args: str) -> str:
    config = tmp_path / "kernel.toml"
    config.write_text(f'[kernel]\nplugins = ["redis", "queue"]\n\n[plugins.redis]\nurl = "{redis_url}"\n')
    return run_migrate_keys(config, "--limit", "100", *args)


async def test_jobs_of_the_earlier_layout_survive_migrate_keys_and_run(
    redis_url: str, redis_topology: str, qname: str, tmp_path: Path
) -> None:
    if redis_topology == "cluster":
        pytest.skip("the earlier layout never ran on a cluster (its scripts cross slots)")
    async with boot_kernel("redis", "queue", config={"redis": {"url": redis_url}, "queue": _settings()}) as k:
        qm = k.get(QueueManager)
        old = _EarlierLayoutQueue(qm.redis, qname)
        for key, delay in (("waiting-1", None), ("delayed-2", 0.5)):
            job, payload = qm._build(old, "n", {"k": key}, delay=delay, job_id=key)
            assert await old.add(job, payload)
        await qm.redis.sadd("kernel_queue:queues", qname)
        assert await qm.redis.exists(f"saq:{qname}:incomplete", f"saq:job:{qname}:waiting-1") == 2

    dry = await asyncio.to_thread(_migrate_keys, redis_url, tmp_path)
    assert f"saq:{qname}:incomplete" in dry and f"saq:{{{qname}}}:incomplete" in dry, dry
    assert f"saq:job:{{{qname}}}:delayed-2" in dry, dry
    await asyncio.to_thread(_migrate_keys, redis_url, tmp_path, "--apply")

    async with boot_kernel("redis", "queue", config={"redis": {"url": redis_url}, "queue": _settings()}) as k:
        qm = k.get(QueueManager)
        assert not await qm.redis.exists(f"saq:{qname}:incomplete", f"saq:job:{qname}:waiting-1")
        ran: list[str] = []

        async def proc(job: JobContext) -> None:
            ran.append(job.id)

        await qm.create_worker(qname, proc)
        await wait_until(lambda: sorted(ran) == ["delayed-2", "waiting-1"], what="both migrated jobs to run")

        async def both_completed() -> bool:
            # The worker marks a job completed after its function returns, so `ran` fills first.
            infos = [await qm.get_job(qname, job_id) for job_id in ("waiting-1", "delayed-2")]
            return all(info is not None and info.state == "completed" for info in infos)

        await wait_until(both_completed, what="both migrated jobs to be recorded completed")
        stats = await qm.get_queue_stats(qname)
        assert (stats["completed"], stats["total"]) == (2, 0)
