"""The queue's instrumentation seam: what an observer (tracing) is told when a job is built and run.

No observer by default: building a job costs one attribute test, running one another.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._job import JobContext


class JobAttempt(Protocol):
    """One attempt of a job's processor as its observer sees it."""

    def failed(self, error: BaseException) -> None:
        """The processor raised ``error`` (the queue retries or fails the job as configured)."""


class QueueObserver(Protocol):
    """Told about every job built and every processor attempt (see :meth:`QueueManager.set_observer`)."""

    def enqueuing(self, queue: str, name: str, meta: dict[str, Any]) -> None:
        """A job ``name`` for ``queue`` is being built: keys added to ``meta`` are stored in its record
        (the otel plugin adds ``traceparent``, ``tracestate`` when not empty, and ``trace_id``)."""

    def running(
        self, queue: str, job: JobContext, meta: Mapping[str, Any]
    ) -> AbstractContextManager[JobAttempt]:
        """Entered around one attempt of the job's processor (which runs inside it, in the same task);
        ``meta`` is the job record's meta (what :meth:`enqueuing` added)."""
