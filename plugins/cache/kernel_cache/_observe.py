"""The cache's instrumentation seam: what an observer (tracing) is told around each backend call.

No observer by default: a namespace then calls its backend exactly as before (nothing is
wrapped, no attribute is tested on the hot path). :meth:`CacheManager.set_observer` gives every
namespace view of the cache an :class:`ObservedBackend` instead, and takes it away again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from ._backends import TTL, CacheBackend

R = TypeVar("R")

CallEnded = Callable[[BaseException | None, int | None], None]
"""Called once a backend call ended: the exception it raised (``None``: it returned) and, for
reads, how many of the keys asked for were found (``None`` for other operations)."""


class CacheObserver(Protocol):
    """Told about every backend call of a cache's namespaces (see :meth:`CacheManager.set_observer`)."""

    def operation(self, name: str, namespace: str, backend: str, keys: int) -> CallEnded:
        """Backend call ``name`` (``get``, ``get_many``, ``set``, ``set_many``, ``delete``, ``exists``,
        ``ttl``, ``incr``, ``delete_matching``, ``count_matching``, ``acquire``, ``release``) of
        ``namespace`` on the backend named ``backend`` (``"redis"``, ``"memory"``) over ``keys`` keys
        (0 for a pattern) starts; the callback is called once it ended. No key or value is passed:
        keys carry user ids and e-mail addresses."""
        ...


def _found(value: object) -> int:
    return 0 if value is None else 1


class ObservedBackend:
    """A :class:`CacheBackend` telling ``observer`` about each call of ``inner`` made for ``namespace``.

    Errors propagate unchanged (the namespace's outage circuit still sees them).
    """

    def __init__(self, inner: CacheBackend, observer: CacheObserver, namespace: str) -> None:
        self.inner = inner
        self.name = inner.name
        self.outage_errors = inner.outage_errors
        self._observer = observer
        self._namespace = namespace

    async def _call(
        self, name: str, keys: int, call: Awaitable[R], hits: Callable[[R], int] | None = None
    ) -> R:
        ended = self._observer.operation(name, self._namespace, self.name, keys)
        try:
            result = await call
        except BaseException as exc:
            ended(exc, None)
            raise
        ended(None, None if hits is None else hits(result))
        return result

    def get(self, key: str) -> Awaitable[bytes | None]:
        """The inner ``get``, observed (hits: 1 when found)."""
        return self._call("get", 1, self.inner.get(key), _found)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The inner ``get_many``, observed (hits: the values found)."""
        return await self._call(
            "get_many", len(keys), self.inner.get_many(keys), lambda found: len(found) - found.count(None)
        )

    async def set(self, key: str, value: bytes, ttl: TTL) -> None:
        """The inner ``set``, observed."""
        await self._call("set", 1, self.inner.set(key, value, ttl))

    async def set_many(self, items: Sequence[tuple[str, bytes, TTL]]) -> None:
        """The inner ``set_many``, observed."""
        await self._call("set_many", len(items), self.inner.set_many(items))

    async def delete(self, key: str) -> bool:
        """The inner ``delete``, observed."""
        return await self._call("delete", 1, self.inner.delete(key))

    async def exists(self, key: str) -> bool:
        """The inner ``exists``, observed (hits: 1 when it exists)."""
        return await self._call("exists", 1, self.inner.exists(key), int)

    async def incr(self, key: str, amount: int, ttl: TTL) -> int:
        """The inner ``incr``, observed."""
        return await self._call("incr", 1, self.inner.incr(key, amount, ttl))

    async def delete_matching(self, pattern: str) -> int:
        """The inner ``delete_matching``, observed."""
        return await self._call("delete_matching", 0, self.inner.delete_matching(pattern))

    async def count_matching(self, pattern: str) -> int:
        """The inner ``count_matching``, observed."""
        return await self._call("count_matching", 0, self.inner.count_matching(pattern))

    async def ttl(self, key: str) -> float | None:
        """The inner ``ttl``, observed (hits: 1 when the key exists)."""
        return await self._call("ttl", 1, self.inner.ttl(key), _found)

    async def acquire(self, key: str, token: str, ttl: float) -> bool:
        """The inner ``acquire``, observed."""
        return await self._call("acquire", 1, self.inner.acquire(key, token, ttl))

    async def release(self, key: str, token: str) -> bool:
        """The inner ``release``, observed."""
        return await self._call("release", 1, self.inner.release(key, token))

    async def close(self) -> None:
        """Closes the inner backend (not observed)."""
        await self.inner.close()

    def __getattr__(self, name: str) -> object:
        """Anything else of the inner backend (``client``, ``cluster``...) as is."""
        return getattr(self.inner, name)
