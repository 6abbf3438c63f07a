"""A SAQ worker that heartbeats automatically, dispatches by job name and fires recurring jobs."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import anyio
from redis.exceptions import RedisError
from saq.worker import Worker

from ._errors import UnknownProcessorError
from ._job import JobContext
from ._observe import QueueObserver

if TYPE_CHECKING:
    from anyio.abc import TaskStatus
    from saq.types import PartialTimersDict

    from ._config import QueueConfig
    from ._queue import KernelRedisQueue
    from ._registry import ProcessorRegistry

log = logging.getLogger("kernel.plugins.queue")

Processor = Callable[[JobContext], Awaitable[Any]]


async def _observed(
    observer: QueueObserver, fn: Callable[[JobContext], Any], job: JobContext, meta: Mapping[str, Any]
) -> Any:
    """One processor attempt inside the observer's ``running`` context."""
    with observer.running(job.queue_name, job, meta) as attempt:
        try:
            result = fn(job)
            if inspect.isawaitable(result):
                result = await result
        except BaseException as exc:
            attempt.failed(exc)
            raise
        return result


class _Dispatch(dict[str, Any]):
    """SAQ looks functions up by job name; every name resolves to one dispatcher per name."""

    def __init__(self, queue: KernelRedisQueue, processors: ProcessorRegistry) -> None:
        super().__init__()
        self._queue = queue
        self._processors = processors

    def __missing__(self, name: str) -> Callable[..., Awaitable[Any]]:
        queue, processors = self._queue, self._processors

        async def run(ctx: dict[str, Any], **_kwargs: Any) -> Any:
            fn = processors.resolve(queue.name, name)
            if fn is None:
                raise UnknownProcessorError(queue.name, name, processors.names(queue.name))
            if processors.observer is not None:  # traced (see QueueManager.set_observer)
                return await _observed(
                    processors.observer, fn, JobContext(ctx["job"], queue), ctx["job"].meta
                )
            result = fn(JobContext(ctx["job"], queue))
            if inspect.isawaitable(result):
                result = await result
            return result

        run.__qualname__ = name
        self[name] = run
        return run


class QueueWorker(Worker):  # type: ignore[type-arg]
    """Runs the processors registered for one queue, ``concurrency`` jobs at a time.

    Signals are handled by whoever runs the worker (``kernel worker``, the manager), not by
    SAQ: several workers share one process and one SIGTERM. SAQ is asyncio-only, and so is
    the worker.
    """

    SIGNALS = []

    def __init__(
        self,
        queue: KernelRedisQueue,
        processors: ProcessorRegistry,
        config: QueueConfig,
        *,
        concurrency: int,
        recurring: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(
            queue,
            functions=[],
            concurrency=concurrency,
            # SAQ types its timers int; fractions of a second work (they only feed asyncio.sleep).
            timers=cast(
                "PartialTimersDict",
                {
                    "schedule": config.schedule_interval,
                    "sweep": config.sweep_interval,
                    "abort": 1,
                    "worker_info": 10,
                },
            ),
            shutdown_grace_period_s=config.shutdown_grace,  # type: ignore[arg-type]
        )
        self.functions = _Dispatch(queue, processors)
        self.kqueue = queue
        self.heartbeat_interval = config.heartbeat_interval
        self._recurring = recurring
        self._started = anyio.Event()
        self._ended = anyio.Event()
        self._task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
        self._upkeep: list[asyncio.Task[None]] = []

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """:meth:`start` for ``TaskGroup.start``: ready once it takes jobs; later errors are logged."""
        self._task_status = task_status
        try:
            await self.start()
        except Exception:
            if not self._started.is_set():
                raise
            log.exception("queue worker ended with an error", extra={"queue": self.kqueue.name})
        finally:
            self._ended.set()

    async def start(self) -> None:
        """Take and run jobs until stopped, with an automatic heartbeat for the running ones."""
        failure: Exception | None = None
        await self.kqueue.adopt_legacy_members()  # ids of jobs migrated from the old key layout
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._beat)
            try:
                await super().start()
            except Exception as exc:  # raised as it is below, not in an ExceptionGroup
                failure = exc
            tg.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def process(self) -> bool:
        """Take and run one job, unless the worker is stopping.

        While Redis is unreachable (a failover, a restart) SAQ's step raises: the error is logged
        and the step waits ``poll_interval`` before the next try. A job whose result could not be
        written stays on the active list; once its heartbeat stops, the sweep re-queues it.
        """
        if self.event.is_set():  # stopping: take no new job
            return False
        try:
            return await super().process()
        except RedisError as exc:
            log.warning(
                "queue %s: Redis unavailable, retrying in %gs: %s",
                self.kqueue.name,
                self.kqueue.poll_interval,
                exc,
                extra={"queue": self.kqueue.name},
            )
            await anyio.sleep(self.kqueue.poll_interval)
            return False

    async def schedule(self, lock: int = 1) -> None:
        """Enqueue due ticks of recurring jobs, then move due delayed jobs to waiting."""
        if self._recurring is not None:
            await self._recurring()
        await self.kqueue.schedule(lock)

    async def upkeep(self) -> list[asyncio.Task[None]]:
        """Start SAQ's upkeep tasks (schedule, sweep, abort); the worker is ready from here on."""
        # Upkeep tasks are kept out of ``self.tasks``: SAQ's stop() would wait the whole grace
        # period for their sleeps. They are cancelled once the running jobs are done.
        self._upkeep = await super().upkeep()
        self._started.set()
        self._task_status.started()
        return []

    async def stop(self) -> None:
        """Stop taking jobs, let running ones finish within the grace period, end the upkeep."""
        try:
            await super().stop()
        finally:
            upkeep, self._upkeep = self._upkeep, []
            for task in upkeep:
                task.cancel()
            # SAQ's own asyncio tasks (SAQ is asyncio-only): no anyio task group owns them.
            await asyncio.gather(*upkeep, return_exceptions=True)

    async def _beat(self) -> None:
        # Automatic heartbeat for every job this process runs: a processor that never reports
        # progress is not mistaken for a dead one. It runs until start() returns, so it keeps
        # beating while a graceful stop lets running jobs finish.
        while True:
            try:
                await self.kqueue.heartbeat([job.id for job in list(self.job_task_contexts)])
            except Exception:
                log.exception("queue heartbeat failed", extra={"queue": self.kqueue.name})
            await anyio.sleep(self.heartbeat_interval)

    async def wait_started(self) -> None:
        """Wait until the worker takes jobs."""
        await self._started.wait()

    async def wait_ended(self) -> None:
        """Wait until :meth:`serve` has returned (stopped, or ended by an error)."""
        await self._ended.wait()

    def request_stop(self) -> None:
        """Stop taking jobs; ``start()`` then finishes running ones within the grace period."""
        self.event.set()
