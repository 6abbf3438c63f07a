"""Event metadata and time-sortable event ids."""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any

import attrs

# random parts drawn 64 at a time as hex (one getrandom call instead of one per event); deque.popleft is
# atomic, so threads never share one; a forked child drops what it inherited, so processes never repeat one
_RANDOM_BATCH = 64
_spare_random: deque[str] = deque()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_spare_random.clear)
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
"""A random hex digit -> the variant digit ``10xx``: its two low bits stay random."""


def _random_hex() -> str:
    """19 random hex digits (76 bits, of which an event id uses 74)."""
    try:
        return _spare_random.popleft()
    except IndexError:
        pool = os.urandom(10 * _RANDOM_BATCH).hex()
        _spare_random.extend([pool[i : i + 19] for i in range(20, len(pool), 20)])
        return pool[:19]


def new_event_id(ms: int | None = None) -> str:
    """A UUIDv7 string: 48-bit Unix milliseconds then 74 random bits, so ids sort by time (to the ms)."""
    if ms is None:
        ms = time.time_ns() // 1_000_000
    try:
        r = _spare_random.popleft()
    except IndexError:
        r = _random_hex()
    h = f"{ms:012x}"
    # version 7, 12 random bits, variant 10 + 62 random bits
    return f"{h[:8]}-{h[8:]}-7{r[:3]}-{_VARIANT[r[3]]}{r[4:7]}-{r[7:]}"


_second: tuple[int, str] = (-1, "")


def rfc3339(ms: int) -> str:
    """UTC RFC 3339 timestamp with milliseconds (``2026-11-28T15:04:05.123Z``)."""
    sec, milli = divmod(ms, 1000)
    global _second
    cached = _second  # one tuple, replaced whole: safe to share between threads
    if cached[0] != sec:  # formatting is the slow part; events of one second share it
        cached = _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return f"{cached[1]}.{milli:03d}Z"


def now_rfc3339() -> str:
    """The current time as :func:`rfc3339`."""
    return rfc3339(time.time_ns() // 1_000_000)


@attrs.frozen(slots=True)
class EventMetadata:
    """What a handler gets next to the data: identity, origin, trace and delivery attempt."""

    event_id: str
    event_name: str
    timestamp: str
    """When the event was published, or the ``occurred_at`` given to ``publish`` (UTC, RFC 3339)."""
    source: str | None = None
    trace_id: str | None = None
    attempt: int = 1
    """1 for the first delivery to a subscription, 2 for the first retry, ..."""
    replayed_at: str | None = None
    """Set when the event was re-delivered from the dead-letter queue."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (keys are the attribute names)."""
        return {
            "event_id": self.event_id,
            "event_name": self.event_name,
            "timestamp": self.timestamp,
            "source": self.source,
            "trace_id": self.trace_id,
            "attempt": self.attempt,
            "replayed_at": self.replayed_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EventMetadata:
        """Inverse of :meth:`to_dict`."""
        return cls(
            event_id=str(data["event_id"]),
            event_name=str(data["event_name"]),
            timestamp=str(data["timestamp"]),
            source=data.get("source"),
            trace_id=data.get("trace_id"),
            attempt=int(data.get("attempt", 1)),
            replayed_at=data.get("replayed_at"),
        )
