"""Which function processes which job: ``(queue, name) -> processor``."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from ._errors import InvalidJobOptionError
from ._observe import QueueObserver

Processor = Callable[[Any], Awaitable[Any]]

ANY_NAME = "*"
"""Register under this name to process every job of a queue that has no specific processor."""


class ProcessorRegistry:
    """Processors by queue and job name; a ``"*"`` processor catches the names nobody claimed."""

    observer: QueueObserver | None = None
    """Told about every job built and every processor attempt (tracing); set through
    :meth:`QueueManager.set_observer`. Kept here: the manager and its workers share this registry."""

    def __init__(self) -> None:
        self._by_queue: dict[str, dict[str, Processor]] = {}

    def register(self, queue: str, name: str, fn: Processor, *, replace: bool = False) -> None:
        """``fn`` (async) processes jobs ``name`` of ``queue``; another one for them needs ``replace``."""
        if not callable(fn):
            raise InvalidJobOptionError(f"processor for {queue!r}/{name!r} must be callable, got {fn!r}")
        if not (inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)):
            raise InvalidJobOptionError(
                f"processor for {queue!r}/{name!r} must be an async function (got {fn!r}); "
                "run blocking work with anyio.to_thread.run_sync inside it"
            )
        names = self._by_queue.setdefault(queue, {})
        if name in names and names[name] is not fn and not replace:
            raise InvalidJobOptionError(
                f"queue {queue!r} already has a processor for {name!r}: {names[name]!r} "
                "(pass replace=True to swap it)"
            )
        names[name] = fn

    def unregister(self, queue: str, name: str) -> None:
        """Forget the processor of ``name`` on ``queue`` (if any)."""
        self._by_queue.get(queue, {}).pop(name, None)

    def resolve(self, queue: str, name: str) -> Processor | None:
        """The processor of ``name`` on ``queue``, else its ``"*"`` processor, else None."""
        names = self._by_queue.get(queue)
        if not names:
            return None
        return names.get(name) or names.get(ANY_NAME)

    def names(self, queue: str) -> list[str]:
        """The job names with a processor on ``queue`` (``"*"`` included), sorted."""
        return sorted(self._by_queue.get(queue, {}))

    def queues(self) -> list[str]:
        """Queues with at least one processor, in registration order."""
        return [q for q, names in self._by_queue.items() if names]
