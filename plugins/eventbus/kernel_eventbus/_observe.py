"""The bus's instrumentation seam: what an observer (tracing) is told around publish and each handler attempt.

A bus has no observer by default; then publishing costs one attribute test and handler runs
nothing at all (:meth:`EventBus.set_observer` swaps the handler-run method only when one is set).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._bus import Subscription
    from ._metadata import EventMetadata


class HandlerAttempt(Protocol):
    """One handler attempt as its observer sees it."""

    def failed(self, error: BaseException, retry: bool) -> None:
        """The handler raised ``error``; ``retry`` tells whether the bus retries it (else dead-letters it)."""


class EventBusObserver(Protocol):
    """Told about every publish and every handler attempt of a bus (see :meth:`EventBus.set_observer`)."""

    def publishing(self, meta: EventMetadata) -> tuple[EventMetadata, Callable[[BaseException | None], None]]:
        """Before an event is stored: the metadata to store instead (e.g. with ``traceparent`` set)
        and a callback the bus calls once storing ended (with the error if it failed)."""

    def handling(
        self, subscription: Subscription, meta: EventMetadata
    ) -> AbstractContextManager[HandlerAttempt]:
        """Entered around one handler attempt (the handler runs inside it, in the same task)."""
