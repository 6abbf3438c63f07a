"""The Redis adapter's dead-letter store: a hash of entries by key and a sorted set giving their order."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._bus import dumps
from ._dlq import DeadLetterEntry
from ._keys import dlq_events_key, dlq_index_key, dlq_key

if TYPE_CHECKING:
    from kernel_redis import AnyRedis


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def parse_dead(key: bytes | str, raw: bytes) -> DeadLetterEntry:
    """The stored dead-letter entry, or a :meth:`~DeadLetterEntry.corrupted` placeholder saying why not."""
    name = key.decode(errors="replace") if isinstance(key, bytes) else key
    try:
        return DeadLetterEntry.from_dict(json.loads(raw))
    except Exception as exc:  # anything stored there: bad UTF-8 or JSON, missing fields, wrong types
        problem = f"missing field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
    event_name = ""
    with contextlib.suppress(Exception):  # best effort, so `--event` filters still see it
        event_name = str(json.loads(raw)["metadata"]["event_name"])
    return DeadLetterEntry.corrupted(name, raw, _cut(problem, 200), event_name=event_name)


# Store an entry and make it the newest: its score is the server's time in microseconds (the DLQs of
# several streams merge by it), or one more than the newest score of this DLQ when several entries
# land in the same microsecond (so order is insertion order).
_ADD = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local t = redis.call('TIME')
local score = tonumber(t[1]) * 1000000 + tonumber(t[2])
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if top[2] and tonumber(top[2]) >= score then score = tonumber(top[2]) + 1 end
redis.call('ZADD', KEYS[2], score, ARGV[1])
return redis.call('HLEN', KEYS[1])
"""


class RedisDeadLetterStore:
    """Per event stream, entries as JSON in a hash by ``<event_id>|<subscription>``, ordered by a sorted set.

    Both live under the stream's hash tag (``{<prefix>:<event>}:dlq`` and ``...:dlq:index``), so
    dead-lettering an entry and acknowledging it is one transaction on one slot. The set
    :attr:`events_key` names the events whose DLQ may hold entries (added to before an entry is,
    never trimmed): listing, counting and clearing go through it.

    Entries that cannot be read (written by something else, or damaged) come back as corrupt
    placeholders: listed and deletable, never replayed.
    """

    def __init__(self, client: AnyRedis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.events_key = dlq_events_key(prefix)
        """The set of event names with a DLQ."""

    def key(self, event: str) -> str:
        """The hash of ``event``'s entries."""
        return dlq_key(self.prefix, event)

    def index_key(self, event: str) -> str:
        """The sorted set of ``event``'s entry keys, scored by when they were added (µs, increasing)."""
        return dlq_index_key(self.prefix, event)

    async def note_event(self, event: str) -> None:
        """Record that ``event``'s DLQ may hold entries (before one is added)."""
        await self.client.sadd(self.events_key, event)  # type: ignore[misc]

    def stage_add(self, pipe: Any, entry: DeadLetterEntry) -> None:
        """Queue the commands adding ``entry`` to ``pipe`` (call :meth:`note_event` first)."""
        event = entry.event_name
        pipe.eval(_ADD, 2, self.key(event), self.index_key(event), entry.key, dumps(entry.to_dict()))

    async def add(self, entry: DeadLetterEntry) -> int:
        """Keep ``entry`` as the newest; how many entries there are now (of every event)."""
        await self.note_event(entry.event_name)
        pipe = self.client.pipeline(transaction=True)
        self.stage_add(pipe, entry)
        await pipe.execute()
        return await self.count()

    async def events(self) -> list[str]:
        """The events whose DLQ may hold entries, sorted."""
        names = await self.client.smembers(self.events_key)  # type: ignore[misc]
        return sorted(n.decode() if isinstance(n, bytes) else str(n) for n in names)

    async def _load(self, event: str, keys: Sequence[bytes | str]) -> list[DeadLetterEntry]:
        if not keys:
            return []
        raw = await self.client.hmget(self.key(event), list(keys))  # type: ignore[misc]
        return [parse_dead(k, r) for k, r in zip(keys, raw, strict=True) if r is not None]

    async def newest(self, limit: int, event: str | None = None) -> list[DeadLetterEntry]:
        """Up to ``limit`` entries, newest first; with ``event``, only that event's (a corrupt entry
        that does not name its event is listed without ``event`` only)."""
        if event is not None:
            entries = await self._newest(limit, [event])
            return [e for e in entries if e.event_name == event]
        return await self._newest(limit, await self.events())

    async def _newest(self, limit: int, events: list[str]) -> list[DeadLetterEntry]:
        pipe = self.client.pipeline(transaction=False)  # one round trip per node
        for name in events:
            pipe.zrevrange(self.index_key(name), 0, limit - 1, withscores=True)
        ranked: list[tuple[float, int, str, bytes]] = []
        for n, (name, scored) in enumerate(zip(events, await pipe.execute(), strict=True)):
            ranked += [(float(score), -n, name, key) for key, score in scored]
        ranked.sort(reverse=True)
        chosen: dict[str, list[bytes]] = {}
        for _score, _n, name, key in ranked[:limit]:
            chosen.setdefault(name, []).append(key)
        loaded = {name: await self._load(name, keys) for name, keys in chosen.items()}
        by_key = {(name, e.key): e for name, entries in loaded.items() for e in entries}
        out = []
        for _score, _n, name, key in ranked[:limit]:
            found = by_key.get((name, key.decode(errors="replace")))
            if found is not None:
                out.append(found)
        return out

    async def count(self) -> int:
        """How many entries the hashes hold."""
        events = await self.events()
        if not events:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for name in events:
            pipe.hlen(self.key(name))
        return sum(int(n) for n in await pipe.execute())

    async def _keys_of(self, event: str, event_id: str) -> list[bytes]:
        # field names start with the event id; escape glob characters so ids cannot widen the match
        pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in event_id) + "|*"
        key = self.key(event)
        keys = [k async for k, _v in self.client.hscan_iter(key, match=pattern, count=1000)]
        if "|" not in event_id and await self.client.hexists(key, event_id):  # type: ignore[misc]
            keys.append(event_id.encode())  # a foreign field without a subscription part (corrupt)
        return keys

    async def find(self, event_id: str) -> list[DeadLetterEntry]:
        """The entries of ``event_id`` (a foreign field named just ``event_id`` too)."""
        out: list[DeadLetterEntry] = []
        for event in await self.events():
            out += await self._load(event, await self._keys_of(event, event_id))
        return out

    async def take(self, event: str, key: str) -> bool:
        """Remove one entry outright (no re-delivery); whether it was there."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.key(event), key)
        pipe.zrem(self.index_key(event), key)
        n, _ = await pipe.execute()
        return bool(n)

    async def delete(self, event_id: str) -> int:
        """Drop the entries of ``event_id`` from the hashes and the indexes; how many."""
        n = 0
        for event in await self.events():
            keys = await self._keys_of(event, event_id)
            if keys:
                pipe = self.client.pipeline(transaction=True)
                pipe.hdel(self.key(event), *keys)  # type: ignore[arg-type]
                pipe.zrem(self.index_key(event), *keys)
                n += int((await pipe.execute())[0])
        return n

    async def clear(self) -> int:
        """Delete every hash and index; how many entries there were."""
        n = 0
        for event in await self.events():
            pipe = self.client.pipeline(transaction=True)
            pipe.hlen(self.key(event))
            pipe.delete(self.key(event), self.index_key(event))
            n += int((await pipe.execute())[0])
        return n
