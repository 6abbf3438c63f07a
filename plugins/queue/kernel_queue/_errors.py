"""Typed errors of the queue plugin."""

from __future__ import annotations


class QueueError(Exception):
    """Base class of every error the queue plugin raises."""


class JobDataError(QueueError, TypeError):
    """Job data (or a job result) that is not JSON-serializable."""


class JobTooLargeError(QueueError, ValueError):
    """Job data (or a job result) whose JSON is over ``[plugins.queue] max_payload_bytes``."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"{what} is {size:,} bytes as JSON, over the limit of {limit:,} bytes "
            "(plugins.queue.max_payload_bytes); store large data elsewhere and pass its id"
        )


class InvalidJobOptionError(QueueError, ValueError):
    """A bad ``priority``, ``attempts``, ``backoff``, ``delay``, ``timeout`` or cron expression."""


class UnknownProcessorError(QueueError, LookupError):
    """No processor is registered for a job's queue and name."""

    def __init__(self, queue: str, name: str, known: list[str]) -> None:
        listed = ", ".join(repr(k) for k in known) or "none"
        super().__init__(
            f"no processor for job {name!r} on queue {queue!r} (registered on this queue: {listed}); "
            f"register one with queue_manager.register_processor({queue!r}, {name!r}, fn)"
        )
        self.queue = queue
        self.name = name


class JobNotFoundError(QueueError, LookupError):
    """``get_job``/``retry_failed`` named a job that does not exist."""


class EnqueueNotReplicatedError(QueueError):
    """With ``durability = "replicated"``: fewer replicas than ``replicas`` acknowledged an enqueue in time.

    The job *is* stored on the primary (and will run unless the primary dies before replicating
    it); adding it again with the same ``job_id`` is safe: an existing id is not enqueued twice.
    """

    def __init__(self, queue: str, job_ids: list[str], required: int, timeout: float, detail: str) -> None:
        self.queue = queue
        self.job_ids = job_ids
        self.required = required
        self.timeout = timeout
        shown = ", ".join(repr(j) for j in job_ids[:3]) + (
            f" and {len(job_ids) - 3} more" if len(job_ids) > 3 else ""
        )
        super().__init__(
            f"job {shown} on queue {queue!r}: stored on the primary, but fewer than {required} replica(s) "
            f"acknowledged within {timeout:g}s (plugins.queue.replicas / replication_timeout): {detail}; "
            "it is lost if the primary fails before replicating it; "
            "add it again with the same job_id to retry"
        )
