"""SAQ's RedisQueue with priorities, pause, heartbeats, exact retries and persisted finished sets."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from saq.job import Job, Status
from saq.queue.redis import RedisQueue
from saq.utils import now

from ._errors import JobDataError, JobTooLargeError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript
    from saq.types import CountKind

log = logging.getLogger("kernel.plugins.queue")

MAX_PRIORITY = 2_097_152
"""Largest priority number (BullMQ's limit); 1 is the highest priority."""
NO_PRIORITY_RANK = MAX_PRIORITY + 1
"""Jobs without a priority run after every prioritised job (BullMQ's convention)."""
_RANK_SHIFT = 2**31
"""score = rank * 2**31 + 2**30 + seq (seq - for re-runs that go first): exact in a double, FIFO per rank."""
MAX_TOKENS = 1000
"""Wake-up tokens kept at most; workers drain the waiting set on every wake-up anyway."""

EventHook = Callable[[str, Job, dict[str, Any]], Awaitable[None]]

_ENQUEUE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], KEYS[2])
if ARGV[2] == '0' then
    local seq = redis.call('INCR', KEYS[5])
    redis.call('ZADD', KEYS[3], tonumber(ARGV[3]) * 2147483648 + 1073741824 + seq, KEYS[2])
    if redis.call('LPUSH', KEYS[4], 1) > 1000 then redis.call('LTRIM', KEYS[4], 0, 999) end
end
if ARGV[4] ~= '' then redis.call('PUBLISH', KEYS[6], ARGV[4]) end
return 1
"""

# Pop the best waiting job and mark it running in one step: a worker killed at any point
# leaves the job either waiting or in active+heartbeats, where the sweep finds it.
_DEQUEUE = """
if redis.call('EXISTS', KEYS[4]) == 1 then return false end
local r = redis.call('ZPOPMIN', KEYS[1])
if #r == 0 then return false end
local id = r[1]
redis.call('RPUSH', KEYS[2], id)
redis.call('ZADD', KEYS[3], ARGV[1], id)
return {id, redis.call('GET', id)}
"""

# Writes from a worker only land while the job is still in the active list: after a sweep
# reclaimed it, a late (zombie) worker must not overwrite the new attempt's record.
_UPDATE = """
if redis.call('LPOS', KEYS[2], KEYS[1]) == false then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('PUBLISH', KEYS[3], ARGV[3]) end
return 1
"""

_FINISH = """
local removed = redis.call('LREM', KEYS[1], 1, KEYS[3])
if ARGV[4] == '1' and removed == 0 then return 0 end
redis.call('ZREM', KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[5], KEYS[3])
redis.call('ZREM', KEYS[8], KEYS[3])
if ARGV[7] ~= '0' then
    redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[7])
else
    redis.call('SET', KEYS[3], ARGV[1])
end
if ARGV[3] ~= '' then
    redis.call('ZADD', KEYS[4], ARGV[2], KEYS[3])
    redis.call('HINCRBY', KEYS[6], ARGV[3], 1)
    if ARGV[7] ~= '0' then redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[8]) end
end
redis.call('PUBLISH', KEYS[3], ARGV[5])
if ARGV[6] ~= '' then redis.call('PUBLISH', KEYS[7], ARGV[6]) end
return 1
"""

_REQUEUE = """
local removed = redis.call('LREM', KEYS[1], 1, KEYS[7])
if ARGV[4] == '1' and removed == 0 then return 0 end
redis.call('ZREM', KEYS[2], KEYS[7])
redis.call('ZREM', KEYS[8], KEYS[7])
redis.call('SET', KEYS[7], ARGV[1])
if ARGV[2] == '0' then
    redis.call('ZADD', KEYS[3], 0, KEYS[7])
    local seq = redis.call('INCR', KEYS[6])
    if ARGV[5] == '1' then seq = -seq end
    redis.call('ZADD', KEYS[4], tonumber(ARGV[3]) * 2147483648 + 1073741824 + seq, KEYS[7])
    if redis.call('LPUSH', KEYS[5], 1) > 1000 then redis.call('LTRIM', KEYS[5], 0, 999) end
