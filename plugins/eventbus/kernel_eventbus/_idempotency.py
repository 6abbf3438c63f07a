"""Handler-side dedupe by event id: "check the mark, process, set the mark" as one wrapper."""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._metadata import EventMetadata

log = logging.getLogger("kernel.plugins.eventbus")


class IdempotencyStore(Protocol):
    """Remembers keys of handled events for a while."""

    async def seen(self, key: str) -> bool:
        """True when ``key`` was marked and has not expired."""
        ...

    async def mark(self, key: str, ttl: int) -> None:
        """Remember ``key`` for ``ttl`` seconds."""
        ...


class MemoryIdempotencyStore:
    """In-process store, bounded to ``max_keys`` (oldest forgotten first)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._keys: OrderedDict[str, float] = OrderedDict()

    async def seen(self, key: str) -> bool:
        """True when ``key`` was marked and has not expired (an expired mark is forgotten)."""
        expires = self._keys.get(key)
        if expires is None:
            return False
        if expires < time.monotonic():
            del self._keys[key]
            return False
        return True

    async def mark(self, key: str, ttl: int) -> None:
        """Remember ``key`` for ``ttl`` seconds, forgetting the oldest beyond ``max_keys``."""
        self._keys[key] = time.monotonic() + ttl
        self._keys.move_to_end(key)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)


class RedisIdempotencyStore:
    """Keys in Redis (``SET key 1 EX ttl``), shared by every process of the subscription."""

    def __init__(self, client: Any, prefix: str = "eventbus:done:") -> None:
        self.client = client
        self.prefix = prefix

    async def seen(self, key: str) -> bool:
        """True when ``<prefix><key>`` exists (Redis expires it)."""
        return bool(await self.client.exists(self.prefix + key))

    async def mark(self, key: str, ttl: int) -> None:
        """Set ``<prefix><key>`` with an expiry of ``ttl`` seconds."""
        await self.client.set(self.prefix + key, b"1", ex=ttl)


def idempotent(
    handler: Callable[[Any, EventMetadata], Awaitable[object]],
    *,
    store: IdempotencyStore,
    key: str | None = None,
    ttl: int = 86_400,
) -> Callable[[Any, EventMetadata], Awaitable[None]]:
    """Wrap ``handler`` so an event it already handled successfully is skipped.

    The key is ``<key>:<event_id>`` with ``key`` defaulting to the handler's
    ``module.qualname``, so two handlers of one event dedupe separately. The mark
    is written after the handler returns: a crash between the side effect and
    the mark still repeats the side effect (at-least-once); make the side effect
    and the mark one transaction when that matters.
    """
    scope = key or f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', repr(handler))}"

    @functools.wraps(handler)
    async def wrapper(data: Any, metadata: EventMetadata) -> None:
        k = f"{scope}:{metadata.event_id}"
        if await store.seen(k):
            log.info(
                "eventbus: skipping %s %s, already handled",
                metadata.event_name,
                metadata.event_id,
                extra={"event_id": metadata.event_id, "idempotency_key": k},
            )
            return
        result = handler(data, metadata)
        if inspect.isawaitable(result):
            await result
        await store.mark(k, ttl)

    return wrapper
