"""QueueManager API against a real private redis-server: enqueue, inspect, retry policy, priorities."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from itertools import pairwise
from typing import Any

import anyio
import pytest
from kernel_queue import (
    InvalidJobOptionError,
    JobContext,
    JobDataError,
    JobInfo,
    QueueManager,
    backoff_delay,
)

from kernel.testing import wait_until

SLACK = 1.0
"""Seconds a timing assertion allows above its exact value: a loaded 2-core CI machine needs that much."""


async def _is_zero(value: Awaitable[int]) -> bool:
    return await value == 0


async def wait_state(
    manager: QueueManager, queue: str, job_id: str, state: str, within: float = 10.0
) -> JobInfo:
    with anyio.fail_after(within):
        while True:
            info = await manager.get_job(queue, job_id)
            if info is not None and info.state == state:
                return info
            await anyio.sleep(0.02)


@pytest.mark.anyio
async def test_add_job_then_stats_and_get_job(manager: QueueManager, qname: str) -> None:
    jid = await manager.add_job(qname, "send-notification", {"notification_id": "123", "user_id": "456"})
    stats = await manager.get_queue_stats(qname)
    assert stats == {
        "queue_name": qname,
        "waiting": 1,
        "active": 0,
        "completed": 0,
        "failed": 0,
        "delayed": 0,
        "total": 1,
        "paused": False,
    }
    info = await manager.get_job(qname, jid)
    assert info is not None
    assert (info.state, info.name, info.data, info.attempts, info.max_attempts) == (
        "waiting",
        "send-notification",
        {"notification_id": "123", "user_id": "456"},
        0,
        1,
    )
    assert await manager.get_job(qname, "nope") is None
    assert qname in [s["queue_name"] for s in await manager.get_all_queue_stats()]


@pytest.mark.anyio
async def test_processor_gets_data_progress_and_result(manager: QueueManager, qname: str) -> None:
    seen: list[tuple[Any, str, str, int]] = []

    async def proc(job: JobContext) -> dict[str, Any]:
        seen.append((job.data, job.name, job.id, job.attempts))
        await job.update_progress(25)
        return {"success": True}

    jid = await manager.add_job(qname, "n", {"k": [1, 2]})
    await manager.create_worker(qname, proc, concurrency=2)
    info = await wait_state(manager, qname, jid, "completed")
    assert seen == [({"k": [1, 2]}, "n", jid, 1)]
    assert (info.result, info.progress, info.attempts, info.failures, info.failed_reason) == (
        {"success": True},
        100,
        1,
        0,
        None,
    )
    stats = await manager.get_queue_stats(qname)
    assert (stats["completed"], stats["total"]) == (1, 0)


@pytest.mark.anyio
async def test_non_json_data_is_rejected_at_enqueue(manager: QueueManager, qname: str) -> None:
    with pytest.raises(JobDataError, match="JSON-serializable"):
        await manager.add_job(qname, "x", {"when": object()})
    with pytest.raises(JobDataError, match="JSON-serializable"):
        await manager.add_job(qname, "x", {"ratio": math.nan})
    assert (await manager.get_queue_stats(qname))["total"] == 0


@pytest.mark.anyio
async def test_non_json_result_fails_the_job_with_a_clear_reason(manager: QueueManager, qname: str) -> None:
    async def proc(job: JobContext) -> object:
        return object()

    jid = await manager.add_job(qname, "x", None)
    await manager.create_worker(qname, proc)
    info = await wait_state(manager, qname, jid, "failed")
    assert "JSON-serializable" in (info.failed_reason or "")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": 0}, "priority must be"),
        ({"priority": 3_000_000}, "priority must be"),
        ({"priority": 1.5}, "priority must be"),
        ({"attempts": 0}, "attempts"),
        ({"backoff": {"type": "linear", "delay": 1}}, "backoff type"),
        ({"backoff": {"type": "fixed"}}, "backoff must be"),
        ({"delay": -1}, "delay must be"),
        ({"timeout": "5"}, "timeout must be"),
    ],
)
async def test_bad_options_raise_typed_errors(
    manager: QueueManager, qname: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidJobOptionError, match=message):
        await manager.add_job(qname, "x", {}, **options)


@pytest.mark.anyio
async def test_job_id_dedupes(manager: QueueManager, qname: str) -> None:
    a = await manager.add_job(qname, "x", {"v": 1}, job_id="order-42")
    b = await manager.add_job(qname, "x", {"v": 2}, job_id="order-42")
    assert a == b == "order-42"
    info = await manager.get_job(qname, "order-42")
    assert info is not None and info.data == {"v": 1}
    assert (await manager.get_queue_stats(qname))["waiting"] == 1


@pytest.mark.anyio
async def test_priorities_one_is_highest_fifo_within_and_none_last(manager: QueueManager, qname: str) -> None:
    order: list[str] = []

    async def proc(job: JobContext) -> None:
        order.append(job.data["tag"])

    specs = [(None, "n1"), (5, "p5"), (1, "p1a"), (3, "p3"), (None, "n2"), (1, "p1b"), (2_097_152, "pmax")]
    for prio, tag in specs:
        await manager.add_job(qname, "x", {"tag": tag}, priority=prio)
    await manager.create_worker(qname, proc, concurrency=1)
    await wait_until(lambda: len(order) >= len(specs), 10)
    assert order == ["p1a", "p1b", "p3", "p5", "pmax", "n1", "n2"]


@pytest.mark.anyio
async def test_queue_default_priority_and_delayed_job_keeps_priority(
    manager: QueueManager, qname: str
) -> None:
    order: list[str] = []

    async def proc(job: JobContext) -> None:
        order.append(job.data)

    manager.get_queue(qname, priority=10)
    await manager.add_job(qname, "x", "default-10")
    await manager.schedule_job(qname, "x", "delayed-1", 0.2, priority=1)
    await manager.add_job(qname, "x", "explicit-5", priority=5)
    assert (await manager.get_queue_stats(qname))["delayed"] == 1
    with anyio.fail_after(10):  # promote the due job before any worker runs
        while (await manager.get_queue_stats(qname))["delayed"]:
            await manager.get_queue(qname).schedule()
            await anyio.sleep(0.02)
    await manager.create_worker(qname, proc)
    await wait_until(lambda: len(order) >= 3, 10)
    assert order == ["delayed-1", "explicit-5", "default-10"]


@pytest.mark.anyio
async def test_schedule_job_runs_after_its_delay(manager: QueueManager, qname: str) -> None:
    started: list[float] = []

    async def proc(job: JobContext) -> None:
        started.append(time.time())

    await manager.create_worker(qname, proc)
    t0 = time.time()
    jid = await manager.schedule_job(qname, "x", {}, timedelta(seconds=0.4))
    info = await manager.get_job(qname, jid)
    assert info is not None and info.state == "delayed"
    await wait_state(manager, qname, jid, "completed")
    assert 0.4 <= started[0] - t0 < 0.4 + SLACK


def test_backoff_formula_is_exact() -> None:
    exp = {"type": "exponential", "delay": 2.0}
    assert [backoff_delay(exp, k) for k in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert [backoff_delay({"type": "fixed", "delay": 1.5}, k) for k in (1, 2, 3)] == [1.5, 1.5, 1.5]
    assert backoff_delay(None, 3) == 0.0


@pytest.mark.anyio
async def test_failing_job_runs_attempts_times_with_exact_backoff_then_fails_once(
    manager: QueueManager,
    qname: str,
    subscribed: Callable[[QueueManager, str], Awaitable[None]],
    barrier: Callable[[QueueManager, str, str], Awaitable[None]],
) -> None:
    runs: list[float] = []
    events: list[dict[str, Any]] = []
    manager.listen_to_queue_events(qname, events.append)
    await subscribed(manager, qname)

    async def proc(job: JobContext) -> None:
        runs.append(time.monotonic())
        raise RuntimeError(f"boom {job.attempts}")

    await manager.create_worker(qname, proc)
    k = 3  # fails k times and is retried after each, then its last (k+1-th) try fails too
    jid = await manager.add_job(qname, "x", {}, attempts=k + 1, backoff={"type": "exponential", "delay": 0.2})
    info = await wait_state(manager, qname, jid, "failed")
    assert len(runs) == k + 1
    gaps = [b - a for a, b in pairwise(runs)]
    # Exact delays 0.2, 0.4, 0.8 (lower bounds); promotion runs every schedule_interval (0.05 s here).
    for gap, expected in zip(gaps, [0.2, 0.4, 0.8], strict=True):
        assert expected <= gap < expected + SLACK, gaps
    assert (info.attempts, info.failures, info.max_attempts) == (k + 1, k + 1, k + 1)
    assert info.failed_reason is not None and "boom 4" in info.failed_reason
    # A barrier on the channel: once it arrives, every event published before it has been delivered.
    await barrier(manager, qname, '{"event": "barrier"}')
    await wait_until(lambda: any(e["event"] == "barrier" for e in events))
    stats = await manager.get_queue_stats(qname)
    assert (stats["failed"], stats["total"]) == (1, 0)
    assert [e["event"] for e in events].count("failed") == 1
    assert (await manager.get_counts(qname))["failed"] == 1


@pytest.mark.anyio
async def test_fixed_backoff_and_success_on_a_retry(manager: QueueManager, qname: str) -> None:
    runs: list[float] = []

    async def proc(job: JobContext) -> str:
        runs.append(time.monotonic())
        if job.attempts < 3:
            raise ValueError("not yet")
        return "ok"

    await manager.create_worker(qname, proc)
    jid = await manager.add_job(qname, "x", {}, attempts=5, backoff={"type": "fixed", "delay": 0.15})
    info = await wait_state(manager, qname, jid, "completed")
    assert (info.attempts, info.failures, info.result) == (3, 2, "ok")
    assert all(0.15 <= b - a < 0.15 + SLACK for a, b in pairwise(runs)), runs


@pytest.mark.anyio
async def test_timeout_fails_a_try(manager: QueueManager, qname: str) -> None:
    async def proc(job: JobContext) -> None:
        await anyio.sleep(5)

    await manager.create_worker(qname, proc)
    jid = await manager.add_job(qname, "x", {}, timeout=0.2)
    info = await wait_state(manager, qname, jid, "failed", within=5)
    assert "TimeoutError" in (info.failed_reason or "")


@pytest.mark.anyio
async def test_bulk_add_mixed_options(manager: QueueManager, qname: str) -> None:
    ids = await manager.add_bulk_jobs(
        qname,
        [
            {"name": "send-notification", "data": {"notification_id": "1", "user_id": "10"}},
            {"name": "send-notification", "data": {"notification_id": "2"}, "priority": 1},
            {"name": "later", "data": None, "delay": 30},
            {"name": "dup", "data": 1, "job_id": "same"},
            {"name": "dup", "data": 2, "job_id": "same"},
        ],
    )
    assert len(ids) == 5 and ids[3] == ids[4] == "same"
    stats = await manager.get_queue_stats(qname)
    assert (stats["waiting"], stats["delayed"]) == (3, 1)
    with pytest.raises(InvalidJobOptionError, match="jobs\\[0\\]"):
        await manager.add_bulk_jobs(qname, [{"data": 1}])
    with pytest.raises(InvalidJobOptionError, match="unknown keys"):
        await manager.add_bulk_jobs(qname, [{"name": "x", "prio": 1}])


@pytest.mark.anyio
async def test_unknown_job_name_fails_with_clear_error(manager: QueueManager, qname: str) -> None:
    async def proc(job: JobContext) -> None:
        return None

    manager.register_processor(qname, "known", proc)
    await manager.create_worker(qname)
    jid = await manager.add_job(qname, "unknown", {})
    info = await wait_state(manager, qname, jid, "failed")
    assert "no processor for job 'unknown'" in (info.failed_reason or "")


@pytest.mark.anyio
async def test_register_processor_validation(manager: QueueManager, qname: str) -> None:
    def sync(job: JobContext) -> None:
        return None

    async def a(job: JobContext) -> None:
        return None

    async def b(job: JobContext) -> None:
        return None

    with pytest.raises(InvalidJobOptionError, match="async function"):
        manager.register_processor(qname, "x", sync)  # type: ignore[arg-type]
    manager.register_processor(qname, "x", a)
    with pytest.raises(InvalidJobOptionError, match="already has a processor"):
        manager.register_processor(qname, "x", b)
    manager.register_processor(qname, "x", b, replace=True)
    assert manager.processors.resolve(qname, "x") is b
    with pytest.raises(InvalidJobOptionError, match="queue name"):
        manager.get_queue("a:b")


@pytest.mark.anyio
async def test_clean_queue_and_retry_failed(manager: QueueManager, qname: str) -> None:
    async def proc(job: JobContext) -> str:
        if job.data == "bad" and job.max_attempts == 1 and job.attempts == 1:
            raise RuntimeError("bad data")
        return "fine"

    await manager.create_worker(qname, proc, concurrency=2)
    good = [await manager.add_job(qname, "x", "good") for _ in range(3)]
    bad = await manager.add_job(qname, "x", "bad")
    await wait_state(manager, qname, bad, "failed")
    for jid in good:
        await wait_state(manager, qname, jid, "completed")
    assert await manager.clean_queue(qname, grace=60, limit=10, status="completed") == []
    removed = await manager.clean_queue(qname, 0, 2, "completed")
    assert len(removed) == 2 and set(removed) <= set(good)
    assert (await manager.get_queue_stats(qname))["completed"] == 1
    assert await manager.get_job(qname, removed[0]) is None
    # retry: the failed job runs again with a fresh budget (its second try succeeds).
    assert await manager.retry_failed(qname, bad) == 1
    info = await wait_state(manager, qname, bad, "completed")
    assert (info.attempts, info.result) == (2, "fine")
    stats = await manager.get_queue_stats(qname)
    assert (stats["failed"], stats["completed"]) == (0, 2)
    assert (await manager.get_counts(qname)) == {"completed": 4, "failed": 1}
    with pytest.raises(InvalidJobOptionError, match="not failed"):
        await manager.retry_failed(qname, bad)
    with pytest.raises(InvalidJobOptionError, match="status must be"):
        await manager.clean_queue(qname, 0, 1, "active")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_clean_waiting_and_delayed(manager: QueueManager, qname: str) -> None:
    await manager.add_job(qname, "x", 1)
    await manager.add_job(qname, "x", 2, delay=60)
    assert len(await manager.clean_queue(qname, 0, 0, "waiting")) == 1
    assert len(await manager.clean_queue(qname, 0, 0, "delayed")) == 1
    assert (await manager.get_queue_stats(qname))["total"] == 0


@pytest.mark.anyio
async def test_pause_and_resume_in_process(manager: QueueManager, qname: str) -> None:
    done: list[int] = []

    async def proc(job: JobContext) -> None:
        done.append(job.data)

    await manager.pause_queue(qname)
    await manager.create_worker(qname, proc, concurrency=3)
    for i in range(5):
        await manager.add_job(qname, "x", i)
    # Each enqueue leaves a wake token; the worker takes one per (refused) dequeue while paused.
    wake = manager.get_queue(qname).keys.wake
    await wait_until(lambda: _is_zero(manager.redis.llen(wake)), what="the worker's dequeues while paused")
    assert done == []
    stats = await manager.get_queue_stats(qname)
    assert (stats["paused"], stats["waiting"]) == (True, 5)
    await manager.resume_queue(qname)
    await wait_until(lambda: len(done) >= 5, 5)
    assert sorted(done) == [0, 1, 2, 3, 4]


@pytest.mark.anyio
async def test_queue_events_are_published(
    manager: QueueManager, qname: str, subscribed: Callable[[QueueManager, str], Awaitable[None]]
) -> None:
    events: list[dict[str, Any]] = []
    manager.listen_to_queue_events(qname, events.append)
    await subscribed(manager, qname)

    async def proc(job: JobContext) -> str:
        await job.update_progress(40)
        return "r"

    jid = await manager.add_job(qname, "x", {})
    await manager.create_worker(qname, proc)
    await wait_state(manager, qname, jid, "completed")
    await wait_until(lambda: bool(any(e["event"] == "completed" for e in events)), 3)
    mine = [(e["event"], e.get("progress"), e.get("result")) for e in events if e["job_id"] == jid]
    assert mine == [
        ("waiting", None, None),
        ("active", None, None),
        ("progress", 40, None),
        ("completed", None, "r"),
    ]


@pytest.mark.anyio
async def test_recurring_job_in_process_add_list_remove(manager: QueueManager, qname: str) -> None:
    ticks: list[str] = []

    async def proc(job: JobContext) -> None:
        ticks.append(job.id)

    key = await manager.schedule_recurring_job(qname, "aggregate-stats", {}, "* * * * * *")
    assert key == "aggregate-stats"
    assert (await manager.list_recurring_jobs(qname))[key]["cron"] == "* * * * * *"
    await manager.create_worker(qname, proc)
    await wait_until(lambda: len(ticks) >= 2, 5)
    assert await manager.remove_recurring_job(qname, key)

    async def idle() -> bool:  # a tick that was already running has finished
        stats = await manager.get_queue_stats(qname)
        return stats["active"] == stats["waiting"] == 0

    await wait_until(idle, what="no tick running or waiting")
    count = len(ticks)
    await anyio.sleep(1.5)  # an observation window longer than the 1 s cron period: no tick fires
    assert len(ticks) == count
    assert all(t.startswith("repeat:aggregate-stats:") for t in ticks)
    assert (await manager.get_queue_stats(qname))["delayed"] == 0
    with pytest.raises(InvalidJobOptionError, match="invalid cron"):
        await manager.schedule_recurring_job(qname, "x", {}, "every day")
