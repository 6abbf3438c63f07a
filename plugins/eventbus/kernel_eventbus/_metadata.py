"""Event metadata and time-sortable event ids."""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any

import attrs

# The random part of event ids, made 64 at a time (one getrandom call and a few C-level operations
# instead of formatting per event); deque.popleft is atomic, so threads never share one; a forked child
# drops what it inherited, so processes never repeat one.
_RANDOM_BATCH = 64
_spare_tails: deque[str] = deque()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_spare_tails.clear)
# 10 random bytes per id, masked in one integer operation: version 7 in the high nibble of byte 0,
# variant 10 in the two high bits of byte 2 (12 + 14 + 48 = 74 random bits stay)
_KEEP = int.from_bytes(bytes([0x0F, 0xFF, 0x3F, *[0xFF] * 7]) * _RANDOM_BATCH, "big")
_SET = int.from_bytes(bytes([0x70, 0x00, 0x80, *[0x00] * 7]) * _RANDOM_BATCH, "big")


def _random_tails() -> list[str]:
    """``_RANDOM_BATCH`` id tails ``7xxx-yxxx-xxxxxxxxxxxx`` (y: 8, 9, a or b), the rest random."""
    size = 10 * _RANDOM_BATCH
    masked = int.from_bytes(os.urandom(size), "big") & _KEEP | _SET
    groups = iter(masked.to_bytes(size, "big").hex(" ", 2).split(" "))  # 4 hex digits each, 5 per id
    return [
        f"{a}-{b}-{c}{d}{e}" for a, b, c, d, e in zip(groups, groups, groups, groups, groups, strict=True)
    ]


_prefix: tuple[int, str] = (-1, "")


def new_event_id(ms: int | None = None) -> str:
    """A UUIDv7 string: 48-bit Unix milliseconds then 74 random bits, so ids sort by time (to the ms)."""
    global _prefix
    if ms is None:
        ms = time.time_ns() // 1_000_000
    try:
        tail = _spare_tails.popleft()
    except IndexError:
        tails = _random_tails()
        tail = tails.pop()
        _spare_tails.extend(tails)
    cached = _prefix  # one tuple, replaced whole: safe to share between threads
    if cached[0] != ms:  # events of one millisecond share the time part
        h = f"{ms:012x}"
        cached = _prefix = (ms, f"{h[:8]}-{h[8:]}-")
    return cached[1] + tail


_second: tuple[int, str] = (-1, "")
_milli: tuple[int, str] = (-1, "")


def rfc3339(ms: int) -> str:
    """UTC RFC 3339 timestamp with milliseconds (``2026-11-28T15:04:05.123Z``)."""
    global _second, _milli
    last = _milli  # events of one millisecond share the whole text
    if last[0] == ms:
        return last[1]
    sec, milli = divmod(ms, 1000)
    cached = _second  # one tuple, replaced whole: safe to share between threads
    if cached[0] != sec:  # formatting is the slow part; events of one second share it
        cached = _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    text = f"{cached[1]}.{milli:03d}Z"
    _milli = (ms, text)
    return text


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
    traceparent: str | None = None
    """W3C ``traceparent`` of the span that published the event (set by a tracing observer, e.g. the
    otel plugin); a consumer's span continues or links that trace. ``None`` without tracing."""
    tracestate: str | None = None
    """W3C ``tracestate`` that travels with :attr:`traceparent` (vendor trace state of the publishing
    span's context); ``None`` when there is none (always without tracing)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (keys are the attribute names; ``traceparent`` and ``tracestate`` only
        when set)."""
        return {
            "event_id": self.event_id,
            "event_name": self.event_name,
            "timestamp": self.timestamp,
            "source": self.source,
            "trace_id": self.trace_id,
            "attempt": self.attempt,
            "replayed_at": self.replayed_at,
            **({"traceparent": self.traceparent} if self.traceparent is not None else {}),
            **({"tracestate": self.tracestate} if self.tracestate is not None else {}),
        }

    def with_trace_context(self, traceparent: str, tracestate: str | None = None) -> EventMetadata:
        """A copy with ``traceparent`` and ``tracestate`` set (what a tracing observer stores); the same
        as ``attrs.evolve(self, traceparent=..., tracestate=...)``, in a few stores (those of
        :func:`make_metadata`, without its call: a traced publish makes one)."""
        meta: Any = _new(_Unfrozen)
        meta.event_id = self.event_id
        meta.event_name = self.event_name
        meta.timestamp = self.timestamp
        meta.source = self.source
        meta.trace_id = self.trace_id
        meta.attempt = self.attempt
        meta.replayed_at = self.replayed_at
        meta.traceparent = traceparent
        meta.tracestate = tracestate
        meta.__class__ = EventMetadata
        result: EventMetadata = meta
        return result

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
            traceparent=data.get("traceparent"),
            tracestate=data.get("tracestate"),
        )


class _Unfrozen(EventMetadata):
    """An :class:`EventMetadata` under construction in :func:`make_metadata`; never seen outside it.

    No slots of its own and object's attribute setting: stores to its (inherited) slots are plain,
    specialised attribute stores, and its layout is EventMetadata's, so CPython lets an instance
    become an EventMetadata by ``__class__`` assignment.
    """

    __slots__ = ()
    __setattr__ = object.__setattr__
    __delattr__ = object.__delattr__  # both: else stores still go through a Python-level lookup


_new = object.__new__


def make_metadata(
    event_id: str,
    event_name: str,
    timestamp: str,
    source: str | None = None,
    trace_id: str | None = None,
    attempt: int = 1,
    replayed_at: str | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> EventMetadata:
    """``EventMetadata(...)`` for the hot paths (every published and every consumed event).

    The same frozen object, equal to the constructor's, for about a third of the instructions:
    attrs' ``__init__`` of a frozen class stores each field through ``object.__setattr__`` (~10k
    instructions for the nine), here plain stores into an :class:`_Unfrozen` that then becomes an
    EventMetadata (~3k). Sets every field (tests/test_basics.py checks it against ``attrs.fields``).
    """
    meta: Any = _new(_Unfrozen)  # Any: mypy sees EventMetadata's fields as read-only
    meta.event_id = event_id
    meta.event_name = event_name
    meta.timestamp = timestamp
    meta.source = source
    meta.trace_id = trace_id
    meta.attempt = attempt
    meta.replayed_at = replayed_at
    meta.traceparent = traceparent
    meta.tracestate = tracestate
    meta.__class__ = EventMetadata  # from here on frozen: EventMetadata's __setattr__ raises
    result: EventMetadata = meta
    return result
