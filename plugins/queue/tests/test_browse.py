"""list_jobs / remove_job: browsing a queue by state and removing one job, on a real Redis."""

from __future__ import annotations

import pytest
from kernel_queue import InvalidJobOptionError, JobContext, QueueManager, list_jobs, remove_job

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
