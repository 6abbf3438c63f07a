"""list_jobs / remove_job: browsing a queue by state and removing one job, on a real Redis."""

from __future__ import annotations

import anyio
import pytest
from kernel_queue import (
    InvalidJobOptionError,
    JobContext,
    QueueManager,
    finished_per_interval,
    list_jobs,
    remove_job,
)

from kernel.testing import wait_until

pytestmark = pytest.mark.anyio


async def test_list_jobs_by_state_with_filters(manager: QueueManager, qname: str) -> None:
    ids = [await manager.add_job(qname, "mail", {"to": f"user{i}"}) for i in range(5)]
    other = await manager.add_job(qname, "sms", {"to": "phone"})
    delayed = await manager.add_job(qname, "mail", {"to": "later"}, delay=3600)

    waiting = await list_jobs(manager, qname, "waiting")
    assert [j.id for j in waiting] == [*ids, other]  # run order
    assert [j.id for j in await list_jobs(manager, qname, "waiting", offset=2, limit=2)] == ids[2:4]
    assert [j.id for j in await list_jobs(manager, qname, "waiting", name="sms")] == [other]
    assert [j.id for j in await list_jobs(manager, qname, "waiting", text="USER3")] == [ids[3]]
    assert [(j.id, j.state) for j in await list_jobs(manager, qname, "delayed")] == [(delayed, "delayed")]
    assert await list_jobs(manager, qname, "failed") == []
    with pytest.raises(InvalidJobOptionError, match="state must be one of"):
        await list_jobs(manager, qname, "aborted")


async def test_remove_job_and_failed_listing(manager: QueueManager, qname: str) -> None:
    async def boom(job: JobContext) -> None:
        raise RuntimeError(f"bad {job.data['n']}")

    await manager.create_worker(qname, boom)
    failed = [await manager.add_job(qname, "x", {"n": i}) for i in range(3)]

    async def all_failed() -> bool:
        return (await manager.get_queue_stats(qname))["failed"] == 3

    await wait_until(all_failed, what="three failed jobs")
    listed = await list_jobs(manager, qname, "failed")
    assert {j.id for j in listed} == set(failed)
    assert all(j.failed_reason and "bad" in j.failed_reason for j in listed)

    assert await remove_job(manager, qname, failed[0]) is True
    assert await manager.get_job(qname, failed[0]) is None
    assert (await manager.get_queue_stats(qname))["failed"] == 2
    assert await remove_job(manager, qname, failed[0]) is False  # already gone


async def test_finished_per_interval(manager: QueueManager, qname: str) -> None:
    async def odd_fails(job: JobContext) -> None:
        if job.data["n"] % 2:
            raise RuntimeError("odd")

    await manager.create_worker(qname, odd_fails)
    for n in range(5):
        await manager.add_job(qname, "x", {"n": n})

    async def finished() -> bool:
        stats = await manager.get_queue_stats(qname)
        return bool(stats["completed"] == 3 and stats["failed"] == 2)

    await wait_until(finished, what="five finished jobs")
    recent = await finished_per_interval(manager, qname, intervals=3, width=60)
    assert len(recent) == 3 and recent[0].start < recent[1].start < recent[2].start
    assert (sum(c.completed for c in recent), sum(c.failed for c in recent)) == (3, 2)
    long_ago = await finished_per_interval(manager, qname, intervals=2, width=60, now=1_000_000.0)
    assert [(c.completed, c.failed) for c in long_ago] == [(0, 0), (0, 0)]
    with pytest.raises(InvalidJobOptionError, match="intervals must be >= 1"):
        await finished_per_interval(manager, qname, intervals=0)


async def test_a_running_job_is_not_removed(manager: QueueManager, qname: str) -> None:
    release = anyio.Event()

    async def hold(job: JobContext) -> None:
        await release.wait()

    await manager.create_worker(qname, hold)
    job_id = await manager.add_job(qname, "x", {})

    async def running() -> bool:
        info = await manager.get_job(qname, job_id)
        return info is not None and info.state == "active"

    await wait_until(running, what="the job to run")
    assert [j.id for j in await list_jobs(manager, qname, "active")] == [job_id]
    with pytest.raises(InvalidJobOptionError, match="is running; it cannot be removed"):
        await remove_job(manager, qname, job_id)
    release.set()

    async def completed() -> bool:
        info = await manager.get_job(qname, job_id)
        return info is not None and info.state == "completed"

    await wait_until(completed, what="the job to complete")
    assert await remove_job(manager, qname, job_id) is True
