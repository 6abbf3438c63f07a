"""What a processor receives (``JobContext``) and what ``get_job`` returns (``JobInfo``)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import attrs
from saq.job import Job, Status

from ._errors import InvalidJobOptionError
from ._queue import MAX_PRIORITY

if TYPE_CHECKING:
    from ._queue import KernelRedisQueue

JobState = Literal["waiting", "delayed", "active", "completed", "failed", "aborted"]


class JobContext:
    """The job as a processor sees it: ``data``, ``name``, ``id``, ``attempts``, ``update_progress``."""

    __slots__ = ("_job", "_queue")

    def __init__(self, job: Job, queue: KernelRedisQueue) -> None:
        self._job = job
        self._queue = queue

    @property
    def data(self) -> Any:
        """The JSON data given to ``add_job``."""
        return (self._job.kwargs or {}).get("data")

    @property
    def name(self) -> str:
        """The job's name (what ``add_job`` was given; processors are registered by it)."""
        return self._job.function

    @property
    def id(self) -> str:
        """The job's id (``job_id`` or a generated one)."""
        return self._job.key

    @property
    def queue_name(self) -> str:
        """The queue the job runs on."""
        return self._queue.name

    @property
    def attempts(self) -> int:
        """Tries started so far, this one included (1 on the first run)."""
        return self._job.attempts

    @property
    def max_attempts(self) -> int:
        """Total tries allowed (``attempts``)."""
        return int(self._job.meta.get("max_attempts", 1))

    @property
    def progress(self) -> float:
        """The last progress reported (100 once completed)."""
        return self._job.progress

    async def update_progress(self, progress: float) -> None:
        """Record progress (0-100 by convention), publish a ``progress`` event; also a heartbeat."""
        if isinstance(progress, bool) or not isinstance(progress, int | float) or not math.isfinite(progress):
            raise InvalidJobOptionError(f"progress must be a finite number, got {progress!r}")
        await self._queue.update(self._job, progress=progress, _event="progress")

    def __repr__(self) -> str:
        return f"<job {self.name!r} id={self.id!r} queue={self._queue.name!r} attempts={self.attempts}>"


@attrs.frozen
class JobInfo:
    """A snapshot of one job (``QueueManager.get_job``)."""

    id: str
    queue: str
    name: str
    data: Any
    state: JobState
    progress: float
    result: Any
    attempts: int
    """Tries started (including ones interrupted by a dead worker or a shutdown)."""
    failures: int
    """Tries that ended in an error; the job fails for good when this reaches ``max_attempts``."""
    max_attempts: int
    stalls: int
    """Times its worker died under it and it was reclaimed."""
    failed_reason: str | None
    priority: int | None
    created_at: float
    """Epoch seconds."""
    finished_at: float | None
    scheduled_for: float | None
    trace_id: str | None = None
    """The trace the job was enqueued in (32 hex digits), when a queue observer (the otel plugin)
    stored one in the record's meta; ``None`` otherwise."""

    @classmethod
    def from_job(cls, job: Job, *, delayed: bool) -> JobInfo:
        """The info of SAQ's ``job``; ``delayed``: a queued job that waits for its due time."""
        status = job.status
        state: JobState
        if status == Status.COMPLETE:
            state = "completed"
        elif status == Status.FAILED:
            state = "failed"
        elif status in (Status.ABORTED, Status.ABORTING):
            state = "aborted"
        elif status == Status.ACTIVE:
            state = "active"
        else:
            state = "delayed" if delayed else "waiting"
        meta = job.meta
        return cls(
            id=job.key,
            queue=job.get_queue().name,
            name=job.function,
            data=(job.kwargs or {}).get("data"),
            state=state,
            progress=job.progress,
            result=job.result,
            attempts=job.attempts,
            failures=int(meta.get("failures", 0)),
            max_attempts=int(meta.get("max_attempts", 1)),
            stalls=int(meta.get("stalls", 0)),
            failed_reason=job.error if state != "completed" else None,
            priority=job.priority or None,
            created_at=job.queued / 1000,
            finished_at=job.completed / 1000 if job.completed else None,
            scheduled_for=float(job.scheduled) if job.scheduled else None,
            trace_id=str(meta["trace_id"]) if meta.get("trace_id") else None,
        )


def seconds(value: float | timedelta | None, what: str) -> float:
    """Seconds from a number or ``timedelta``; a clear error otherwise."""
    if value is None:
        return 0.0
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidJobOptionError(f"{what} must be seconds >= 0 (a number or timedelta), got {value!r}")
    return float(value)


def check_priority(priority: int | None) -> int | None:
    """``priority`` if it is None or 1 .. ``MAX_PRIORITY``; ``InvalidJobOptionError`` otherwise."""
    if priority is None:
        return None
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= MAX_PRIORITY:
        raise InvalidJobOptionError(
            f"priority must be an int from 1 (highest) to {MAX_PRIORITY} (lowest), or None, got {priority!r}"
        )
    return priority


def check_attempts(attempts: int) -> int:
    """``attempts`` if it is an int >= 1; ``InvalidJobOptionError`` otherwise."""
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise InvalidJobOptionError(f"attempts (total tries) must be an int >= 1, got {attempts!r}")
    return attempts


def check_backoff(backoff: Any) -> dict[str, Any] | None:
    """``{"type": "exponential"|"fixed", "delay": seconds}``, a bare number (fixed), or None."""
    if backoff is None:
        return None
    if isinstance(backoff, int | float | timedelta) and not isinstance(backoff, bool):
        return {"type": "fixed", "delay": seconds(backoff, "backoff")}
    if not isinstance(backoff, dict) or set(backoff) - {"type", "delay"} or "delay" not in backoff:
        raise InvalidJobOptionError(
            f'backoff must be {{"type": "exponential"|"fixed", "delay": seconds}}, got {backoff!r}'
        )
    kind = backoff.get("type", "fixed")
    if kind not in ("exponential", "fixed"):
        raise InvalidJobOptionError(f"backoff type must be 'exponential' or 'fixed', got {kind!r}")
    return {"type": kind, "delay": seconds(backoff["delay"], "backoff delay")}
