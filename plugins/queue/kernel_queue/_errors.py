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
