"""The Redis adapter's publish deadlines: one asyncio timer per timeout value, shared by every publish.

The guarantee is the one of ``test_publish_deadline`` (never past the deadline; a timeout says
whether the event may be stored); these tests check what sharing the timer must not break: each
publish is cut at its own deadline, those that end in time are never cancelled, nothing is left
behind (no queued entry, no pending cancellation of the task), and a caller's own cancellation
passes through.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
from kernel_eventbus import PublishTimeoutError
from kernel_eventbus._deadline import MAX_QUEUES, DeadlineQueue
from kernel_eventbus._redis import RedisEventBus
from kernel_redis import AnyRedis, connect
from kernel_redis.testing import private_redis_server

from kernel.testing import wait_until

pytestmark = pytest.mark.anyio


async def test_one_timer_cancels_only_the_tasks_past_their_deadline() -> None:
    loop = asyncio.get_running_loop()
    queue = DeadlineQueue(loop, 0.3)
    never = asyncio.Event()
    outcome: dict[str, Any] = {}
    armed: list[str] = []
    all_armed = asyncio.Event()

    async def publish(name: str, finish: asyncio.Event) -> None:
        task = asyncio.current_task()
        assert task is not None
        entry = queue.arm(task)
        armed.append(name)
        if len(armed) == 3:
            all_armed.set()
        t0 = time.monotonic()
        try:
            await finish.wait()
        except asyncio.CancelledError:
            outcome[name] = ("cancelled", time.monotonic() - t0, queue.disarm(entry), task.uncancel())
            return
        outcome[name] = ("ended", time.monotonic() - t0, queue.disarm(entry), task.cancelling())

    done = asyncio.Event()
    stuck = asyncio.create_task(publish("stuck", never))
    quick = asyncio.create_task(publish("quick", done))
    late = asyncio.create_task(publish("late", never))
    await all_armed.wait()
    assert armed == ["stuck", "quick", "late"]  # armed oldest first
    done.set()  # "quick" ends behind "stuck": its entry leaves the queue when "stuck" expires
    await asyncio.gather(stuck, quick, late)
    assert outcome["quick"][0] == "ended"
    assert outcome["quick"][2:] == (True, 0)  # disarmed in time, never cancelled
    for name in ("stuck", "late"):
        what, elapsed, disarmed, left = outcome[name]
        assert what == "cancelled"
        assert elapsed >= 0.3 - 0.01  # the loop may fire a timer up to its clock resolution early
        assert (disarmed, left) == (False, 0)
    assert len(queue) == 0


async def test_concurrent_publishes_leave_nothing_behind(client: AnyRedis, prefix: str) -> None:
    bus = RedisEventBus(client, prefix=prefix, publish_timeout=5.0)
    metas = await asyncio.gather(*(bus.publish("order.placed", {"n": i}) for i in range(200)))
    assert len({m.event_id for m in metas}) == 200
    assert await client.xlen(bus.stream_key("order.placed")) == 200
    assert len(bus._deadlines[5.0]) == 0
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_many_distinct_timeouts_still_publish_within_their_deadline(
    client: AnyRedis, prefix: str
) -> None:
    bus = RedisEventBus(client, prefix=prefix)
    for i in range(MAX_QUEUES + 3):
        await bus.publish("order.placed", {"n": i}, timeout=5.0 + i)
    assert len(bus._deadlines) == MAX_QUEUES  # the rest used a cancel scope each
    assert await client.xlen(bus.stream_key("order.placed")) == MAX_QUEUES + 3


@pytest.mark.standalone_only  # hangs its own private server
async def test_hung_redis_cuts_each_publish_at_its_own_deadline(prefix: str) -> None:
    with private_redis_server() as server:
        assert server.pid is not None
        client = connect(server.url)
        bus = RedisEventBus(client, prefix=prefix)
        try:
            # three pooled connections: each publish below is sent, then meets the silence
            await asyncio.gather(*(bus.publish("order.placed", {"n": 0}) for _ in range(3)))
            os.kill(server.pid, signal.SIGSTOP)
            try:

                async def timed(deadline: float, default: bool) -> tuple[BaseException, float]:
                    t0 = time.monotonic()
                    try:
                        if default:
                            await bus.publish("order.placed", {"n": 1})
                        else:
                            await bus.publish("order.placed", {"n": 1}, timeout=deadline)
                    except BaseException as exc:
                        return exc, time.monotonic() - t0
                    raise AssertionError("publish to a hung server returned")

                bus.publish_timeout = 1.0
                results = await asyncio.gather(timed(1.0, True), timed(1.0, True), timed(0.5, False))
                # a caller's own deadline is not turned into a PublishTimeoutError
                caller = asyncio.ensure_future(bus.publish("order.placed", {"n": 2}, timeout=30))
                await wait_until(lambda: len(bus._deadlines.get(30.0, ())) == 1, what="the publish armed")
                caller.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await caller
            finally:
                os.kill(server.pid, signal.SIGCONT)
            for (error, elapsed), deadline in zip(results, (1.0, 1.0, 0.5), strict=True):
                assert isinstance(error, PublishTimeoutError), repr(error)
                assert error.timeout == deadline
                assert error.may_be_stored is True  # sent to a server that answered nothing
                assert deadline * 0.9 < elapsed < deadline + 2.0
            meta = await bus.publish("order.placed", {"n": 3})
            assert meta.event_name == "order.placed"
            task = asyncio.current_task()
            assert task is not None and task.cancelling() == 0
        finally:
            await client.aclose()
