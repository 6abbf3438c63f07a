"""milo-kernel ``queue`` plugin: background job queues on SAQ + Redis."""

from ._config import QueueConfig
from ._errors import (
    InvalidJobOptionError,
    JobDataError,
    JobNotFoundError,
    JobTooLargeError,
    QueueError,
    UnknownProcessorError,
)
from ._job import JobContext, JobInfo
from ._manager import QueueManager
from ._plugin import QueuePlugin
from ._queue import MAX_PRIORITY, KernelRedisQueue, QueueKeys, backoff_delay
from ._registry import ANY_NAME, ProcessorRegistry
from ._samples import notification_processor, register_sample_processors
from ._worker import QueueWorker

__all__ = [
    "ANY_NAME",
    "InvalidJobOptionError",
    "JobContext",
    "JobDataError",
    "JobInfo",
    "JobNotFoundError",
    "JobTooLargeError",
    "KernelRedisQueue",
    "MAX_PRIORITY",
    "ProcessorRegistry",
    "QueueConfig",
    "QueueError",
    "QueueKeys",
    "QueueManager",
    "QueuePlugin",
    "QueueWorker",
    "UnknownProcessorError",
    "backoff_delay",
    "notification_processor",
    "register_sample_processors",
]