else
    redis.call('ZADD', KEYS[3], ARGV[2], KEYS[7])
end
redis.call('PUBLISH', KEYS[7], 'queued')
return 1
"""

_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], 1, ARGV[1], 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
    redis.call('ZADD', KEYS[1], 0, id)
    local rank = tonumber(ARGV[2])
    local raw = redis.call('GET', id)
    if raw then
        local ok, job = pcall(cjson.decode, raw)
        if ok and type(job['priority']) == 'number' and job['priority'] > 0 then rank = job['priority'] end
        local seq = redis.call('INCR', KEYS[4])
        redis.call('ZADD', KEYS[2], rank * 2147483648 + 1073741824 + seq, id)
        redis.call('LPUSH', KEYS[3], 1)
    else
        redis.call('ZREM', KEYS[1], id)
    end
end
if #due > 0 then redis.call('LTRIM', KEYS[3], 0, 999) end
return due
"""

# Claim jobs whose worker stopped heart-beating; atomic, so only one sweeper gets each job.
_CLAIM_STALLED = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], 0, ARGV[1], 'LIMIT', 0, 500)
local claimed = {}
for _, id in ipairs(ids) do
    redis.call('ZREM', KEYS[1], id)
    if redis.call('LREM', KEYS[2], 0, id) > 0 then table.insert(claimed, id) end
end
return claimed
"""


def _strict_dumps(obj: Any) -> str:
    return json.dumps(obj, allow_nan=False, separators=(",", ":"))


_NOT_JSON = "must be JSON-serializable (dicts, lists, str, int, finite float, bool, None)"
_LOG_CLIPPED = frozenset({"kwargs", "result", "error"})
"""Job fields that hold user data: cut to ``log_data_chars`` in log text."""


def clip(value: Any, limit: int) -> str:
    """``str(value)`` cut to ``limit`` characters, with the full length; hidden when ``limit`` is 0."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    if limit == 0:
        return f"<{len(text)} chars hidden>"
    return f"{text[:limit]}...<{len(text)} chars>"


class KernelJob(Job):
    """SAQ's job whose log text (``info``, ``repr``) cuts data, result and error to ``log_data_chars``.

    SAQ logs ``repr(job)`` (every field, the job data included) when a processor raises, and
    ``job.info(True)`` at DEBUG: personal data and megabytes of it would reach the logs.
    """

    def info(self, full: bool = False) -> str:
        limit = getattr(self.queue, "log_data_chars", 100)
        parts = []
        for field in dataclasses.fields(self):
            key = field.name
            value = getattr(self, key)
            if not full and key in self._EXCLUDE_NON_FULL:
                continue
            try:
                if value == field.default or (key == "meta" and not value):
                    continue
            except ValueError:
                pass
            if key == "queue":
                value = value.name
            elif key == "status":
                value = value.name.lower()
            elif key in _LOG_CLIPPED:
                value = clip(value, limit)
            parts.append(f"{key}: {value}")
        return f"Job<{', '.join(parts)}>"

    def __repr__(self) -> str:
        return self.info(True)


def rank_of(priority: int | None) -> int:
    return priority if priority else NO_PRIORITY_RANK


