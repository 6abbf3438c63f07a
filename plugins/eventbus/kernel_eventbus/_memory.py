"""The in-process adapter: same contract (timed retries, DLQ, replay), state lost when the process ends."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

import anyio
import attrs

from ._bus import EventBus, PublishProgress, Subscription, log
from ._dlq import DeadLetterEntry, MemoryDeadLetterStore
from ._errors import SubscriptionError
from ._idempotency import IdempotencyStore, MemoryIdempotencyStore
from ._metadata import EventMetadata

# (JSON body, metadata of the attempt, first failure time)
_Item = tuple[str, EventMetadata, "str | None"]


@attrs.define(eq=False)
class _Queue:
    """The deliveries waiting for one subscription and the worker tasks that run them.

    A deque and the futures of idle workers rather than an ``asyncio.Queue``: adding and taking an
    item are a few C calls instead of several Python-level methods each, once per delivery. Loop
    futures, not ``anyio.Event``: a new event per wait would cost a backend look-up and a wrapper
    object on this per-delivery path (the bus is asyncio-only anyway: see ``_enqueue``).
    """

    items: deque[_Item] = attrs.field(factory=deque)
    idle: deque[asyncio.Future[None]] = attrs.field(factory=deque)
    """One future per worker waiting for an item."""
    workers: list[asyncio.Task[None]] = attrs.field(factory=list)
    timers: dict[int, asyncio.TimerHandle] = attrs.field(factory=dict)
    """Scheduled retries, by a serial number the callback gets."""
    serial: int = 0

    def put(self, item: _Item) -> None:
        """Queue ``item`` and wake one idle worker, if any."""
        self.items.append(item)
        if self.idle:
            self.wake()

    def wake(self) -> None:
        """Wake the first idle worker still waiting."""
        idle = self.idle
        while idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def wait(self) -> None:
        """Wait (as a worker) until an item may be there: check ``items`` again after it returns."""
        waiter = asyncio.get_running_loop().create_future()
        self.idle.append(waiter)
        try:
            await waiter
        except BaseException:
            waiter.cancel()
            if self.items and waiter.done() and not waiter.cancelled():
                self.wake()  # woken, then cancelled: hand the wake-up on
            raise


class MemoryEventBus(EventBus):
    """Delivers in this process: each subscription has its own queue, workers and retries.

    A crash (or :meth:`close`) loses events in flight, scheduled retries and the
    dead-letter queue; use the Redis adapter when that matters.
    """

    adapter = "memory"
    publish_waits = False

    def __init__(self, *, dlq_max_len: int = 10_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dead_letters = self._dead_letters = MemoryDeadLetterStore(dlq_max_len)
        self._queues: dict[str, _Queue] = {}
        self._outstanding = 0
        """Deliveries queued, running or waiting for a retry."""
        self._idle: anyio.Event | None = None
        """What :meth:`join` waits for, made by the first waiter and set (then dropped) when
        ``_outstanding`` reaches 0: publishing touches no event (an ``anyio.Event`` cannot be
        cleared, and making one per 0 -> 1 transition would cost every isolated publish)."""
        self._idem = MemoryIdempotencyStore()

    # ------------------------------------------------------------------ delivering

    async def _publish(self, meta: EventMetadata, body: str, progress: PublishProgress) -> None:
        self._publish_nowait(meta, body)

    def _publish_nowait(self, meta: EventMetadata, body: str) -> None:
        # queued without awaiting anything (publish_waits = False): never waits, so never times out
        subs = self._subs.get(meta.event_name)
        if not subs:
            return
        item: _Item = (body, meta, None)
        queues = self._queues
        for sub in subs:
            queue = queues.get(sub.name)
            if queue is None:
                self._enqueue(sub, item)  # the first delivery of a subscription starts its workers
                continue
            self._outstanding += 1
            queue.items.append(item)  # queue.put(item), inlined
            if queue.idle:
                queue.wake()

    def _enqueue(self, sub: Subscription, item: _Item) -> None:
        queue = self._queues.get(sub.name)
        if queue is None:
            queue = self._queues[sub.name] = _Queue()
            # asyncio tasks, not a task group: called from subscribe/publish/replay (synchronous or
            # in any caller's task), the bus has no task of its own to hold a group open
            loop = asyncio.get_running_loop()
            queue.workers = [loop.create_task(self._work(sub, queue)) for _ in range(sub.concurrency)]
        self._outstanding += 1
        queue.put(item)

    def _finished(self, n: int = 1) -> None:
        self._outstanding -= n
        if self._outstanding <= 0:
            self._outstanding = 0
            self._set_idle()

    def _set_idle(self) -> None:
        idle = self._idle
        if idle is not None:
            self._idle = None
            idle.set()

    async def _work(self, sub: Subscription, queue: _Queue) -> None:
        items = queue.items
        while True:
            if not items:
                await queue.wait()
                continue
            body, meta, first_failure = items.popleft()
            try:
                # each attempt gets a fresh copy: a handler mutating its data cannot affect a retry or a peer
                failure = await self._invoke(sub, json.loads(body), meta)
                if failure is not None:
                    first_failure = first_failure or failure.at
                    if failure.retry:
                        retry = (body, attrs.evolve(meta, attempt=meta.attempt + 1), first_failure)
                        self._outstanding += 1
                        queue.serial += 1
                        # a loop timer (no anyio equivalent): cancellable from _stopped, no task per retry
                        queue.timers[queue.serial] = asyncio.get_running_loop().call_later(
                            sub.policy.delay(meta.attempt), self._requeue, sub, queue, queue.serial, retry
                        )
                    else:
                        entry = self._dead_entry(sub, json.loads(body), meta, failure, first_failure)
                        self._dlq_size_changed(await self._dead_letters.add(entry))
            finally:
                self._outstanding -= 1  # _finished(), inlined: once per delivery
                if self._outstanding <= 0:
                    self._outstanding = 0
                    if self._idle is not None:
                        self._set_idle()

    def _requeue(self, sub: Subscription, queue: _Queue, serial: int, item: _Item) -> None:
        queue.timers.pop(serial, None)
        if self._queues.get(sub.name) is queue:
            queue.put(item)
        else:
            self._finished()  # unsubscribed meanwhile

    def _stopped(self, sub: Subscription) -> None:
        queue = self._queues.pop(sub.name, None)
        if queue is None:
            return
        for task in queue.workers:
            task.cancel()
        for timer in queue.timers.values():
            timer.cancel()
        # what was waiting is dropped with the subscription
        self._finished(len(queue.items) + len(queue.timers))

    async def join(self) -> None:
        """Wait until no delivery is queued, running or waiting for a retry (wrap in ``anyio.fail_after``)."""
        if not self._outstanding:
            return
        idle = self._idle
        if idle is None:
            idle = self._idle = anyio.Event()
        await idle.wait()

    # ------------------------------------------------------------------ DLQ

    @property
    def dlq_max_len(self) -> int:
        """How many dead-letter entries are kept (the oldest are dropped first)."""
        return self._dead_letters.max_len

    async def _redeliver(self, entries: list[DeadLetterEntry], replayed_at: str) -> int:
        missing = [e.subscription for e in entries if e.subscription not in self._by_name]
        if missing:
            # nobody in this process to deliver to: keep the entries rather than drop them
            raise SubscriptionError(
                f"cannot replay {entries[0].event_id}: subscription {missing[0]!r} is "
                "not subscribed in this process"
            )
        n = 0
        for entry in entries:
            if self._dead_letters.take(entry.key):
                meta = attrs.evolve(entry.metadata, attempt=1, replayed_at=replayed_at)
                self._enqueue(self._by_name[entry.subscription], (json.dumps(entry.data), meta, None))
                n += 1
        return n

    def idempotency_store(self) -> IdempotencyStore:
        """An in-process store (see :class:`MemoryIdempotencyStore`)."""
        return self._idem

    async def close(self) -> None:
        """Stop the workers and scheduled retries; what was queued, running or awaiting a retry is lost."""
        lost = self._outstanding
        tasks = [t for q in self._queues.values() for t in q.workers]
        for sub in list(self._by_name.values()):
            self._stopped(sub)
        if tasks:
            # waits for the cancelled worker tasks of _enqueue (anyio waits only for a group's own tasks)
            await asyncio.gather(*tasks, return_exceptions=True)
        if lost:
            log.warning(
                "eventbus: memory adapter closed with %d deliveries queued, running or awaiting "
                "retry; they are lost",
                lost,
            )
        self._outstanding = 0
        self._set_idle()
        await super().close()
