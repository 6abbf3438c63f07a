"""Publish deadlines on asyncio: one shared timer per timeout value instead of a timer per call.

The Redis adapter runs on asyncio only (redis-py's asyncio client), so it uses asyncio directly
here. ``anyio.move_on_after`` costs a cancel scope, a timer handle (``loop.call_at``, a heap push
and a context copy) and its cancellation per publish: most of what the adapter added to an
``XADD``. Publishes with the same timeout get deadlines in the order they start, so one queue
and one timer serve them all: a publish appends ``[deadline, task]`` and marks it done when it
ends; the timer fires at the oldest deadline still pending, cancels the tasks whose deadline has
passed and re-arms itself for the next. Same guarantee as a timer per call: a publish never runs
past its deadline (by more than the event loop's own lag).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

_EXPIRED: Any = object()
"""Put in an entry's task slot when its deadline passed and its task was cancelled."""

MAX_QUEUES = 8
"""Distinct timeout values that get a shared queue; past that a publish uses ``asyncio.timeout``."""


class DeadlineQueue:
    """In-flight publishes of one event loop and one timeout (seconds), oldest first, and one timer."""

    __slots__ = ("_queue", "_timer", "loop", "timeout")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self._queue: deque[list[Any]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def arm(self, task: asyncio.Task[Any]) -> list[Any]:
        """Cancel ``task`` once ``timeout`` seconds have passed, unless :meth:`disarm` came first."""
        when = self.loop.time() + self.timeout
        entry = [when, task]
        self._queue.append(entry)
        if self._timer is None:  # else the timer fires at an earlier deadline, then re-arms for this one
            self._timer = self.loop.call_at(when, self._expire)
        return entry

    def disarm(self, entry: list[Any]) -> bool:
        """The publish of ``entry`` ended; False if its deadline passed first (its task was cancelled)."""
        if entry[1] is _EXPIRED:
            return False
        entry[1] = None
        queue = self._queue
        while queue and queue[0][1] is None:  # publishes mostly end in order: the queue stays short
            queue.popleft()
        return True

    def _expire(self) -> None:
        """The timer: cancel every publish past its deadline; re-arm for the oldest still running."""
        self._timer = None
        queue, now = self._queue, self.loop.time()
        while queue:
            entry = queue[0]
            task = entry[1]
            if task is not None:
                if entry[0] > now:
                    self._timer = self.loop.call_at(entry[0], self._expire)
                    return
                entry[1] = _EXPIRED
                task.cancel()
            queue.popleft()

    def __len__(self) -> int:
        return len(self._queue)
