"""The stalled-job sweep: a sweep that fails (or whose worker dies) half-way loses no job."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kernel_queue import QueueManager
from kernel_queue._queue import JobReclaimedError, KernelRedisQueue
from redis.exceptions import ConnectionError as RedisConnectionError
from saq.job import Job, Status
from saq.utils import now

from kernel.testing import wait_until

pytestmark = pytest.mark.anyio


async def running_job_of_a_dead_worker(manager: QueueManager, qname: str) -> tuple[KernelRedisQueue, Job]:
    """A job taken by a worker that then died: active, its last heartbeat long ago."""
    q = manager.get_queue(qname)
    jid = await manager.add_job(qname, "work", {"n": 1})
    job = await q.dequeue()
    assert job is not None and job.key == jid
    assert await manager.redis.zadd(q.keys.heartbeat, {job.id: 1}, xx=True, ch=True) == 1
    return q, job


async def sweep_until_reclaimed(q: KernelRedisQueue, job: Job) -> None:
    """Sweep (as every worker does each ``sweep_interval``) until ``job`` is reclaimed."""
    swept: list[str] = []

    async def reclaimed() -> bool:
        swept.extend(await q.sweep())
        return bool(swept)

    await wait_until(reclaimed, 15, interval=0.05, what="the next sweep to reclaim the job")
    assert swept == [job.id]


async def assert_requeued_once(manager: QueueManager, q: KernelRedisQueue, job: Job) -> None:
    info = await manager.get_job(q.name, job.key)
    assert info is not None
    assert (info.state, info.stalls, info.attempts, info.failures) == ("waiting", 1, 0, 0)
    assert await manager.redis.lrange(q.keys.active, 0, -1) == []
    assert await manager.redis.zscore(q.keys.heartbeat, job.id) is None
    assert (await manager.get_counts(q.name)).get("stalled") == 1


async def test_a_sweep_failing_after_its_claim_leaves_the_job_to_the_next_sweep(
    manager: QueueManager, qname: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    q, job = await running_job_of_a_dead_worker(manager, qname)

    async def connection_lost(*_args: Any, **_kwargs: Any) -> bool:
        raise RedisConnectionError("connection lost mid-sweep")

    monkeypatch.setattr(q, "requeue", connection_lost)  # the sweeper fails between claim and re-queue
    before = now()
    with caplog.at_level(logging.ERROR, logger="kernel.plugins.queue"):
        assert await q.sweep() == []
    assert q.sweep_errors == 1
    assert f"could not reclaim job {job.id}" in caplog.text and "connection lost mid-sweep" in caplog.text
    # Not lost: still active, leased to the next sweep (its heartbeat set at the claim).
    assert await manager.redis.lrange(q.keys.active, 0, -1) == [job.id.encode()]
    leased = await manager.redis.zscore(q.keys.heartbeat, job.id)
    assert leased is not None and leased >= before
    assert (await manager.get_counts(qname)).get("stalled") is None  # not counted until re-queued

    monkeypatch.undo()
    await sweep_until_reclaimed(q, job)  # once the lease (stall_timeout) has passed
    await assert_requeued_once(manager, q, job)
    assert q.sweep_errors == 1


async def test_a_sweep_whose_claim_fails_is_logged_counted_and_retried(
    manager: QueueManager, qname: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    q, job = await running_job_of_a_dead_worker(manager, qname)

    async def connection_lost(*_args: Any, **_kwargs: Any) -> list[bytes]:
        raise RedisConnectionError("connection lost at the claim")

    monkeypatch.setattr(q.scripts, "claim_stalled", connection_lost)
    with caplog.at_level(logging.ERROR, logger="kernel.plugins.queue"):
        assert await q.sweep() == []
    assert q.sweep_errors == 1
    assert "could not look for stalled jobs" in caplog.text and "connection lost at the claim" in caplog.text

    monkeypatch.undo()
    await sweep_until_reclaimed(q, job)
    await assert_requeued_once(manager, q, job)


async def test_a_job_finished_by_its_slow_worker_during_the_lease_is_not_requeued(
    manager: QueueManager, qname: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    q, job = await running_job_of_a_dead_worker(manager, qname)

    async def finished_first(*_args: Any, **_kwargs: Any) -> Job | None:
        # The worker was only slow: it finishes the job between the sweep's claim and its re-queue.
        await job.finish(Status.COMPLETE, result=7)
        return await original(job.id)

    original = q._get_job_by_id
    monkeypatch.setattr(q, "_get_job_by_id", finished_first)
    assert await q.sweep() == []
    info = await manager.get_job(qname, job.key)
    assert info is not None and (info.state, info.result, info.stalls) == ("completed", 7, 0)
    assert (await manager.get_counts(qname)).get("stalled") is None
    assert await manager.redis.zcard(q.keys.waiting) == 0


async def test_a_job_reclaimed_before_its_slow_worker_started_it_is_not_run_there(
    manager: QueueManager, qname: str
) -> None:
    q, job = await running_job_of_a_dead_worker(manager, qname)  # taken, no heartbeat since
    await sweep_until_reclaimed(q, job)  # the worker was only slow: the sweep gave the job back
    # What SAQ's worker does next: count the try, mark it started, run it; a refusal goes to retry.
    job.attempts += 1
    with pytest.raises(JobReclaimedError, match="reclaimed by the sweep before this worker started it"):
        await job.update(status=Status.ACTIVE)
    await job.retry("JobReclaimedError")
    await assert_requeued_once(manager, q, job)  # attempts 0, failures 0: that try never ran
    assert await manager.redis.zcard(q.keys.waiting) == 1


async def test_a_slow_worker_cannot_finish_the_newer_try_of_its_reclaimed_job(
    manager: QueueManager, qname: str, caplog: pytest.LogCaptureFixture
) -> None:
    q, slow = await running_job_of_a_dead_worker(manager, qname)
    slow.attempts += 1
    await slow.update(status=Status.ACTIVE)  # the slow worker started its try (attempt 1)...
    await manager.redis.zadd(q.keys.heartbeat, {slow.id: 1}, xx=True)  # ...then missed its heartbeats
    await sweep_until_reclaimed(q, slow)
    newer = await q.dequeue()  # another worker takes the job: its id is back on the active list
    assert newer is not None and newer.id == slow.id
    newer.attempts += 1
    await newer.update(status=Status.ACTIVE)  # attempt 2
    with caplog.at_level(logging.WARNING, logger="kernel.plugins.queue"):
        await slow.finish(Status.COMPLETE, result="slow")
    assert "late finish" in caplog.text
    assert await manager.redis.lrange(q.keys.active, 0, -1) == [newer.id.encode()]  # still the newer try's
    await newer.finish(Status.COMPLETE, result="newer")
    info = await manager.get_job(qname, newer.key)
    assert info is not None
    assert (info.state, info.result, info.attempts, info.stalls) == ("completed", "newer", 2, 1)
