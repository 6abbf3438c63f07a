"""QueueManager: add, schedule, stats, pause, clean and workers for named queues on SAQ + Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
from croniter import croniter  # type: ignore[import-untyped]
from saq.job import Job, Status
from saq.utils import now, uuid1

from ._config import QueueConfig
from ._errors import InvalidJobOptionError
from ._job import JobInfo, check_attempts, check_backoff, check_priority, seconds
from ._observe import QueueObserver
from ._pubsub import channel_messages, close_listener, listener_client
from ._queue import CleanStatus, EventHook, KernelJob, KernelRedisQueue, clip
from ._registry import ANY_NAME, Processor, ProcessorRegistry
from ._worker import QueueWorker

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from kernel_eventbus import EventBus
    from kernel_metrics import LabelBudget, Metrics
    from kernel_redis import AnyRedis
    from prometheus_client import Counter, Histogram

    from ._durability import Replication

log = logging.getLogger("kernel.plugins.queue")

QUEUES_KEY = "kernel_queue:queues"
"""Redis set of every queue name a manager has used (for ``get_all_queue_stats``)."""
_RETRIES_SENTINEL = 1 << 30
"""SAQ's own ``retries`` is set out of reach: every failure goes through our retry policy."""
_NO_DEFAULTS: dict[str, Any] = {}
"""The job options of a queue without defaults (never written)."""
_JOB_OPTIONS = ("priority", "attempts", "backoff", "delay", "job_id", "timeout")
"""The per-job options of ``add_job`` (keywords of ``_build``)."""
_BULK_KEYS = frozenset({"name", "data", *_JOB_OPTIONS})
"""The keys an ``add_bulk_jobs`` item may have."""


def _job_options(spec: Mapping[str, Any], **fixed: Any) -> dict[str, Any]:
    """The job options ``spec`` gives (None for those it lacks), with ``fixed`` over them."""
    return {key: spec.get(key) for key in _JOB_OPTIONS} | fixed


EventHandler = Callable[[dict[str, Any]], Awaitable[None] | None]


