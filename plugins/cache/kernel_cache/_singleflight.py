"""Single flight: concurrent misses of one key in this process share one load."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Final, Generic, TypeVar

import anyio

T = TypeVar("T")


class _Missing(enum.Enum):
    MISSING = "missing"


MISSING: Final = _Missing.MISSING
"""What a lookup returns for "not cached"; distinct from a cached ``None``."""


class _Flight(Generic[T]):
    """One load in progress; ``done`` is set when it returned, raised or was cancelled."""

    __slots__ = ("cancelled", "done", "error", "value")
    value: T  # set when the load returned

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: BaseException | None = None
        self.cancelled = False


class SingleFlight(Generic[T]):
    """Runs at most one load per key at a time; callers arriving meanwhile share its outcome."""

    def __init__(self) -> None:
        self._flights: dict[str, _Flight[T]] = {}

    async def after_miss(
        self, key: str, load: Callable[[], Awaitable[T]], lookup: Callable[[], Awaitable[T | _Missing]]
    ) -> T:
        """After ``key`` missed: the value of the one ``load()`` running for it (this call's, or another's).

        Every caller waiting on a load gets its value or its exception. If the loading task is
        cancelled, its waiters ``lookup()`` again (and one of them loads) instead of failing.
        """
        while True:
            flight = self._flights.get(key)
            if flight is None:
                return await self._lead(key, load)
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            if not flight.cancelled:
                return flight.value
            value = await lookup()
            if value is not MISSING:
                return value

    async def _lead(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        flight: _Flight[T] = _Flight()
        self._flights[key] = flight
        try:
            flight.value = value = await load()
        except anyio.get_cancelled_exc_class():
            flight.cancelled = True
            raise
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            flight.done.set()
            if self._flights.get(key) is flight:
                del self._flights[key]
        return value
