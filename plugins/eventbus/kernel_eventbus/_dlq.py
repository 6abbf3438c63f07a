"""The dead-letter entry (an event a subscription gave up on, why and when) and where entries are kept."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

import attrs

from ._metadata import EventMetadata


@attrs.frozen
class DeadLetterEntry:
    """One event that failed for one subscription after its retries (or at once, when non-retryable)."""

    metadata: EventMetadata
    """Metadata of the last attempt (``attempt`` is the number of deliveries made)."""
    data: Any
    subscription: str
    attempts: int
    first_failure_at: str
    last_failure_at: str
    error_type: str
    error_message: str
    traceback: str = attrs.field(default="", repr=False)
    """For operators (``kernel dlq show``); never sent back to handlers."""
    corrupt: str | None = None
    """Why the stored entry could not be read (``None`` for a sound entry).

    A corrupt entry keeps only what its storage key tells (event id and subscription) and its
    ``raw_size``; it is listed and deletable, never replayed.
    """
    raw_size: int = 0
    """Bytes the entry takes in storage (set for corrupt entries of the redis adapter)."""

    @property
    def event_id(self) -> str:
        """The failed event's id."""
        return self.metadata.event_id

    @property
    def event_name(self) -> str:
        """The failed event's name."""
        return self.metadata.event_name

    @property
    def is_corrupt(self) -> bool:
        """True when the stored entry could not be read (see :attr:`corrupt`)."""
        return self.corrupt is not None

    @property
    def key(self) -> str:
        """Unique per event and subscription (the storage key)."""
        if self.corrupt is not None and not self.subscription:
            return self.metadata.event_id  # a stored key without '|' (written by something else)
        return f"{self.metadata.event_id}|{self.subscription}"

    @property
    def error(self) -> dict[str, str]:
        """``{"type": ..., "message": ...}`` of the last failure (what handlers and operators see)."""
        return {"type": self.error_type, "message": self.error_message}

    def to_dict(self, *, traceback: bool = True) -> dict[str, Any]:
        """JSON-ready dict; ``traceback=False`` leaves the traceback out."""
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "event_name": self.event_name,
            "data": self.data,
            "metadata": self.metadata.to_dict(),
            "subscription": self.subscription,
            "attempts": self.attempts,
            "first_failure_at": self.first_failure_at,
            "last_failure_at": self.last_failure_at,
            "error": self.error,
        }
        if traceback:
            out["traceback"] = self.traceback
        if self.corrupt is not None:
            out["corrupt"] = self.corrupt
            out["raw_size"] = self.raw_size
        return out

    @classmethod
    def corrupted(
        cls, key: str, raw: bytes, problem: str, *, event_name: str = "", failed_at: str = ""
    ) -> DeadLetterEntry:
        """A placeholder for the unreadable stored entry ``key`` (``<event_id>|<subscription>``)."""
        event_id, _, subscription = key.partition("|")
        return cls(
            metadata=EventMetadata(event_id, event_name, ""),
            data=None,
            subscription=subscription,
            attempts=0,
            first_failure_at=failed_at,
            last_failure_at=failed_at,
            error_type="corrupt entry",
            error_message=problem,
            corrupt=problem,
            raw_size=len(raw),
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeadLetterEntry:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(d, dict):
            raise TypeError(f"a dead-letter entry is a JSON object, not {type(d).__name__}")
        err = d.get("error") or {}
        return cls(
            metadata=EventMetadata.from_dict(d["metadata"]),
            data=d.get("data"),
            subscription=str(d["subscription"]),
            attempts=int(d["attempts"]),
            first_failure_at=str(d["first_failure_at"]),
            last_failure_at=str(d["last_failure_at"]),
            error_type=str(err.get("type", "")),
            error_message=str(err.get("message", "")),
            traceback=str(d.get("traceback", "")),
        )


class ReplayResult(int):
    """What :meth:`EventBus.replay_all` did: it *is* the number of entries replayed (an ``int``).

    ``skipped_corrupt`` holds the keys of the corrupt entries it left in the DLQ.
    """

    skipped_corrupt: tuple[str, ...]

    def __new__(cls, replayed: int, skipped_corrupt: Sequence[str] = ()) -> ReplayResult:
        self = super().__new__(cls, replayed)
        self.skipped_corrupt = tuple(skipped_corrupt)
        return self

    @property
    def replayed(self) -> int:
        """How many entries were replayed."""
        return int(self)

    def __repr__(self) -> str:
        return f"ReplayResult(replayed={int(self)}, skipped_corrupt={len(self.skipped_corrupt)})"


class DeadLetterStore(Protocol):
    """Where a bus keeps its dead-letter entries, by :attr:`DeadLetterEntry.key`, newest last.

    The bus adds entries and re-delivers replayed ones; the store only keeps, finds and drops them.
    ``MemoryDeadLetterStore`` keeps them in the process, the Redis adapter's store per event stream
    in a hash ``{<prefix>:<event>}:dlq`` ordered by the sorted set ``{<prefix>:<event>}:dlq:index``.
    """

    async def add(self, entry: DeadLetterEntry) -> int:
        """Keep ``entry`` (replacing one with the same key) as the newest; how many entries there are now."""
        ...

    async def newest(self, limit: int, event: str | None = None) -> list[DeadLetterEntry]:
        """Up to ``limit`` (> 0) entries, newest first, optionally only of ``event`` (corrupt ones too)."""
        ...

    async def count(self) -> int:
        """How many entries the store holds."""
        ...

    async def find(self, event_id: str) -> list[DeadLetterEntry]:
        """The entries of one event (one per subscription), corrupt ones too; ``[]`` when none."""
        ...

    async def delete(self, event_id: str) -> int:
        """Drop the entries of one event; how many."""
        ...

    async def clear(self) -> int:
        """Drop every entry; how many there were."""
        ...


class MemoryDeadLetterStore:
    """Dead-letter entries in this process, at most ``max_len`` (the oldest dropped first)."""

    def __init__(self, max_len: int = 10_000) -> None:
        self.max_len = max_len
        self._entries: OrderedDict[str, DeadLetterEntry] = OrderedDict()

    async def add(self, entry: DeadLetterEntry) -> int:
        """Keep ``entry`` as the newest, dropping the oldest beyond ``max_len``."""
        self._entries[entry.key] = entry
        self._entries.move_to_end(entry.key)
        while len(self._entries) > self.max_len:
            self._entries.popitem(last=False)
        return len(self._entries)

    async def newest(self, limit: int, event: str | None = None) -> list[DeadLetterEntry]:
        """Up to ``limit`` entries, newest first (of ``event`` only, when given)."""
        out: list[DeadLetterEntry] = []
        for entry in reversed(self._entries.values()):
            if event is None or entry.event_name == event:
                out.append(entry)
                if len(out) >= limit:
                    break
        return out

    async def count(self) -> int:
        """How many entries are kept."""
        return len(self._entries)

    async def find(self, event_id: str) -> list[DeadLetterEntry]:
        """The entries of ``event_id``."""
        return [e for e in self._entries.values() if e.event_id == event_id]

    def take(self, key: str) -> bool:
        """Remove the entry ``key`` (for a replay); whether it was there."""
        return self._entries.pop(key, None) is not None

    async def delete(self, event_id: str) -> int:
        """Drop the entries of ``event_id``; how many."""
        keys = [k for k, e in self._entries.items() if e.event_id == event_id]
        for k in keys:
            del self._entries[k]
        return len(keys)

    async def clear(self) -> int:
        """Drop every entry; how many there were."""
        n = len(self._entries)
        self._entries.clear()
        return n
