"""milo-kernel ``queue`` plugin: background job queues on SAQ + Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports

if TYPE_CHECKING:
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

_EXPORTS = {
    "ANY_NAME": "._registry",
    "InvalidJobOptionError": "._errors",
    "JobContext": "._job",
    "JobDataError": "._errors",
    "JobInfo": "._job",
    "JobNotFoundError": "._errors",
    "JobTooLargeError": "._errors",
    "KernelRedisQueue": "._queue",
    "MAX_PRIORITY": "._queue",
    "ProcessorRegistry": "._registry",
    "QueueConfig": "._config",
    "QueueError": "._errors",
    "QueueKeys": "._queue",
    "QueueManager": "._manager",
    "QueuePlugin": "._plugin",
    "QueueWorker": "._worker",
    "UnknownProcessorError": "._errors",
    "backoff_delay": "._queue",
    "notification_processor": "._samples",
    "register_sample_processors": "._samples",
}
"""Public name -> the submodule defining it, imported on first use (PEP 562)."""

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


if not TYPE_CHECKING:  # type checkers read the imports above; lazy loading keeps `import` light
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
