"""Browsing a queue's jobs by state, and removing one job (for operator tools such as the console)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

import attrs
from saq.job import Status

from ._errors import InvalidJobOptionError
from ._job import JobInfo, JobState

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from ._manager import QueueManager
    from ._queue import KernelRedisQueue

LISTABLE: tuple[JobState, ...] = ("waiting", "delayed", "active", "completed", "failed")
"""The states :func:`list_jobs` lists (aborted jobs are kept with the failed ones)."""
_BATCH = 200


async def _ids(q: KernelRedisQueue, state: JobState, start: int, stop: int) -> list[bytes]:
    """Job ids of ``state`` in display order (newest finished first), positions ``start..stop``."""
    k = q.keys
    if state == "waiting":
        return list(await q.r.zrange(k.waiting, start, stop))
    if state == "delayed":
        return list(await q.r.zrangebyscore(k.incomplete, "(0", "+inf", start=start, num=stop - start + 1))
    if state == "active":
        return list(await cast("Awaitable[list[bytes]]", q.r.lrange(k.active, start, stop)))
    if state in ("completed", "failed"):
        return list(await q.r.zrevrange(k.completed if state == "completed" else k.failed, start, stop))
    raise InvalidJobOptionError(f"state must be one of {', '.join(LISTABLE)}, got {state!r}")


def _matches(info: JobInfo, name: str | None, text: str | None) -> bool:
    if name and info.name != name:
        return False
    if text:
        haystack = f"{info.id} {info.data!r} {info.failed_reason or ''}".lower()
        return text.lower() in haystack
    return True


async def list_jobs(
    manager: QueueManager,
    queue: str,
    state: JobState,
    *,
    offset: int = 0,
    limit: int = 50,
    name: str | None = None,
    text: str | None = None,
    scan: int = 5000,
) -> list[JobInfo]:
    """Jobs of ``queue`` in ``state``: waiting in run order, delayed by due time, finished newest first.

    ``name`` keeps jobs of that job name, ``text`` jobs whose id, data or failure reason contain it
    (case-insensitive); with a filter, at most ``scan`` jobs after ``offset`` are looked at.
    """
    if limit <= 0 or offset < 0:
        raise InvalidJobOptionError(f"limit must be > 0 and offset >= 0, got {limit!r} and {offset!r}")
    q = manager.get_queue(queue)
    filtered = bool(name or text)
    out: list[JobInfo] = []
    position, end = offset, offset + (scan if filtered else limit)
    while len(out) < limit and position < end:
        ids = await _ids(q, state, position, min(position + _BATCH, end) - 1)
        if not ids:
            break
        position += len(ids)
        jobs = await q.jobs(q.job_key_from_id(i.decode()) for i in ids)
        for job in jobs:
            if job is None:  # removed meanwhile
                continue
            info = JobInfo.from_job(job, delayed=state == "delayed")
            if _matches(info, name, text):
                out.append(info)
                if len(out) == limit:
                    break
    return out


async def remove_job(manager: QueueManager, queue: str, job_id: str) -> bool:
    """Delete one job that is not running (waiting, delayed or finished); False if it is unknown.

    A running job raises ``InvalidJobOptionError``: it cannot be removed under its worker.
    """
    q = manager.get_queue(queue)
    job = await q.job(job_id)
    if job is None:
        return False
    if job.status == Status.ACTIVE:
        raise InvalidJobOptionError(f"job {job_id!r} on queue {queue!r} is running; it cannot be removed")
    k = q.keys
    async with q.r.pipeline(transaction=True) as pipe:
        for zset in (k.waiting, k.incomplete, k.completed, k.failed):
            pipe.zrem(zset, job.id)
        pipe.delete(job.id)
        results = await pipe.execute()
    return bool(results[-1])


@attrs.frozen
class FinishedCounts:
    """Jobs of one queue that finished in one interval (and are still kept: see the retentions)."""

    start: float
    """Epoch seconds where the interval starts; it lasts :func:`finished_per_interval`'s ``width``."""
    completed: int
    failed: int
    """Failed or aborted."""


async def finished_per_interval(
    manager: QueueManager, queue: str, *, intervals: int = 12, width: float = 300.0, now: float | None = None
) -> list[FinishedCounts]:
    """Completed and failed jobs of ``queue`` per interval, oldest first, ending at ``now``.

    The default is the last hour in 5-minute steps. Counted from the finished jobs Redis still
    keeps, so a ``completed_retention`` / ``failed_retention`` shorter than the span, or a
    ``clean_queue``, lowers the older counts. One transaction of ``ZCOUNT``s.
    """
    if intervals < 1 or width <= 0:
        raise InvalidJobOptionError(f"intervals must be >= 1 and width > 0, got {intervals!r} and {width!r}")
    q = manager.get_queue(queue)
    end = time.time() if now is None else now
    starts = [end - width * (intervals - i) for i in range(intervals)]
    async with q.r.pipeline(transaction=True) as pipe:
        for start in starts:
            low, high = int(start * 1000), f"({int((start + width) * 1000)}"
            pipe.zcount(q.keys.completed, low, high)
            pipe.zcount(q.keys.failed, low, high)
        counts = await pipe.execute()
    return [
        FinishedCounts(start, int(counts[2 * i]), int(counts[2 * i + 1])) for i, start in enumerate(starts)
    ]
