"""The in-process adapter: same contract (timed retries, DLQ, replay), state lost when the process ends."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from typing import Any

import attrs

from ._bus import EventBus, Subscription, log
from ._dlq import DeadLetterEntry
from ._errors import DeadLetterNotFoundError, SubscriptionError
from ._idempotency import IdempotencyStore, MemoryIdempotencyStore
from ._metadata import EventMetadata, now_rfc3339


class MemoryEventBus(EventBus):
    """Delivers in this process: each subscription gets its own copy and its own retries.

    A crash (or :meth:`close`) loses events in flight, scheduled retries and the
    dead-letter queue; use the Redis adapter when that matters.
    """

    adapter = "memory"

    def __init__(self, *, dlq_max_len: int = 10_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dlq_max_len = dlq_max_len
        self._dlq: OrderedDict[str, DeadLetterEntry] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._idem = MemoryIdempotencyStore()
        self._idle = asyncio.Event()
        self._idle.set()

    async def _publish(self, meta: EventMetadata, body: str) -> None:
        for sub in self._subs.get(meta.event_name, ()):
            self._spawn(sub, body, meta, None)

    def _spawn(self, sub: Subscription, body: str, meta: EventMetadata, first_failure: str | None) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(sub, body, meta, first_failure))
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    async def _deliver(self, sub: Subscription, body: str, meta: EventMetadata,
                       first_failure: str | None) -> None:
        limit = self._limits.get(sub.name)
        if limit is None:
            limit = self._limits[sub.name] = asyncio.Semaphore(sub.concurrency)
        while True:
            # each attempt gets a fresh copy: a handler mutating its data cannot affect a retry or a peer
            data = json.loads(body)
            async with limit:
                if self._by_name.get(sub.name) is not sub:
                    return  # unsubscribed meanwhile
                failure = await self._invoke(sub, data, meta)
            if failure is None:
                return
            first_failure = first_failure or failure.at
            if not failure.retry:
                self._add_dead(self._dead_entry(sub, json.loads(body), meta, failure, first_failure))
                return
            await asyncio.sleep(sub.policy.delay(meta.attempt))
            meta = attrs.evolve(meta, attempt=meta.attempt + 1)

    def _add_dead(self, entry: DeadLetterEntry) -> None:
        self._dlq[entry.key] = entry
        self._dlq.move_to_end(entry.key)
        while len(self._dlq) > self.dlq_max_len:
            self._dlq.popitem(last=False)
        self._dlq_size_changed(len(self._dlq))

    async def join(self) -> None:
        """Wait until no delivery is in flight or waiting for a retry (wrap in ``asyncio.timeout``)."""
        while self._tasks:
            await self._idle.wait()
            await asyncio.sleep(0)  # let a just-spawned retry register

    # ------------------------------------------------------------------ DLQ

    async def get_dead_letter_queue(self, limit: int = 100, *, event: str | None = None
                                    ) -> list[DeadLetterEntry]:
        out: list[DeadLetterEntry] = []
        for entry in reversed(self._dlq.values()):
            if event is None or entry.event_name == event:
                out.append(entry)
                if len(out) >= limit:
                    break
        return out

    async def dead_letter_count(self) -> int:
        return len(self._dlq)

    async def get_dead_letter(self, event_id: str) -> list[DeadLetterEntry]:
        found = [e for e in self._dlq.values() if e.event_id == event_id]
        if not found:
            raise DeadLetterNotFoundError(event_id)
        return found

    async def replay_from_dlq(self, event_id: str) -> int:
        entries = await self.get_dead_letter(event_id)
        missing = [e.subscription for e in entries if e.subscription not in self._by_name]
        if missing:
            # nobody in this process to deliver to: keep the entries rather than drop them
            raise SubscriptionError(
                f"cannot replay {event_id}: subscription {missing[0]!r} is not subscribed in this process")
        replayed_at = now_rfc3339()
        for entry in entries:
            del self._dlq[entry.key]
            meta = attrs.evolve(entry.metadata, attempt=1, replayed_at=replayed_at)
            self._spawn(self._by_name[entry.subscription], json.dumps(entry.data), meta, None)
        self._dlq_size_changed(len(self._dlq))
        return len(entries)

    async def clear_dead_letter_queue(self) -> int:
        n = len(self._dlq)
        self._dlq.clear()
        self._dlq_size_changed(0)
        return n

    async def delete_dead_letter(self, event_id: str) -> int:
        keys = [k for k, e in self._dlq.items() if e.event_id == event_id]
        for k in keys:
            del self._dlq[k]
        self._dlq_size_changed(len(self._dlq))
        return len(keys)

    def idempotency_store(self) -> IdempotencyStore:
        return self._idem

    async def close(self) -> None:
        lost = len(self._tasks)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if lost:
            log.warning("eventbus: memory adapter closed with %d deliveries in flight or awaiting retry; "
                        "they are lost", lost)
        await super().close()