class QueueManager:
    """Named job queues on one Redis: enqueue, inspect, control, and run workers.

    >>> qm = kernel.get(QueueManager)                                   # doctest: +SKIP
    >>> await qm.add_job("notifications", "send-notification", {"user_id": "456"})

    Workers run in the manager's task group, hosted by a task of its own until :meth:`close`.
    """

    def __init__(
        self,
        redis: AnyRedis,
        config: QueueConfig | None = None,
        *,
        blocking: AnyRedis | None = None,
        replication: Replication | None = None,
        metrics: Metrics | None = None,
        eventbus: EventBus | None = None,
        processors: ProcessorRegistry | None = None,
    ) -> None:
        self.redis: AnyRedis = redis
        self.config = config or QueueConfig()
        self.processors = processors or ProcessorRegistry()
        self._blocking: AnyRedis | None = blocking
        self._replication = replication
        # Subscribes (SAQ's job listeners, queue_events): the client itself, or a node client on a cluster.
        self._listener, self._own_listener = listener_client(redis)
        self._event_hooks: list[EventHook] = []
        if eventbus is not None:
            self._event_hooks.append(_BusPublisher(eventbus))
        if metrics is not None:
            self._event_hooks.append(_JobMetrics(metrics))
        self._queues: dict[str, KernelRedisQueue] = {}
        self._defaults: dict[str, dict[str, Any]] = {}
        self._workers: list[QueueWorker] = []
        self._task_group: TaskGroup | None = None
        self._host: asyncio.Task[None] | None = None
        self._hosting = anyio.Event()
        # Listener handles are asyncio tasks: listen_to_queue_events() returns them (public API).
        self._listeners: set[asyncio.Task[None]] = set()
        self._known_pending: set[str] = set()

    # ------------------------------------------------------------------ queues

    def get_queue(self, name: str, **defaults: Any) -> KernelRedisQueue:
        """The queue ``name`` (created on first use); ``defaults`` are job options for its ``add_job``.

        Accepted defaults: ``priority``, ``attempts``, ``backoff``, ``timeout``.
        """
        if not isinstance(name, str) or not name or any(c in name for c in ":{}"):
            raise InvalidJobOptionError(
                f"queue name must be a non-empty str without ':', '{{' or '}}', got {name!r}"
            )
        if defaults:
            unknown = set(defaults) - {"priority", "attempts", "backoff", "timeout"}
            if unknown:
                raise InvalidJobOptionError(f"unknown queue defaults {sorted(unknown)} for queue {name!r}")
            self._defaults[name] = {**self._defaults.get(name, {}), **self._options(**defaults)}
        queue = self._queues.get(name)
        if queue is None:
            cfg = self.config
            queue = KernelRedisQueue(
                self.redis,
                name,
                blocking=self._blocking,
                listener=self._listener,
                replication=self._replication,
                poll_interval=cfg.poll_interval,
                stall_timeout=cfg.stall_timeout,
                max_stalls=cfg.max_stalls,
                events=cfg.events,
                max_payload_bytes=cfg.max_payload_bytes,
                completed_retention=cfg.completed_retention,
                failed_retention=cfg.failed_retention,
                log_data_chars=cfg.log_data_chars,
            )
            queue.event_hooks.extend(self._event_hooks)
            self._queues[name] = queue
            self._known_pending.add(name)
        return queue

    async def _remember(self, name: str) -> None:
        if name in self._known_pending:
            self._known_pending.discard(name)
            await cast("Awaitable[int]", self.redis.sadd(QUEUES_KEY, name))

    async def queue_names(self) -> list[str]:
        """Every queue known to this Redis (used by any manager) plus the configured ones."""
        members = await cast("Awaitable[set[bytes | str]]", self.redis.smembers(QUEUES_KEY))
        stored = {n.decode() if isinstance(n, bytes) else n for n in members}
        return sorted(stored | set(self.config.queues) | set(self._queues))

    # ------------------------------------------------------------------ options and jobs

    def _options(
        self,
        *,
        priority: int | None = None,
        attempts: int | None = None,
        backoff: Any = None,
        timeout: float | timedelta | None = None,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if priority is not None:
            out["priority"] = check_priority(priority)
        if attempts is not None:
            out["attempts"] = check_attempts(attempts)
        if backoff is not None:
            out["backoff"] = check_backoff(backoff)
        if timeout is not None:
            out["timeout"] = seconds(timeout, "timeout")
        return out

    def _build(
        self,
        queue: KernelRedisQueue,
        name: str,
        data: Any,
        *,
        priority: int | None = None,
        attempts: int | None = None,
        backoff: Any = None,
        delay: float | timedelta | None = None,
        job_id: str | None = None,
        timeout: float | timedelta | None = None,
        where: str = "",
        queued: int | None = None,
        scheduled: float | None = None,
    ) -> tuple[Job, bytes | str]:
        """A new job for ``queue``, queued at ``queued`` (default: now), and its stored JSON.

        Due ``delay`` seconds from now, or at epoch ``scheduled``. An option left None takes the
        queue's default, then the config's. Invalid input raises in the order name, data, job_id,
        options.
        """
        if not isinstance(name, str) or not name:
            raise InvalidJobOptionError(f"job name must be a non-empty str, got {name!r}")
        try:
            if job_id is not None and (not isinstance(job_id, str) or not job_id):
                raise InvalidJobOptionError(f"job_id must be a non-empty str, got {job_id!r}")
            defaults = self._defaults.get(queue.name, _NO_DEFAULTS)
            prio = check_priority(priority) if priority is not None else defaults.get("priority")
            tries = (
                check_attempts(attempts)
                if attempts is not None
                else defaults.get("attempts", self.config.default_attempts)
            )
            back = check_backoff(backoff) if backoff is not None else defaults.get("backoff")
            limit = (
                seconds(timeout, "timeout")
                if timeout is not None
                else defaults.get("timeout", self.config.default_timeout)
            )
            wait = seconds(delay, "delay") if delay is not None else 0.0
        except InvalidJobOptionError:
            # The data is checked with the whole job below; bad data is still reported first.
            queue.check_payload(data, f"{where}job {name!r} on queue {queue.name!r}: data")
            raise
        meta: dict[str, Any] = {"max_attempts": tries} if tries != 1 else {}  # readers default to 1
        if back:
            meta["backoff"] = back
        if self.processors.observer is not None:  # traced: it may add keys to the stored meta
            self.processors.observer.enqueuing(queue.name, name, meta)
        if scheduled is None:
            scheduled = time.time() + wait if wait else 0
        # SAQ's ttl is unused: the finish script applies completed_retention / failed_retention.
        job = KernelJob(
            function=name,
            kwargs={"data": data},
            key=job_id or uuid1(),
            timeout=limit,  # type: ignore[arg-type]
            heartbeat=0,
            retries=_RETRIES_SENTINEL,
            ttl=0,
            priority=prio or 0,
            meta=meta,
            scheduled=scheduled,  # type: ignore[arg-type]
        )
        job.queue = queue
        job.queued = now() if queued is None else queued
        job.status = Status.QUEUED
        # One encode for the data check and the Redis write.
        return job, queue.serialize_new(job, where)

    async def add_job(
        self,
        queue: str,
        name: str,
        data: Any = None,
        *,
        priority: int | None = None,
        attempts: int | None = None,
        backoff: Any = None,
        delay: float | timedelta | None = None,
        job_id: str | None = None,
        timeout: float | timedelta | None = None,  # noqa: ASYNC109 - the job's limit, not this call's
    ) -> str:
        """Enqueue one job; returns its id.

        ``priority``: 1 (highest) .. 2,097,152; jobs without one run after every prioritised job.
        ``attempts``: total tries; ``backoff``: ``{"type": "exponential"|"fixed", "delay": s}``;
        ``delay``/``timeout`` in seconds or ``timedelta``. A ``job_id`` that already exists
        (in any state, until cleaned) is not enqueued again: its id is returned.
        """
        q = self._queues.get(queue) if isinstance(queue, str) else None
        if q is None:
            q = self.get_queue(queue)
        job, payload = self._build(
            q,
            name,
            data,
            priority=priority,
            attempts=attempts,
            backoff=backoff,
            delay=delay,
            job_id=job_id,
            timeout=timeout,
        )
        if self._known_pending:
            await self._remember(queue)
        await q.add(job, payload)
        return job.key

    async def add_bulk_jobs(self, queue: str, jobs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Enqueue many jobs in one round trip; each item: ``name``, ``data`` and any ``add_job`` option."""
        q = self.get_queue(queue)
        built: list[Job] = []
        payloads: list[bytes | str] = []
        stamp = now()
        for i, spec in enumerate(jobs):
            if not isinstance(spec, Mapping) or "name" not in spec:
                raise InvalidJobOptionError(f"jobs[{i}] must be a mapping with at least 'name', got {spec!r}")
            if not _BULK_KEYS.issuperset(spec):
                raise InvalidJobOptionError(f"jobs[{i}]: unknown keys {sorted(set(spec) - _BULK_KEYS)}")
            options = _job_options(spec)
            job, payload = self._build(
                q, spec["name"], spec.get("data"), **options, where=f"jobs[{i}]: ", queued=stamp
            )
            built.append(job)
            payloads.append(payload)
        if not built:
            return []
        if self._known_pending:
            await self._remember(queue)
        await q.enqueue_many(built, payloads)
        return [job.key for job in built]

    async def schedule_job(
        self, queue: str, name: str, data: Any, delay: float | timedelta, **options: Any
    ) -> str:
        """``add_job`` with a delay (seconds or ``timedelta``)."""
        return await self.add_job(queue, name, data, delay=delay, **options)

    # ------------------------------------------------------------------ recurring jobs

    async def schedule_recurring_job(
        self,
        queue: str,
        name: str,
        data: Any,
        cron: str,
        *,
        key: str | None = None,
        tz: str = "UTC",
        **options: Any,
    ) -> str:
        """Run ``name`` on every tick of ``cron`` (5 fields, or 6 with seconds last), once per tick.

        Stored in Redis, so it survives restarts and fires once per tick however many workers
        run; replaced when scheduled again under the same ``key`` (default: ``name``).
        Returns the key for :meth:`remove_recurring_job`.
        """
        if not isinstance(cron, str) or not croniter.is_valid(cron):
            raise InvalidJobOptionError(f"invalid cron expression {cron!r} (e.g. '0 0 * * *' = daily)")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidJobOptionError(f"unknown time zone {tz!r}") from exc
        key = key or name
        if ":" in key:
            raise InvalidJobOptionError(f"recurring job key must not contain ':', got {key!r}")
        q = self.get_queue(queue)
        self._options(**options)  # validate now, not at every tick
        q.check_payload(data, f"recurring job {key!r} on queue {queue!r}: data")
        spec = {"name": name, "data": data, "cron": cron, "tz": tz, "options": options}
        try:
            payload = json.dumps(spec, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidJobOptionError(
                f"recurring job {key!r}: data must be JSON-serializable: {exc}"
            ) from exc
        await self._remember(queue)
        await q.put_recurring(key, payload)
        await self._fire_recurring(q)
        return key

    async def remove_recurring_job(self, queue: str, key: str) -> bool:
        """Stop a recurring job at runtime (its pending next tick is removed too)."""
        return await self.get_queue(queue).remove_recurring(key)

    async def list_recurring_jobs(self, queue: str) -> dict[str, dict[str, Any]]:
        """The recurring jobs of ``queue``: key -> ``{name, data, cron, tz, options}``."""
        specs = await self.get_queue(queue).recurring_specs()
        return {key: json.loads(spec) for key, spec in specs.items()}

    async def _fire_recurring(self, q: KernelRedisQueue) -> None:
        specs = await q.recurring_specs()
        if not specs:
            return
        current = time.time()
        for key, payload in specs.items():
            try:
                spec = json.loads(payload)
                base = datetime.fromtimestamp(current, ZoneInfo(spec.get("tz", "UTC")))
                tick = float(croniter(spec["cron"], base).get_next(float))
                # no delay: due at the tick; the tick's own id (see below)
                options = _job_options(
                    spec.get("options", {}), delay=None, job_id=f"repeat:{key}:{int(tick)}"
                )
                job, stored = self._build(q, spec["name"], spec.get("data"), **options, scheduled=tick)
                # The same id for the same tick from every worker: the enqueue dedupes it.
                await q.add(job, stored)
            except Exception:
                log.exception("recurring job %r on queue %r could not be scheduled", key, q.name)

    # ------------------------------------------------------------------ inspection

    async def get_job(self, queue: str, job_id: str) -> JobInfo | None:
        """State, progress, result, attempts and failure reason of one job (None if unknown)."""
        q = self.get_queue(queue)
        job = await q.job(job_id)
        if job is None:
            return None
        delayed = job.status == Status.QUEUED and await q.is_delayed(job)
        return JobInfo.from_job(job, delayed=delayed)

    async def get_queue_stats(self, queue: str) -> dict[str, Any]:
        """``{queue_name, waiting, active, completed, failed, delayed, total, paused}``.

        ``completed``/``failed`` count finished jobs kept in Redis (for ``completed_retention`` /
        ``failed_retention``, or until ``clean_queue``);
        ``total`` = waiting + active + delayed (unfinished jobs).
        """
        return await self.get_queue(queue).stats()

    async def get_all_queue_stats(self) -> list[dict[str, Any]]:
        """:meth:`get_queue_stats` of every known queue (:meth:`queue_names`)."""
        return [await self.get_queue_stats(name) for name in await self.queue_names()]

    async def get_counts(self, queue: str) -> dict[str, int]:
        """Lifetime totals kept even after ``clean_queue``: completed, failed, stalled."""
        return await self.get_queue(queue).totals()

    # ------------------------------------------------------------------ control

    async def pause_queue(self, queue: str) -> None:
        """Every worker process stops taking jobs from ``queue``; running jobs finish."""
        await self.get_queue(queue).pause()

    async def resume_queue(self, queue: str) -> None:
        """Let workers take jobs from ``queue`` again."""
        await self.get_queue(queue).resume()

    async def is_paused(self, queue: str) -> bool:
        """Whether ``queue`` is paused (in any process)."""
        return await self.get_queue(queue).is_paused()

    async def clean_queue(
        self, queue: str, grace: float | timedelta = 0, limit: int = 1000, status: CleanStatus = "completed"
    ) -> list[str]:
        """Delete up to ``limit`` (<= 0: all) jobs in ``status`` older than ``grace`` seconds; their ids."""
        return await self.get_queue(queue).clean(status, seconds(grace, "grace"), limit)

    async def retry_failed(self, queue: str, job_id: str | None = None) -> int:
        """Re-queue one failed job (or every failed job) with a fresh attempt budget; how many."""
        return await self.get_queue(queue).retry_failed(job_id)

    # ------------------------------------------------------------------ instrumentation

    def set_observer(self, observer: QueueObserver | None) -> None:
        """Tell ``observer`` about every job built here and every processor attempt of this manager's
        workers from now on (None: stop)."""
        self.processors.observer = observer

    # ------------------------------------------------------------------ processors and workers

    def register_processor(self, queue: str, name: str, fn: Processor, *, replace: bool = False) -> None:
        """``fn(job)`` (async) processes jobs named ``name`` on ``queue``; ``name="*"`` takes the rest."""
        self.get_queue(queue)
        self.processors.register(queue, name, fn, replace=replace)

    def processor(self, queue: str, name: str = ANY_NAME) -> Callable[[Processor], Processor]:
        """Decorator form of :meth:`register_processor`."""

        def deco(fn: Processor) -> Processor:
            self.register_processor(queue, name, fn)
            return fn

        return deco

    def make_worker(self, queue: str, *, concurrency: int = 1) -> QueueWorker:
        """A worker for ``queue`` (not started): ``await worker.start()`` runs it until stopped."""
        if concurrency < 1:
            raise InvalidJobOptionError(f"concurrency must be >= 1, got {concurrency!r}")
        q = self.get_queue(queue)
        return QueueWorker(
            q,
            self.processors,
            self.config,
            concurrency=concurrency,
            recurring=lambda: self._fire_recurring(q),
        )

    async def create_worker(
        self, queue: str, processor: Processor | None = None, *, concurrency: int = 1
    ) -> QueueWorker:
        """Start processing ``queue`` in this process (like BullMQ's ``Worker``).

        ``processor`` (if given) handles every job name of the queue without a specific
        processor. The worker runs until :meth:`close` (or ``await worker.stop()``).
        """
        if processor is not None:
            self.register_processor(queue, ANY_NAME, processor, replace=True)
        worker = self.make_worker(queue, concurrency=concurrency)
        await self._remember(queue)
        task_group = await self._workers_task_group()
        await task_group.start(worker.serve, name=f"queue-worker-{queue}")
        self._workers.append(worker)
        return worker

    async def _workers_task_group(self) -> TaskGroup:
        # Workers outlive the call that starts them, so their task group lives in a task of its
        # own, started on first use, ended by close(): anyio has no task that outlives its
        # caller's task group, and SAQ is asyncio-only.
        if self._host is None:
            self._hosting = hosting = anyio.Event()

            async def host() -> None:
                async with anyio.create_task_group() as task_group:
                    self._task_group = task_group
                    hosting.set()
                    await anyio.sleep_forever()

            self._host = asyncio.create_task(host(), name="queue-workers")
        await self._hosting.wait()
        assert self._task_group is not None
        return self._task_group

    async def stop_workers(self) -> None:
        """Graceful stop of this manager's workers: no new jobs; running ones get ``shutdown_grace``."""
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.request_stop()
        for worker in workers:
            await worker.wait_ended()

    # ------------------------------------------------------------------ events

    async def queue_events(self, queue: str) -> AsyncIterator[dict[str, Any]]:
        """Yield the events of ``queue`` from every process (waiting, delayed, active, progress, completed,
        failed) as dicts ``{event, queue, job_id, name, attempts, ...}``."""
        q = self.get_queue(queue)
        messages = channel_messages(self.redis, self._listener, q.events_channel)
        try:
            async for data in messages:
                yield json.loads(data)
        finally:
            await messages.aclose()

    def listen_to_queue_events(self, queue: str, handler: EventHandler | None = None) -> asyncio.Task[None]:
        """Call ``handler(event)`` (default: log it) for every event of ``queue`` until :meth:`close`."""

        async def run() -> None:
            async for event in self.queue_events(queue):
                try:
                    if handler is None:
                        shown = {
                            k: clip(v, self.config.log_data_chars) if k in ("result", "error") else v
                            for k, v in event.items()
                        }
                        log.info(
                            "queue %s: job %s %s",
                            queue,
                            event.get("job_id"),
                            event.get("event"),
                            extra={"queue": queue, "job_event": shown},
                        )
                    else:
                        result = handler(event)
                        if result is not None:
                            await result
                except Exception:
                    log.exception("queue event handler failed", extra={"queue": queue})

        # An asyncio task: the handle this method returns (public API), outliving the caller.
        task = asyncio.create_task(run(), name=f"queue-events-{queue}")
        self._listeners.add(task)
        task.add_done_callback(self._listeners.discard)
        return task

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Stop workers gracefully and event listeners; the Redis client belongs to the redis plugin."""
        await self.stop_workers()
        host, task_group = self._host, self._task_group
        self._host = self._task_group = None
        if task_group is not None:
            task_group.cancel_scope.cancel()
        if host is not None:
            await host
        for task in list(self._listeners):
            task.cancel()
        if self._listeners:
            # The asyncio tasks listen_to_queue_events() returned (public API): no task group owns them.
            await asyncio.gather(*self._listeners, return_exceptions=True)
        for q in self._queues.values():
            await q.disconnect()
        if self._own_listener:
            await close_listener(self._listener)

    def __repr__(self) -> str:
        return f"<QueueManager queues={sorted(self._queues)}>"


class _BusPublisher:
    """Event hook: publishes ``queue.job.<event>`` on the event bus."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    async def __call__(self, event: str, job: Job, extra: dict[str, Any]) -> None:
        data = {
            "queue": job.get_queue().name,
            "job_id": job.key,
            "name": job.function,
            "attempts": job.attempts,
            **extra,
        }
        await self.bus.publish(f"queue.job.{event}", data, source="queue")


class _JobMetrics:
    """Event hook: records ``queue_jobs_total`` and ``queue_job_duration_seconds``."""

    def __init__(self, metrics: Metrics) -> None:
        # Queue names come from callers: recorded within the collector's series budget.
        self.events: LabelBudget[Counter] = metrics.bounded(
            metrics.counter("queue_jobs_total", "Job events handled by this process", ["queue", "event"])
        )
        self.durations: LabelBudget[Histogram] = metrics.bounded(
            metrics.histogram(
                "queue_job_duration_seconds", "Processing time of finished jobs", ["queue", "status"]
            )
        )

    async def __call__(self, event: str, job: Job, extra: dict[str, Any]) -> None:
        name = job.get_queue().name
        self.events.labels(name, event).inc()
        if event in ("completed", "failed") and job.started and job.completed:
            self.durations.labels(name, event).observe(max(job.completed - job.started, 0) / 1000)
