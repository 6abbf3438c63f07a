"""SAQ's RedisQueue with priorities, pause, heartbeats, exact retries and persisted finished sets."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, cast

from kernel_redis import hash_tag
from redis.asyncio.cluster import RedisCluster
from saq.job import Job, Status
from saq.queue.redis import PubSubMultiplexer, RedisQueue
from saq.utils import now

from ._errors import (
    InvalidJobOptionError,
    JobDataError,
    JobNotFoundError,
    JobTooLargeError,
    QueueError,
)
from ._scripts import MAX_TOKENS, Scripts

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from kernel_redis import AnyRedis
    from redis.asyncio import Redis
    from saq.types import CountKind

    from ._durability import Replication

log = logging.getLogger("kernel.plugins.queue")

MAX_PRIORITY = 2_097_152
"""Largest priority number (BullMQ's limit); 1 is the highest priority."""
NO_PRIORITY_RANK = MAX_PRIORITY + 1
"""Jobs without a priority run after every prioritised job (BullMQ's convention)."""

BULK_CHUNK = 500
"""Jobs per call of the bulk enqueue script (one atomic step each)."""

CleanStatus = Literal["completed", "failed", "waiting", "delayed"]
"""Which jobs ``clean`` removes."""

EventHook = Callable[[str, Job, dict[str, Any]], Awaitable[None]]
"""``hook(event, job, extra)``: called after each job event this process causes (metrics, event bus)."""


_strict_dumps: Callable[[Any], str] = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
"""``json.dumps(obj, allow_nan=False, separators=(",", ":"))``, without building an encoder per call."""
_event_dumps: Callable[[Any], str] = json.JSONEncoder(default=str).encode
"""``json.dumps(obj, default=str)``, without building an encoder per call."""


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
        """SAQ's one-line description, with user data cut to the queue's ``log_data_chars``."""
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

    @property
    def abort_id(self) -> str:
        """The abort flag's key, in the queue's slot (SAQ's ``saq:abort:<key>`` is in none)."""
        queue = self.queue
        if isinstance(queue, KernelRedisQueue):
            return queue.abort_key(self.key)
        return super().abort_id

    def to_dict(self) -> dict[str, Any]:
        """SAQ's ``to_dict`` (the same dict: fields not at their default, in field order), faster.

        It runs for every stored write of a job; SAQ's looks the fields up again on every call.
        """
        result: dict[str, Any] = {}
        for key, default in _JOB_FIELDS:
            value = getattr(self, key)
            try:
                if value == default:
                    continue
            except ValueError:  # SAQ's _safe_eq: an ambiguous comparison counts as different
                pass
            if key == "meta" and not value:
                continue
            if key == "queue" and value:
                value = value.name
            result[key] = value
        return result


_JOB_FIELDS: tuple[tuple[str, Any], ...] = tuple((f.name, f.default) for f in dataclasses.fields(KernelJob))
"""``(name, default)`` of every job field, in order (``MISSING`` for those with a default factory)."""


class JobReclaimedError(QueueError):
    """A worker was about to start a job that the sweep had already given back to the queue."""


class _NotOurs(Exception):
    """The update script wrote nothing: the job is no longer on the active list."""


_RECLAIMED = "_kernel_reclaimed"
"""Attribute set on a worker's job object whose try was refused (:class:`JobReclaimedError`)."""


def queue_tag(name: str) -> str:
    """The hash tag of queue ``name`` (``{name}``): every key of one queue lives in its slot.

    ``ValueError`` for a name that is empty or holds ``{`` or ``}`` (it could not be the tag).
    """
    return hash_tag(name)


def rank_of(priority: int | None) -> int:
    """The waiting-set rank of a job with ``priority`` (none or 0: after every prioritised job)."""
    return priority if priority else NO_PRIORITY_RANK


@dataclasses.dataclass(frozen=True)
class QueueKeys:
    """The Redis keys of one queue (``saq:{<queue>}:<field>``); job records are ``saq:job:{<queue>}:<id>``.

    Every key carries the queue's hash tag ``{<queue>}``: on a Redis Cluster all of them are in
    one slot, so the scripts and transactions touching several of them work.
    """

    incomplete: str
    """SAQ's sorted set of every unfinished job; score = due time (s) when delayed, else 0."""
    waiting: str
    """Jobs ready to run, sorted by priority rank then FIFO."""
    active: str
    """List of running jobs."""
    heartbeat: str
    """Running job -> its last heartbeat (ms)."""
    completed: str
    """Completed jobs kept for ``completed_retention`` -> finish time (ms)."""
    failed: str
    """Failed or aborted jobs kept for ``failed_retention`` -> finish time (ms)."""
    counts: str
    """Hash of lifetime totals: completed, failed, stalled."""
    paused: str
    """Exists while the queue is paused."""
    wake: str
    """List of tokens idle workers block on (``BLPOP``)."""
    seq: str
    """Counter for FIFO order within a priority rank."""
    events: str
    """Pub/sub channel of job events."""
    repeat: str
    """Hash of recurring jobs: key -> JSON spec."""

    @classmethod
    def of(cls, queue: RedisQueue) -> QueueKeys:
        """The keys of ``queue`` (SAQ's namespace)."""
        return cls(**{f.name: queue.namespace(f.name) for f in dataclasses.fields(cls)})


class KernelRedisQueue(RedisQueue):
    """One named queue. SAQ's storage layout, with a priority-ordered waiting set instead of a list.

    It owns its keys (:class:`QueueKeys`, ``queue.keys``) and everything that reads or writes
    them: enqueue, dequeue, finish, retry, sweep, pause, :meth:`stats`, :meth:`clean`,
    :meth:`retry_failed` and the recurring-job specs.
    """

    def __init__(
        self,
        redis: AnyRedis,
        name: str,
        *,
        blocking: AnyRedis | None = None,
        listener: Redis | None = None,
        replication: Replication | None = None,
        poll_interval: float = 1.0,
        stall_timeout: float = 10.0,
        max_stalls: int = 3,
        events: bool = True,
        max_payload_bytes: int = 1_048_576,
        completed_retention: float = 86_400.0,
        failed_retention: float = 604_800.0,
        log_data_chars: int = 100,
    ) -> None:
        self.tag = queue_tag(name)
        """``{<name>}``: the hash tag in every key of this queue."""
        # SAQ's constructor subscribes through ``pubsub()``, which redis-py's asyncio cluster
        # client lacks: it gets a client that has it (the client itself on standalone/Sentinel).
        listener = listener if listener is not None else cast("Redis", redis)
        super().__init__(listener, name=name, dump=_strict_dumps)
        self.redis = cast("Redis", redis)
        self._pubsub = PubSubMultiplexer(listener.pubsub(), prefix=self.job_id(""))
        self.replication = replication
        """Set with ``durability = "replicated"``: enqueues wait for replicas through it."""
        self.blocking: AnyRedis = blocking or redis
        self.r: AnyRedis = redis
        """The client (redis-py types its asyncio methods ``Awaitable[T] | T``: awaits of those cast)."""
        self.poll_interval = poll_interval
        self.stall_timeout = stall_timeout
        self.max_stalls = max_stalls
        self.events_enabled = events
        self.max_payload_bytes = max_payload_bytes
        self.completed_retention = completed_retention
        """Seconds a completed job is kept (0: until cleaned)."""
        self.failed_retention = failed_retention
        """Seconds a failed or aborted job is kept (0: until cleaned)."""
        """Characters of job data, results and errors shown in log text (0: hidden)."""
        self.log_data_chars = log_data_chars
        self.event_hooks: list[EventHook] = []
        """Called after each job event this process causes."""
        self.keys = QueueKeys.of(self)
        self.sweeps = 0
        """Sweeps for stalled jobs this process ran."""
        self.sweep_errors = 0
        """Sweep steps that failed in this process (each logged; the next sweep retries)."""
        self._adopted = False
        self.sharded_events = isinstance(redis, RedisCluster)
        """On a cluster, job events go on a shard channel (``SPUBLISH``/``SSUBSCRIBE``): see ``_scripts``."""
        self.scripts = Scripts(redis, sharded_events=self.sharded_events)

    # ------------------------------------------------------------------ key layout

    def namespace(self, key: str) -> str:
        """``saq:{<name>}:<key>``: SAQ's own layout for the queue name ``{<name>}``."""
        return f"saq:{self.tag}:{key}"

    def job_id(self, job_key: str) -> str:
        """``saq:job:{<name>}:<job key>``: the job record's key (and its status channel)."""
        return f"saq:job:{self.tag}:{job_key}"

    def job_key_from_id(self, job_id: str) -> str:
        """The job key in a job record's key."""
        return job_id[len(self.tag) + 9 :]

    def abort_key(self, job_key: str) -> str:
        """``saq:abort:{<name>}:<job key>`` (SAQ's ``saq:abort:<job key>`` has no queue, no tag)."""
        return f"saq:abort:{self.tag}:{job_key}"

    async def iter_jobs(
        self,
        statuses: list[Status] = list(Status),  # noqa: B006 - SAQ's signature; never mutated
        batch_size: int = 100,
    ) -> AsyncIterator[Job]:
        """Every stored job of this queue in ``statuses`` (SAQ's, with a scan that works on a cluster)."""
        wanted = set(statuses)
        batch: list[str] = []
        async for raw in self.r.scan_iter(match=self.job_id("*"), count=batch_size):
            batch.append(self.job_key_from_id(raw.decode()))
            if len(batch) >= batch_size:
                for job in await self.jobs(batch):
                    if job is not None and job.status in wanted:
                        yield job
                batch = []
        for job in await self.jobs(batch) if batch else []:
            if job is not None and job.status in wanted:
                yield job

    async def adopt_legacy_members(self) -> int:
        """Rename job ids of the old layout (``saq:job:<name>:<key>``) inside this queue's sets and lists.

        ``kernel redis migrate-keys`` renames keys; the ids stored *in* the renamed sets still
        name the old records. Workers call this once per process on start (and ``clean`` /
        ``retry_failed`` before they read the sets): ``ZSCAN``/``LRANGE`` finds old ids without
        blocking Redis, each rename is one transaction. Returns how many ids were renamed.
        """
        if self._adopted:
            return 0
        old = f"saq:job:{self.name}:"
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in old) + "*"
        k = self.keys
        renamed = 0
        for zset in (k.incomplete, k.waiting, k.heartbeat, k.completed, k.failed):
            found = [(m, score) async for m, score in self.r.zscan_iter(zset, match=pattern, count=1000)]
            for member, score in found:
                new = self.job_id(member.decode()[len(old) :])
                async with self.r.pipeline(transaction=True) as pipe:
                    pipe.zrem(zset, member)
                    pipe.zadd(zset, {new: score})
                    await pipe.execute()
                renamed += 1
        active = await cast("Awaitable[list[bytes]]", self.r.lrange(k.active, 0, -1))
        for index, member in enumerate(active):
            if member.decode().startswith(old):
                new_id = self.job_id(member.decode()[len(old) :])
                await cast("Awaitable[str]", self.r.lset(k.active, index, new_id))
                renamed += 1
        self._adopted = True
        if renamed:
            log.warning("queue %s: renamed %d job ids of the old key layout", self.name, renamed)
        return renamed

    @property
    def events_channel(self) -> str:
        """The pub/sub channel of this queue's job events (JSON dicts)."""
        return self.keys.events

    # ------------------------------------------------------------------ serialisation

    def serialize(self, job: Job) -> bytes | str:
        """The stored JSON of ``job``; ``JobDataError`` if its data or result is not JSON."""
        try:
            return self._dump(job.to_dict())
        except (TypeError, ValueError, RecursionError) as exc:
            raise JobDataError(
                f"job {job.function!r} on queue {self.name!r}: data and results {_NOT_JSON}: {exc}"
            ) from exc

    def deserialize(
        self, payload: dict[str, Any] | str | bytes | None, status: Status | str | None = None
    ) -> Job | None:
        """A ``KernelJob`` from its stored record (SAQ's, without job data in its error)."""
        if not payload:
            return None
        job_dict = payload if isinstance(payload, dict) else self._load(payload)
        stored_queue = job_dict.pop("queue")
        if stored_queue != self.name:
            raise ValueError(
                f"job {job_dict.get('key')!r} of queue {stored_queue!r} fetched by queue {self.name!r}"
            )
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

    def serialize_new(self, job: Job, where: str = "") -> bytes | str:
        """The stored JSON of a new ``job``, its data checked as :meth:`check_payload` does.

        One encode when it fits: the data's JSON is part of the job's (same encoder), so a job
        within ``max_payload_bytes`` has data within it. Otherwise the data alone is measured,
        for the exact error (``JobTooLargeError``, ``JobDataError``); ``where`` prefixes its message.
        """
        try:
            payload: bytes | str | None = self._dump(job.to_dict())
        except (TypeError, ValueError, RecursionError):
            payload = None
        if payload is None or len(payload) > self.max_payload_bytes:
            data = (job.kwargs or {}).get("data")
            self.check_payload(data, f"{where}job {job.function!r} on queue {self.name!r}: data")
            if payload is None:
                payload = self.serialize(job)
        return payload

    def retention_ms(self, status: Status) -> int:
        """How long a job finished with ``status`` is kept, in ms (0: until cleaned)."""
        seconds = self.completed_retention if status == Status.COMPLETE else self.failed_retention
        return int(seconds * 1000)

    async def trim_finished(self) -> None:
        """Drop ids whose retention has passed from the completed and failed sets (their records expired)."""
        stamp = now()
        sets = (
            (self.keys.completed, self.retention_ms(Status.COMPLETE)),
            (self.keys.failed, self.retention_ms(Status.FAILED)),
        )
        due = [(zset, stamp - keep) for zset, keep in sets if keep]
        if due:
            async with self.r.pipeline(transaction=False) as pipe:
                for zset, cutoff in due:
                    pipe.zremrangebyscore(zset, "-inf", f"({cutoff}")
                await pipe.execute()

    def _event(self, event: str, job: Job, **extra: Any) -> str:
        if not self.events_enabled:
            return ""
        body = {
            "event": event,
            "queue": self.name,
            "job_id": job.key,
            "name": job.function,
            "attempts": job.attempts,
            **extra,
        }
        return _event_dumps(body)

    async def _fire(self, event: str, job: Job, extra: dict[str, Any]) -> None:
        for hook in self.event_hooks:
            try:
                await hook(event, job, extra)
            except Exception:
                log.exception("queue event hook failed", extra={"queue": self.name, "event": event})

    # ------------------------------------------------------------------ enqueue / dequeue

    def _enqueue_call(self, job: Job, payload: bytes | str | None = None) -> tuple[str, list[str], list[Any]]:
        """The event (``waiting`` or ``delayed``) and the enqueue script's keys and args for ``job``.

        ``payload``: its stored JSON when already encoded (:meth:`serialize_new`).
        """
        delayed = bool(job.scheduled) and job.scheduled > time.time()
        event = "delayed" if delayed else "waiting"
        k = self.keys
        keys = [k.incomplete, job.id, k.waiting, k.wake, k.seq, k.events]
        due = job.scheduled if delayed else 0
        if payload is None:
            payload = self.serialize(job)
        return event, keys, [payload, due, job.priority or NO_PRIORITY_RANK, self._event(event, job)]

    async def add(self, job: Job, payload: bytes | str | None = None) -> bool:
        """Store and enqueue a built ``job`` (delayed until ``job.scheduled``); False if its id exists.

        ``payload``: the job's stored JSON when already encoded (:meth:`serialize_new`).
        """
        event, keys, args = self._enqueue_call(job, payload)
        if self.replication is not None:
            added = await self.replication.run(self.name, [job.key], self.scripts.enqueue, keys, args)
        else:
            added = await self.scripts.enqueue(keys=keys, args=args)
        if not added:
            return False
        if self.event_hooks:
            await self._fire(event, job, {})
        return True

    async def _enqueue(self, job: Job) -> Job | None:
        return job if await self.add(job) else None

    async def enqueue_many(self, jobs: list[Job], payloads: list[bytes | str] | None = None) -> list[bool]:
        """Enqueue ``jobs`` in one round trip (one pipeline of the enqueue script).

        ``payloads``: their stored JSON when already encoded (:meth:`serialize_new`, jobs built
        queued on this queue); otherwise each is stamped queued now and encoded here.
        """
        if payloads is None:
            stamp = now()
            for job in jobs:
                job.queue = self
                job.queued = stamp
                job.status = Status.QUEUED
            calls = [self._enqueue_call(job) for job in jobs]
        else:
            calls = [self._enqueue_call(job, payload) for job, payload in zip(jobs, payloads, strict=True)]
        k = self.keys
        shared = [k.incomplete, k.waiting, k.wake, k.seq, k.events]
        results: list[Any] = []
        # One script call per chunk (not a pipeline of calls: redis-py's cluster pipeline runs no scripts).
        for start in range(0, len(calls), BULK_CHUNK):
            chunk = calls[start : start + BULK_CHUNK]
            keys = shared + [keys[1] for _, keys, _ in chunk]
            args = [a for _, _, call_args in chunk for a in call_args]
            if self.replication is not None:
                ids = [job.key for job in jobs[start : start + BULK_CHUNK]]
                script = self.scripts.enqueue_many
                results += await self.replication.run(self.name, ids, script, keys, args)
            else:
                results += await self.scripts.enqueue_many(keys=keys, args=args)
        if self.event_hooks:
            for job, (event, *_), added in zip(jobs, calls, results, strict=True):
                if added:
                    await self._fire(event, job, {})
        return [bool(r) for r in results]

    async def dequeue(self, timeout: float = 0.0, poll_interval: float = 0.0) -> Job | None:  # noqa: ASYNC109
        """The best waiting job, now marked running; None after ``poll_interval`` without one or paused."""
        script = self.scripts.dequeue
        keys = [self.keys.waiting, self.keys.active, self.keys.heartbeat, self.keys.paused]
        for _ in range(2):
            row = await script(keys=keys, args=[now()])
            if row:
                job_id, payload = row
                job = self.deserialize(payload) if payload else None
                if job is not None:
                    return job
                # The record was cleaned away while waiting: drop the dangling id.
                await self._drop_dangling(job_id)
                continue
            # Nothing to run (or paused): block until an enqueue wakes us, at most poll_interval.
            await cast("Awaitable[object]", self.blocking.blpop([self.keys.wake], timeout=self.poll_interval))
        return None

    async def count(self, kind: CountKind) -> int:
        """SAQ's counts, with ``queued`` read from the waiting set."""
        if kind == "queued":
            return cast(int, await self.r.zcard(self.keys.waiting))
        return await super().count(kind)

    # ------------------------------------------------------------------ running jobs

    async def _update(self, job: Job, status: Status | None = None, **kwargs: Any) -> None:
        event = kwargs.get("_event") or ("active" if status == Status.ACTIVE else "")
        job.status = Status.ACTIVE if status is None else status
        extra: dict[str, Any] = {"progress": job.progress} if event == "progress" else {}
        written = await self.scripts.update(
            keys=[job.id, self.keys.active, self.keys.events],
            args=[
                self.serialize(job),
                job.status.value,
                self._event(event, job, **extra) if event else "",
                job.attempts,
            ],
        )
        if written and event and self.event_hooks:
            await self._fire(event, job, extra)
        if not written:
            raise _NotOurs

    async def update(self, job: Job, **kwargs: Any) -> None:
        """Write ``kwargs`` to ``job`` and store it (only while it is still ours: see the update script).

        ``JobReclaimedError`` when SAQ marks a try started (``status=ACTIVE``) on a job the sweep
        already reclaimed (its worker was slower than ``stall_timeout`` between taking the job and its
        first heartbeat): the try is not run, and :meth:`retry` records nothing for it.
        """
        # SAQ's update() drops unknown kwargs on the copy; keep our private ``_event`` marker.
        job.touched = now()
        for k, v in kwargs.items():
            if hasattr(job, k):
                setattr(job, k, v)
        try:
            await self._update(self.copy(job), **kwargs)
        except _NotOurs:
            if kwargs.get("status") != Status.ACTIVE:
                return  # a late progress write of a presumed-dead worker: ignored
            setattr(job, _RECLAIMED, True)
            raise JobReclaimedError(
                f"job {job.key} on queue {self.name!r} was reclaimed by the sweep before this worker "
                f"started it (no heartbeat for {self.stall_timeout:g}s since it was taken): not run here"
            ) from None

    async def heartbeat(self, job_ids: Iterable[str]) -> None:
        """Refresh the heartbeat of running jobs (``XX``: a reclaimed job is not resurrected)."""
        stamp = now()
        mapping = {job_id: stamp for job_id in job_ids}
        if mapping:
            await self.r.zadd(self.keys.heartbeat, mapping, xx=True)

    # ------------------------------------------------------------------ finishing and retrying

    async def _finish(
        self, job: Job, status: Status, *, result: Any = None, error: str | None = None, guard: bool = True
    ) -> None:
        if not await self._store_finish(job, status, result=result, error=error, guard=guard):
            log.warning(
                "late finish of job %s ignored: its worker had been presumed dead and the job reclaimed",
                job.id,
                extra={"queue": self.name, "job_id": job.key},
            )

    async def _store_finish(
        self, job: Job, status: Status, *, result: Any = None, error: str | None = None, guard: bool = True
    ) -> bool:
        """Store ``job`` finished with ``status``; False (nothing written) if ``guard`` and not active."""
        if status == Status.COMPLETE:
            job.progress = 100
        target = {Status.COMPLETE: self.keys.completed, Status.FAILED: self.keys.failed}.get(status)
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
            status, target, counter, event, extra = (
                Status.FAILED,
                self.keys.failed,
                "failed",
                "failed",
                {"error": str(exc)},
            )
            payload = self.serialize(job)
        finished = job.completed or now()
        keep = self.retention_ms(status)
        k = self.keys
        done = await self.scripts.finish(
            keys=[
                k.active,
                k.incomplete,
                job.id,
                target or k.completed,
                k.heartbeat,
                k.counts,
                k.events,
                k.waiting,
            ],
            args=[
                payload,
                finished,
                counter if target else "",
                "1" if guard else "0",
                job.status.value,
                self._event(event, job, **extra) if event else "",
                keep,
                finished - keep,
                job.attempts,
            ],
        )
        if not done:
            return False
        if event and self.event_hooks:
            await self._fire(event, job, extra)
        return True

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
        k = self.keys
        done = await self.scripts.requeue(
            keys=[k.active, k.heartbeat, k.incomplete, k.waiting, k.wake, k.seq, job.id, k.failed],
            args=[
                self.serialize(job),
                scheduled,
                rank_of(job.priority),
                "1" if guard else "0",
                "1" if front else "0",
                job.attempts,
            ],
        )
        return bool(done)

    async def retry(self, job: Job, error: str | None) -> None:
        """Our retry policy (SAQ's worker calls this for every failed or interrupted try)."""
        if getattr(job, _RECLAIMED, False):
            return  # a try that never started (JobReclaimedError): the job is another worker's now
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
            log.info(
                "job %s failed (try %d of %d), retrying in %.3fs",
                job.key,
                failures,
                max_attempts,
                delay,
                extra={"queue": self.name, "job_id": job.key},
            )

    async def _retry(self, job: Job, error: str | None) -> None:  # pragma: no cover - retry() replaces it
        await self.requeue(job)

    # ------------------------------------------------------------------ upkeep

    async def schedule(self, lock: int = 1) -> list[str]:
        """Move delayed jobs that are due to the waiting set; their ids."""
        due = await self.scripts.promote(
            keys=[self.keys.incomplete, self.keys.waiting, self.keys.wake, self.keys.seq],
            args=[time.time(), NO_PRIORITY_RANK],
        )
        return [d.decode() for d in due or []]

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        """Reclaim jobs whose worker stopped heart-beating for ``stall_timeout`` seconds; their ids.

        Each stalled job is leased (it stays active, its heartbeat set to now), then re-queued or
        failed by a guarded script: a sweep that fails or dies half-way leaves its jobs for the
        next sweep of any worker, ``stall_timeout`` later. A failure is logged and counted in
        ``sweep_errors`` (the sweep goes on with the next job); the next sweep retries.
        """
        self.sweeps += 1
        try:
            claimed = await self.scripts.claim_stalled(
                keys=[self.keys.heartbeat, self.keys.active],
                args=[now() - int(self.stall_timeout * 1000), now()],
            )
        except Exception as exc:
            self._sweep_failed("could not look for stalled jobs", exc)
            return []
        swept: list[str] = []
        for raw_id in claimed or []:
            job_id = raw_id.decode()
            try:
                if await self._reclaim(job_id):
                    swept.append(job_id)
            except Exception as exc:
                self._sweep_failed(f"could not reclaim job {job_id}", exc)
        return swept

    def _sweep_failed(self, what: str, exc: Exception) -> None:
        self.sweep_errors += 1
        log.error(
            "queue %s: sweep failed (%d so far), the next one retries in its turn: %s: %r",
            self.name,
            self.sweep_errors,
            what,
            exc,
            exc_info=exc,
            extra={"queue": self.name},
        )

    async def _reclaim(self, job_id: str) -> bool:
        """Re-queue (or fail, past ``max_stalls``) leased stalled job ``job_id``; False if it was not ours."""
        job = await self._get_job_by_id(job_id)
        if job is None:  # its record was cleaned away: drop the dangling id
            await self._drop_dangling(job_id)
            return False
        stalls = int(job.meta.get("stalls", 0)) + 1
        job.meta["stalls"] = stalls
        reason = f"worker lost: no heartbeat for {self.stall_timeout:g}s (stall {stalls})"
        if stalls > self.max_stalls:
            # SAQ's finish(), with the guard: only the sweeper that takes the job off the active list.
            job.status, job.result, job.completed = Status.FAILED, None, now()
            job.error = f"{reason}; more than max_stalls={self.max_stalls}"
            if not await self._store_finish(job, Status.FAILED, error=job.error):
                return False  # its worker finished it after all, or another sweep took it
            self.failed += 1
            await self._count_stall(job, stalls, logging.ERROR, "job %s failed: it lost its worker %d times")
            return True
        job.error = reason
        if not await self.requeue(job, front=True):
            return False
        await self._count_stall(
            job, stalls, logging.WARNING, "reclaimed job %s from a dead worker (stall %d)"
        )
        if self.event_hooks:
            await self._fire("stalled", job, {"stalls": stalls})
        return True

    async def _drop_dangling(self, job_id: str) -> None:
        """Take ``job_id``, whose record was cleaned away, off the active list and the running sets."""
        k = self.keys
        pipe = self.r.pipeline(transaction=True)
        pipe.lrem(k.active, 0, job_id)
        pipe.zrem(k.heartbeat, job_id)
        pipe.zrem(k.incomplete, job_id)
        await pipe.execute()

    async def _count_stall(self, job: Job, stalls: int, level: int, message: str) -> None:
        """Count a job taken from its dead worker (``stalled``) and log ``message % (job.key, stalls)``."""
        await cast("Awaitable[int]", self.r.hincrby(self.keys.counts, "stalled", 1))
        # stacklevel: the record names _reclaim, the caller, as it did when _reclaim logged itself
        log.log(level, message, job.key, stalls, extra={"queue": self.name, "job_id": job.key}, stacklevel=2)

    async def abort(self, job: Job, error: str, ttl: float = 5) -> None:
        """Abort ``job``: a waiting one is finished as aborted now; a running one when its worker sees it."""
        async with self.r.pipeline(transaction=True) as pipe:
            job.status = Status.ABORTING
            job.error = error
            pipe.zrem(self.keys.waiting, job.id)
            pipe.zrem(self.keys.incomplete, job.id)
            pipe.set(job.id, self.serialize(job))
            pipe.setex(job.abort_id, int(max(ttl, 1)), error)
            pipe.execute_command("PUBLISH", job.id, job.status)
            dequeued, *_ = await pipe.execute()
        if dequeued:
            await self.finish(job, Status.ABORTED, error=error, guard=False)
            await self.r.delete(job.abort_id)

    async def disconnect(self) -> None:
        """Close what SAQ opened on the client (the client itself belongs to the redis plugin)."""
        await self._pubsub.close()

    # ------------------------------------------------------------------ pause

    async def pause(self) -> None:
        """Every worker process stops taking jobs from this queue; running jobs finish."""
        await self.r.set(self.keys.paused, 1)

    async def resume(self) -> None:
        """Let workers take jobs again (and wake idle ones)."""
        waiting = cast(int, await self.r.zcard(self.keys.waiting))
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.paused)
            pipe.lpush(self.keys.wake, *([1] * max(1, min(waiting, MAX_TOKENS))))
            pipe.ltrim(self.keys.wake, 0, MAX_TOKENS - 1)
            await pipe.execute()

    async def is_paused(self) -> bool:
        """Whether the queue is paused."""
        return bool(await self.r.exists(self.keys.paused))

    # ------------------------------------------------------------------ inspection and cleanup

    async def stats(self) -> dict[str, Any]:
        """``{queue_name, waiting, active, completed, failed, delayed, total, paused}`` (one transaction).

        ``completed``/``failed`` count the finished jobs still kept; ``total`` = waiting + active + delayed.
        """
        await self.trim_finished()
        k = self.keys
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.zcard(k.waiting)
            pipe.llen(k.active)
            pipe.zcount(k.incomplete, "(0", "+inf")
            pipe.zcard(k.completed)
            pipe.zcard(k.failed)
            pipe.exists(k.paused)
            waiting, active, delayed, completed, failed, paused = await pipe.execute()
        return {
            "queue_name": self.name,
            "waiting": waiting,
            "active": active,
            "completed": completed,
            "failed": failed,
            "delayed": delayed,
            "total": waiting + active + delayed,
            "paused": bool(paused),
        }

    async def totals(self) -> dict[str, int]:
        """Lifetime totals kept even after :meth:`clean`: completed, failed, stalled."""
        raw = await cast("Awaitable[dict[bytes, bytes]]", self.r.hgetall(self.keys.counts))
        return {k.decode(): int(v) for k, v in raw.items()}

    async def is_delayed(self, job: Job) -> bool:
        """Whether queued ``job`` waits for its due time (it is not in the waiting set yet)."""
        score = await self.r.zscore(self.keys.incomplete, job.id)
        return bool(score and score > 0)

    async def clean(
        self, status: CleanStatus = "completed", older_than: float = 0.0, limit: int = 1000
    ) -> list[str]:
        """Delete up to ``limit`` (<= 0: all) jobs in ``status`` queued or finished over ``older_than``
        seconds ago; their keys."""
        if status not in ("completed", "failed", "waiting", "delayed"):
            raise InvalidJobOptionError(
                f"status must be 'completed', 'failed', 'waiting' or 'delayed', got {status!r}"
            )
        await self.adopt_legacy_members()
        await self.trim_finished()
        cutoff_ms = now() - int(older_than * 1000)
        count = None if limit <= 0 else limit
        if status == "completed":
            removed = await self._clean_finished(self.keys.completed, cutoff_ms, count)
        elif status == "failed":
            removed = await self._clean_finished(self.keys.failed, cutoff_ms, count)
        else:
            removed = await self._clean_unfinished(status == "delayed", cutoff_ms, count)
        return [self.job_key_from_id(i.decode()) for i in removed]

    async def _clean_finished(self, zset: str, cutoff_ms: int, count: int | None) -> list[bytes]:
        ids: list[bytes] = await self.r.zrangebyscore(
            zset, 0, cutoff_ms, start=0 if count else None, num=count
        )
        if ids:
            async with self.r.pipeline(transaction=True) as pipe:
                pipe.zrem(zset, *ids)
                pipe.delete(*ids)
                await pipe.execute()
        return ids

    async def _clean_unfinished(self, delayed: bool, cutoff_ms: int, count: int | None) -> list[bytes]:
        if delayed:
            ids = await self.r.zrangebyscore(self.keys.incomplete, "(0", "+inf")
        else:
            ids = await self.r.zrange(self.keys.waiting, 0, -1)
        jobs = await self.jobs(self.job_key_from_id(i.decode()) for i in ids) if ids else []
        removed: list[bytes] = []
        for raw_id, job in zip(ids, jobs, strict=True):
            if count is not None and len(removed) >= count:
                break
            if job is not None and job.queued > cutoff_ms:
                continue
            async with self.r.pipeline(transaction=True) as pipe:
                pipe.zrem(self.keys.waiting, raw_id)
                pipe.zrem(self.keys.incomplete, raw_id)
                pipe.delete(raw_id)
                res = await pipe.execute()
            if res[0] or res[1]:
                removed.append(raw_id)
        return removed

    async def retry_failed(self, job_key: str | None = None) -> int:
        """Re-queue one failed job (or every failed job) with a fresh attempt budget; how many.

        For one ``job_key``: ``JobNotFoundError`` if it is unknown, ``InvalidJobOptionError`` if it
        has not failed.
        """
        await self.adopt_legacy_members()
        if job_key is not None:
            keys = [job_key]
        else:
            keys = [self.job_key_from_id(i.decode()) for i in await self.r.zrange(self.keys.failed, 0, -1)]
        done = 0
        for key in keys:
            job = await self.job(key)
            if job is None or job.status != Status.FAILED:
                if job_key is None:
                    continue
                if job is None:
                    raise JobNotFoundError(f"no job {job_key!r} on queue {self.name!r}")
                raise InvalidJobOptionError(
                    f"job {job_key!r} on queue {self.name!r} is {job.status.value}, not failed"
                )
            job.meta["failures"] = 0
            job.meta["stalls"] = 0
            if await self.requeue(job, guard=False):
                done += 1
        return done

    # ------------------------------------------------------------------ recurring-job specs

    async def recurring_specs(self) -> dict[str, str]:
        """Every recurring job of this queue: key -> its JSON spec."""
        raw = await cast("Awaitable[dict[bytes, bytes]]", self.r.hgetall(self.keys.repeat))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def put_recurring(self, key: str, spec: str) -> None:
        """Store (or replace) recurring job ``key``; a pending tick of the one it replaces is dropped."""
        await self._drop_pending_ticks(key)
        await cast("Awaitable[int]", self.r.hset(self.keys.repeat, key, spec))

    async def remove_recurring(self, key: str) -> bool:
        """Forget recurring job ``key`` and its pending tick; False if there was none."""
        removed = bool(await cast("Awaitable[int]", self.r.hdel(self.keys.repeat, key)))
        await self._drop_pending_ticks(key)
        return removed

    async def _drop_pending_ticks(self, key: str) -> None:
        pattern = self.job_id(f"repeat:{key}:*")
        async for member, score in self.r.zscan_iter(self.keys.incomplete, match=pattern):
            if score > 0:  # still delayed: not started yet
                pipe = self.r.pipeline(transaction=True)
                pipe.zrem(self.keys.incomplete, member)
                pipe.delete(member)
                await pipe.execute()


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
