"""milo-kernel ``queue`` plugin: background job queues on SAQ + Redis."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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


if not TYPE_CHECKING:  # type checkers see the imports above; __getattr__ would hide misspelt names

    def __getattr__(name: str) -> object:
        """Import the submodule behind a public name on first access (importing the package stays light)."""
        try:
            module = _EXPORTS[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    """The module's names, the not yet imported public ones included."""
    return sorted({*globals(), *__all__})