class KernelRedisQueue(RedisQueue):
    """One named queue. SAQ's storage layout, with a priority-ordered waiting set instead of a list.

    Keys (``saq:<queue>:...``): ``incomplete`` (SAQ's: every unfinished job, score = due time or 0),
    ``waiting`` (sorted by priority rank then FIFO), ``active`` (list), ``heartbeat`` (running
    job -> last beat, ms), ``completed`` / ``failed`` (finish time, ms), ``counts`` (lifetime
    totals), ``paused``, ``wake`` (tokens idle workers block on), ``seq``, ``events`` (channel).
    """

    def __init__(
        self,
        redis: Redis,
        name: str,
        *,
        blocking: Redis | None = None,
        poll_interval: float = 1.0,
        stall_timeout: float = 10.0,
        max_stalls: int = 3,
        events: bool = True,
        max_payload_bytes: int = 1_048_576,
        completed_retention: float = 86_400.0,
        failed_retention: float = 604_800.0,
        log_data_chars: int = 100,
    ) -> None:
        super().__init__(redis, name=name, dump=_strict_dumps)
        self.blocking: Any = blocking or redis
        self.r: Any = redis
        """The client, typed loosely: redis-py types asyncio methods ``Awaitable[T] | T``."""
        self.poll_interval = poll_interval
        self.stall_timeout = stall_timeout
        self.max_stalls = max_stalls
        self.events_enabled = events
        self.max_payload_bytes = max_payload_bytes
        self.completed_retention = completed_retention
        """Seconds a completed job is kept (0: until cleaned)."""
        self.failed_retention = failed_retention
        """Seconds a failed or aborted job is kept (0: until cleaned)."""
        self.log_data_chars = log_data_chars
        self.event_hooks: list[EventHook] = []
        self._waiting = self.namespace("waiting")
        self._heartbeat = self.namespace("heartbeat")
        self._completed = self.namespace("completed")
        self._failed = self.namespace("failed")
        self._counts = self.namespace("counts")
        self._paused = self.namespace("paused")
        self._wake = self.namespace("wake")
        self._seq = self.namespace("seq")
        self._events = self.namespace("events")
        self._repeat = self.namespace("repeat")
        self._scripts: dict[str, AsyncScript] = {}

    def _script(self, name: str, source: str) -> AsyncScript:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.redis.register_script(source)
        return script

    @property
    def events_channel(self) -> str:
        return self._events

    # ------------------------------------------------------------------ serialisation

    def serialize(self, job: Job) -> bytes | str:
        try:
            return self._dump(job.to_dict())
        except (TypeError, ValueError, RecursionError) as exc:
            raise JobDataError(
                f"job {job.function!r} on queue {self.name!r}: data and results {_NOT_JSON}: {exc}"
            ) from exc

    def deserialize(self, payload: dict[str, Any] | str | bytes | None,
                    status: Status | str | None = None) -> Job | None:
        """A ``KernelJob`` from its stored record (SAQ's, without job data in its error)."""
        if not payload:
            return None
        job_dict = payload if isinstance(payload, dict) else self._load(payload)
        stored_queue = job_dict.pop("queue")
        if stored_queue != self.name:
            raise ValueError(f"job {job_dict.get('key')!r} of queue {stored_queue!r} fetched by queue "
                             f"{self.name!r}")
        if status:
            job_dict["status"] = status
        return KernelJob(**job_dict, queue=self)

    def check_payload(self, value: Any, what: str) -> None:
        """Raise ``JobTooLargeError`` if the JSON of ``value`` is over ``max_payload_bytes``.

        ``JobDataError`` if it is not JSON at all. ``what`` names it in the message.
        """
        try:
            # ASCII-escaped JSON: its length is the byte count stored in Redis.
            size = len(_strict_dumps(value))
        except (TypeError, ValueError, RecursionError) as exc:
            raise JobDataError(f"{what} {_NOT_JSON}: {exc}") from exc
        if size > self.max_payload_bytes:
            raise JobTooLargeError(what, size, self.max_payload_bytes)

    def retention_ms(self, status: Status) -> int:
        """How long a job finished with ``status`` is kept, in ms (0: until cleaned)."""
        seconds = self.completed_retention if status == Status.COMPLETE else self.failed_retention
        return int(seconds * 1000)

    async def trim_finished(self) -> None:
        """Drop ids whose retention has passed from the completed and failed sets (their records expired)."""
        stamp = now()
        sets = ((self._completed, self.retention_ms(Status.COMPLETE)),
                (self._failed, self.retention_ms(Status.FAILED)))
        due = [(zset, stamp - keep) for zset, keep in sets if keep]
        if due:
            async with self.r.pipeline(transaction=False) as pipe:
                for zset, cutoff in due:
                    pipe.zremrangebyscore(zset, "-inf", f"({cutoff}")
                await pipe.execute()

    def _event(self, event: str, job: Job, **extra: Any) -> str:
        if not self.events_enabled:
            return ""
        body = {"event": event, "queue": self.name, "job_id": job.key, "name": job.function,
                "attempts": job.attempts, **extra}
        return json.dumps(body, default=str)

    async def _fire(self, event: str, job: Job, extra: dict[str, Any]) -> None:
        for hook in self.event_hooks:
            try:
                await hook(event, job, extra)
            except Exception:
                log.exception("queue event hook failed", extra={"queue": self.name, "event": event})

    # ------------------------------------------------------------------ enqueue / dequeue

    async def _enqueue(self, job: Job) -> Job | None:
        payload = self.serialize(job)
        delayed = bool(job.scheduled) and job.scheduled > time.time()
        score = job.scheduled if delayed else 0
        event = self._event("delayed" if delayed else "waiting", job)
        added = await self._script("enqueue", _ENQUEUE)(
            keys=[self._incomplete, job.id, self._waiting, self._wake, self._seq, self._events],
            args=[payload, score, rank_of(job.priority), event],
        )
        if not added:
            return None
        if self.event_hooks:
            await self._fire("delayed" if delayed else "waiting", job, {})
        return job

    async def enqueue_many(self, jobs: list[Job]) -> list[bool]:
        """Enqueue ``jobs`` in one round trip (one pipeline of the enqueue script)."""
        script = self._script("enqueue", _ENQUEUE)
        stamp = now()
        rows = []
        for job in jobs:
            job.queue = self
            job.queued = stamp
            job.status = Status.QUEUED
            delayed = bool(job.scheduled) and job.scheduled > time.time()
            rows.append((job, self.serialize(job), job.scheduled if delayed else 0,
                         self._event("delayed" if delayed else "waiting", job)))
        async with self.r.pipeline(transaction=False) as pipe:
            for job, payload, score, event in rows:
                await script(
                    keys=[self._incomplete, job.id, self._waiting, self._wake, self._seq, self._events],
                    args=[payload, score, rank_of(job.priority), event],
                    client=pipe,
                )
            results = await pipe.execute()
        if self.event_hooks:
            for (job, *_), added in zip(rows, results, strict=True):
                if added:
                    await self._fire("waiting", job, {})
        return [bool(r) for r in results]

    async def dequeue(self, timeout: float = 0.0, poll_interval: float = 0.0) -> Job | None:  # noqa: ASYNC109
        script = self._script("dequeue", _DEQUEUE)
        keys = [self._waiting, self._active, self._heartbeat, self._paused]
        for _ in range(2):
            row = await script(keys=keys, args=[now()])
            if row:
                job_id, payload = row
                job = self.deserialize(payload) if payload else None
                if job is not None:
                    return job
                # The record was cleaned away while waiting: drop the dangling id.
                await self.r.pipeline(transaction=True).lrem(self._active, 0, job_id).zrem(
                    self._heartbeat, job_id).zrem(self._incomplete, job_id).execute()
                continue
            # Nothing to run (or paused): block until an enqueue wakes us, at most poll_interval.
            await self.blocking.blpop([self._wake], timeout=self.poll_interval)
        return None

    async def count(self, kind: CountKind) -> int:
        if kind == "queued":
            return cast(int, await self.r.zcard(self._waiting))
        return await super().count(kind)

    # ------------------------------------------------------------------ running jobs

    async def _update(self, job: Job, status: Status | None = None, **kwargs: Any) -> None:
        event = kwargs.get("_event") or ("active" if status == Status.ACTIVE else "")
        job.status = Status.ACTIVE if status is None else status
        extra: dict[str, Any] = {"progress": job.progress} if event == "progress" else {}
        written = await self._script("update", _UPDATE)(
            keys=[job.id, self._active, self._events],
            args=[self.serialize(job), job.status.value, self._event(event, job, **extra) if event else ""],
        )
        if written and event and self.event_hooks:
            await self._fire(event, job, extra)

    async def update(self, job: Job, **kwargs: Any) -> None:
        # SAQ's update() drops unknown kwargs on the copy; keep our private ``_event`` marker.
        job.touched = now()
        for k, v in kwargs.items():
            if hasattr(job, k):
                setattr(job, k, v)
        await self._update(self.copy(job), **kwargs)

    async def heartbeat(self, job_ids: Iterable[str]) -> None:
        """Refresh the heartbeat of running jobs (``XX``: a reclaimed job is not resurrected)."""
        stamp = now()
        mapping = {job_id: stamp for job_id in job_ids}
        if mapping:
            await self.r.zadd(self._heartbeat, mapping, xx=True)

    # ------------------------------------------------------------------ finishing and retrying

    async def _finish(self, job: Job, status: Status, *, result: Any = None, error: str | None = None,
                      guard: bool = True) -> None:
        if status == Status.COMPLETE:
            job.progress = 100
        target = {Status.COMPLETE: self._completed, Status.FAILED: self._failed}.get(status)
        counter = {Status.COMPLETE: "completed", Status.FAILED: "failed"}.get(status, "")
        event = {Status.COMPLETE: "completed", Status.FAILED: "failed"}.get(status, "")
        extra: dict[str, Any] = {}
        if status == Status.COMPLETE:
            extra["result"] = result
        elif error is not None:
            extra["error"] = error.strip().splitlines()[-1] if error.strip() else error
        try:
            if status == Status.COMPLETE and result is not None:
                self.check_payload(result, f"job {job.function!r} on queue {self.name!r}: result")
            payload = self.serialize(job)
        except (JobDataError, JobTooLargeError) as exc:
            # A processor returned something we cannot (or will not) store: record that as the failure.
            job.status, job.result, job.error = Status.FAILED, None, str(exc)
            status, target, counter, event, extra = Status.FAILED, self._failed, "failed", "failed", {
                "error": str(exc)}
            payload = self.serialize(job)
        finished = job.completed or now()
        keep = self.retention_ms(status)
        done = await self._script("finish", _FINISH)(
            keys=[self._active, self._incomplete, job.id, target or self._completed, self._heartbeat,
                  self._counts, self._events, self._waiting],
            args=[payload, finished, counter if target else "", "1" if guard else "0",
                  job.status.value, self._event(event, job, **extra) if event else "", keep,
                  finished - keep],
        )
        if not done:
            log.warning("late finish of job %s ignored: its worker had been presumed dead and the job "
                        "reclaimed", job.id, extra={"queue": self.name, "job_id": job.key})
            return
        if event and self.event_hooks:
            await self._fire(event, job, extra)

    async def requeue(self, job: Job, *, delay: float = 0.0, guard: bool = True, front: bool = False) -> bool:
        """Put ``job`` back to waiting (or delayed by ``delay`` seconds); False if it was not ours.

        ``front``: ahead of the other jobs of its priority (re-runs of interrupted jobs).
        """
        job.status = Status.QUEUED
        job.completed = 0
        job.started = 0
        job.progress = 0
        job.touched = now()
        scheduled = time.time() + delay if delay > 0 else 0
        if scheduled:
            job.scheduled = scheduled  # type: ignore[assignment]  # SAQ types it int; floats are exact
        done = await self._script("requeue", _REQUEUE)(
            keys=[self._active, self._heartbeat, self._incomplete, self._waiting, self._wake, self._seq,
                  job.id, self._failed],
            args=[self.serialize(job), scheduled, rank_of(job.priority), "1" if guard else "0",
                  "1" if front else "0"],
        )
        return bool(done)

    async def retry(self, job: Job, error: str | None) -> None:
        """Our retry policy (SAQ's worker calls this for every failed or interrupted try)."""
        meta = job.meta
        job.error = error
        if error == "cancelled":
            # Interrupted by a graceful shutdown: not the job's fault, so no failure is counted.
            if await self.requeue(job, front=True):
                self.retried += 1
            return
        failures = int(meta.get("failures", 0)) + 1
        meta["failures"] = failures
        max_attempts = int(meta.get("max_attempts", 1))
        if failures >= max_attempts:
            await self.finish(job, Status.FAILED, error=error)
            return
        delay = backoff_delay(meta.get("backoff"), failures)
        if await self.requeue(job, delay=delay):
            self.retried += 1
            log.info("job %s failed (try %d of %d), retrying in %.3fs", job.key, failures, max_attempts,
                     delay, extra={"queue": self.name, "job_id": job.key})

    async def _retry(self, job: Job, error: str | None) -> None:  # pragma: no cover - retry() replaces it
        await self.requeue(job)

    # ------------------------------------------------------------------ upkeep

    async def schedule(self, lock: int = 1) -> list[str]:
        due = await self._script("promote", _PROMOTE)(
            keys=[self._incomplete, self._waiting, self._wake, self._seq],
            args=[time.time(), NO_PRIORITY_RANK],
        )
        return [d.decode() for d in due or []]

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        """Reclaim jobs whose worker stopped heart-beating for ``stall_timeout`` seconds."""
        cutoff = now() - int(self.stall_timeout * 1000)
        claimed = await self._script("claim", _CLAIM_STALLED)(
            keys=[self._heartbeat, self._active], args=[cutoff]
        )
        swept: list[str] = []
        for raw_id in claimed or []:
            job_id = raw_id.decode()
            swept.append(job_id)
            job = await self._get_job_by_id(job_id)
            if job is None:
                await self.r.zrem(self._incomplete, job_id)
                continue
            stalls = int(job.meta.get("stalls", 0)) + 1
            job.meta["stalls"] = stalls
            reason = f"worker lost: no heartbeat for {self.stall_timeout:g}s (stall {stalls})"
            await self.r.hincrby(self._counts, "stalled", 1)
            if stalls > self.max_stalls:
                log.error("job %s failed: it lost its worker %d times", job.key, stalls,
                          extra={"queue": self.name, "job_id": job.key})
                await self.finish(job, Status.FAILED, error=f"{reason}; more than max_stalls="
                                  f"{self.max_stalls}", guard=False)
            else:
                job.error = reason
                log.warning("reclaimed job %s from a dead worker (stall %d)", job.key, stalls,
                            extra={"queue": self.name, "job_id": job.key})
                await self.requeue(job, guard=False, front=True)
                if self.event_hooks:
                    await self._fire("stalled", job, {"stalls": stalls})
        return swept

    async def abort(self, job: Job, error: str, ttl: float = 5) -> None:
        async with self.r.pipeline(transaction=True) as pipe:
            job.status = Status.ABORTING
            job.error = error
            dequeued, *_ = await (
                pipe.zrem(self._waiting, job.id)
                .zrem(self._incomplete, job.id)
                .set(job.id, self.serialize(job))
                .setex(job.abort_id, int(max(ttl, 1)), error)
                .publish(job.id, job.status)
                .execute()
            )
        if dequeued:
            await self.finish(job, Status.ABORTED, error=error, guard=False)
            await self.r.delete(job.abort_id)

    async def disconnect(self) -> None:
        # The Redis client belongs to the redis plugin: only close what SAQ opened on it.
        await self._pubsub.close()

    # ------------------------------------------------------------------ pause

    async def pause(self) -> None:
        await self.r.set(self._paused, 1)

    async def resume(self) -> None:
        waiting = cast(int, await self.r.zcard(self._waiting))
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(self._paused)
            pipe.lpush(self._wake, *([1] * max(1, min(waiting, MAX_TOKENS))))
            pipe.ltrim(self._wake, 0, MAX_TOKENS - 1)
            await pipe.execute()

    async def is_paused(self) -> bool:
        return bool(await self.r.exists(self._paused))


def backoff_delay(spec: Any, failures: int) -> float:
    """Seconds before the retry that follows failure number ``failures`` (exact, no jitter).

    ``{"type": "fixed", "delay": d}`` waits ``d`` every time; ``"exponential"`` waits
    ``d * 2 ** (failures - 1)``: d, 2d, 4d ... (BullMQ's formula).
    """
    if not spec:
        return 0.0
    delay = float(spec["delay"])
    if spec["type"] == "exponential":
        return delay * float(2 ** (failures - 1))
    return delay
