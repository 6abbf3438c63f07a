"""The outage circuit one cache backend's namespaces share: fail open (or closed), back off, log sparingly."""

from __future__ import annotations

import enum
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Literal, Protocol, TypeVar, TypeVarTuple, cast

from ._backends import TTL, CacheBackend
from ._errors import CacheUnavailableError
from ._stats import Counters

R = TypeVar("R")
Ts = TypeVarTuple("Ts")


class _Down(enum.Enum):
    DOWN = "down"


DOWN: Final = _Down.DOWN
"""What :meth:`Circuit.call` returns instead of a result when the backend is (or just went) down."""


class _GuardedBackend(Protocol):
    """The backend operations a namespace calls through its :class:`Circuit`; each may return :data:`DOWN`."""

    def get(self, key: str) -> Awaitable[bytes | _Down | None]: ...
    def get_many(self, keys: Sequence[str]) -> Awaitable[list[bytes | None] | _Down]: ...
    def exists(self, key: str) -> Awaitable[bool | _Down]: ...
    def ttl(self, key: str) -> Awaitable[float | _Down | None]: ...
    def set(self, key: str, value: bytes, ttl: TTL) -> Awaitable[_Down | None]: ...
    def set_many(self, items: Sequence[tuple[str, bytes, TTL]]) -> Awaitable[_Down | None]: ...
    def delete(self, key: str) -> Awaitable[bool | _Down]: ...
    def delete_matching(self, pattern: str) -> Awaitable[int | _Down]: ...
    def count_matching(self, pattern: str) -> Awaitable[int | _Down]: ...
    def acquire(self, key: str, token: str, ttl: float) -> Awaitable[bool | _Down]: ...


# The guarded methods, and the operation each is named in outage logs and errors.
_OPERATIONS = (
    ("get", "get"),
    ("get_many", "get_many"),
    ("exists", "has"),
    ("ttl", "ttl"),
    ("set", "set"),
    ("set_many", "set_many"),
    ("delete", "delete"),
    ("delete_matching", "invalidate"),
    ("count_matching", "count_matching"),
    ("acquire", "lock"),
)


class _Guarded:
    """Holds the guarded methods :meth:`Circuit.guard` binds (see :class:`_GuardedBackend`)."""


class Circuit:
    """Guards every backend call of a cache against outages.

    An error in ``errors`` (the backend's ``outage_errors``) counts as an error of the calling
    namespace, opens the circuit for ``backoff`` seconds (calls then skip the backend and return
    at once, also counted) and is logged at most once per ``log_interval``, with the number of
    errors since the last line. With ``fail_open`` false each of them raises
    :class:`CacheUnavailableError` instead.
    """

    def __init__(
        self,
        backend_name: str,
        errors: tuple[type[BaseException], ...],
        logger: logging.Logger,
        *,
        fail_open: bool,
        backoff: float,
        log_interval: float,
    ) -> None:
        self.backend_name = backend_name
        self.errors = errors
        self.log = logger
        self.fail_open = fail_open
        self.backoff = backoff
        self.log_interval = log_interval
        self.down_until = 0.0
        self._guards: dict[str, _GuardedBackend] = {}
        self._last_log = -float("inf")
        self._suppressed = 0

    def guard(self, backend: CacheBackend, counters: Counters, *, shared: bool = True) -> _GuardedBackend:
        """``backend``'s operations as the namespace of ``counters`` calls them: through :meth:`call`.

        A backend that cannot fail (no ``outage_errors``: memory) is returned as is. ``shared``: one
        guard per namespace, made once (the cache's own backend); else a new one for ``backend``.
        """
        if not backend.outage_errors:
            return backend
        found = self._guards.get(counters.namespace) if shared else None
        if found is None:  # made once per namespace: CacheManager.namespace() stays cheap
            guarded = _Guarded()
            for method, operation in _OPERATIONS:
                bound = functools.partial(self.call, operation, counters, getattr(backend, method))
                setattr(guarded, method, bound)
            found = cast(_GuardedBackend, guarded)
            if shared:
                self._guards[counters.namespace] = found
        return found

    async def call(
        self, operation: str, counters: Counters, fn: Callable[[*Ts], Awaitable[R]], *args: *Ts
    ) -> R | Literal[_Down.DOWN]:
        """``await fn(*args)``, or :data:`DOWN` when the circuit is open or the call hits an outage."""
        if self.down_until and self.skipping(counters):
            return DOWN
        try:
            return await fn(*args)
        except self.errors as exc:
            self.trip(operation, exc, counters)
            return DOWN

    def skipping(self, counters: Counters) -> bool:
        """True while the circuit is open after an outage: fail fast without touching the backend."""
        if time.monotonic() < self.down_until:
            counters.errors.add()
            if not self.fail_open:
                raise CacheUnavailableError("a cache operation", ConnectionError("backend marked down"))
            return True
        self.down_until = 0.0
        return False

    def trip(self, operation: str, exc: BaseException, counters: Counters) -> None:
        """Record an outage error of ``operation``: count it, open the circuit, log (rate-limited)."""
        counters.errors.add()
        now = time.monotonic()
        if self.backoff:
            self.down_until = now + self.backoff
        if now - self._last_log >= self.log_interval:
            extra = f" ({self._suppressed} more errors since the last report)" if self._suppressed else ""
            self.log.warning(
                "cache backend %s unavailable during %s on namespace %r: %s: %s%s; %s",
                self.backend_name,
                operation,
                counters.namespace,
                type(exc).__name__,
                exc,
                extra,
                "failing open" if self.fail_open else "raising",
                extra={"namespace": counters.namespace, "operation": operation},
            )
            self._last_log = now
            self._suppressed = 0
        else:
            self._suppressed += 1
        if not self.fail_open:
            raise CacheUnavailableError(operation, exc) from exc
