"""milo-kernel ``queue`` plugin: background job queues on SAQ + Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel import lazy_exports

if TYPE_CHECKING:  # what type checkers and IDEs read
    from ._browse import LISTABLE as LISTABLE
    from ._browse import FinishedCounts as FinishedCounts
    from ._browse import finished_per_interval as finished_per_interval
    from ._browse import list_jobs as list_jobs
    from ._browse import remove_job as remove_job
    from ._config import QueueConfig as QueueConfig
    from ._errors import EnqueueNotReplicatedError as EnqueueNotReplicatedError
    from ._errors import InvalidJobOptionError as InvalidJobOptionError
    from ._errors import JobDataError as JobDataError
    from ._errors import JobNotFoundError as JobNotFoundError
    from ._errors import JobTooLargeError as JobTooLargeError
    from ._errors import QueueError as QueueError
    from ._errors import UnknownProcessorError as UnknownProcessorError
    from ._job import JobContext as JobContext
    from ._job import JobInfo as JobInfo
    from ._manager import QueueManager as QueueManager
    from ._observe import JobAttempt as JobAttempt
    from ._observe import QueueObserver as QueueObserver
    from ._plugin import QueuePlugin as QueuePlugin
    from ._queue import MAX_PRIORITY as MAX_PRIORITY
    from ._queue import KernelRedisQueue as KernelRedisQueue
    from ._queue import QueueKeys as QueueKeys
    from ._queue import backoff_delay as backoff_delay
    from ._queue import queue_tag as queue_tag
    from ._registry import ANY_NAME as ANY_NAME
    from ._registry import ProcessorRegistry as ProcessorRegistry
    from ._samples import notification_processor as notification_processor
    from ._samples import register_sample_processors as register_sample_processors
    from ._worker import QueueWorker as QueueWorker
else:  # PEP 562: a submodule is imported on first use of one of its names
    _EXPORTS = {  # submodule -> the public names it defines
        "._browse": ["LISTABLE", "FinishedCounts", "finished_per_interval", "list_jobs", "remove_job"],
        "._config": ["QueueConfig"],
        "._errors": [
            "EnqueueNotReplicatedError",
            "InvalidJobOptionError",
            "JobDataError",
            "JobNotFoundError",
            "JobTooLargeError",
            "QueueError",
            "UnknownProcessorError",
        ],
        "._job": ["JobContext", "JobInfo"],
        "._manager": ["QueueManager"],
        "._plugin": ["QueuePlugin"],
        "._queue": ["MAX_PRIORITY", "KernelRedisQueue", "QueueKeys", "backoff_delay", "queue_tag"],
        "._observe": ["JobAttempt", "QueueObserver"],
        "._registry": ["ANY_NAME", "ProcessorRegistry"],
        "._samples": ["notification_processor", "register_sample_processors"],
        "._worker": ["QueueWorker"],
    }
    __getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
