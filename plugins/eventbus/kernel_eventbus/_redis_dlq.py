"""The Redis adapter's dead-letter store: a hash of entries by key and a sorted set giving their order."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from ._bus import dumps
from ._dlq import DeadLetterEntry


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


# Store an entry and make it the newest: its score is the server's time in ms, or one more than the
# newest score when several entries land in the same millisecond (so order is insertion order).
_ADD = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local t = redis.call('TIME')
local score = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if top[2] and tonumber(top[2]) >= score then score = tonumber(top[2]) + 1 end
redis.call('ZADD', KEYS[2], score, ARGV[1])
return redis.call('HLEN', KEYS[1])
"""


class RedisDeadLetterStore:
    """Entries as JSON in the hash :attr:`key` by ``<event_id>|<subscription>``, ordered by :attr:`index_key`.

    Entries that cannot be read (written by something else, or damaged) come back as corrupt
    placeholders: listed and deletable, never replayed.
    """

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.key = f"{prefix}:dlq"
        """The hash of entries."""
        self.index_key = f"{prefix}:dlq:index"
        """The sorted set of entry keys, scored by when they were added (ms, strictly increasing)."""

    def stage_add(self, pipe: Any, entry: DeadLetterEntry) -> None:
        """Queue the commands adding ``entry`` to ``pipe``; the last reply is the count of entries."""
        pipe.eval(_ADD, 2, self.key, self.index_key, entry.key, dumps(entry.to_dict()))

    async def add(self, entry: DeadLetterEntry) -> int:
        """Keep ``entry`` as the newest; how many entries there are now."""
        pipe = self.client.pipeline(transaction=True)
        self.stage_add(pipe, entry)
        return int((await pipe.execute())[-1])

    async def _load(self, keys: Sequence[bytes | str]) -> list[DeadLetterEntry]:
        if not keys:
            return []
        raw = await self.client.hmget(self.key, list(keys))  # type: ignore[misc]
        return [parse_dead(k, r) for k, r in zip(keys, raw, strict=True) if r is not None]

    async def newest(self, limit: int, event: str | None = None) -> list[DeadLetterEntry]:
        """Up to ``limit`` entries, newest first; with ``event``, 500 keys at a time till enough match."""
        if event is None:
            return await self._load(await self.client.zrevrange(self.index_key, 0, limit - 1))
        out: list[DeadLetterEntry] = []
        start = 0
        while len(out) < limit:
            keys = await self.client.zrevrange(self.index_key, start, start + 499)
            if not keys:
                break
            out += [e for e in await self._load(keys) if e.event_name == event]
            start += 500
        return out[:limit]

    async def count(self) -> int:
        """How many entries the hash holds."""
        return int(await self.client.hlen(self.key))  # type: ignore[misc]

    async def _keys_of(self, event_id: str) -> list[bytes]:
        # field names start with the event id; escape glob characters so ids cannot widen the match
        pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in event_id) + "|*"
        keys = [k async for k, _v in self.client.hscan_iter(self.key, match=pattern, count=1000)]
        if "|" not in event_id and await self.client.hexists(self.key, event_id):  # type: ignore[misc]
            keys.append(event_id.encode())  # a foreign field without a subscription part (corrupt)
        return keys

    async def find(self, event_id: str) -> list[DeadLetterEntry]:
        """The entries of ``event_id`` (a foreign field named just ``event_id`` too)."""
        return await self._load(await self._keys_of(event_id))

    async def delete(self, event_id: str) -> int:
        """Drop the entries of ``event_id`` from the hash and the index; how many."""
        keys = await self._keys_of(event_id)
        if not keys:
            return 0
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.key, *keys)  # type: ignore[arg-type]
        pipe.zrem(self.index_key, *keys)
        n, _ = await pipe.execute()
        return int(n)

    async def clear(self) -> int:
        """Delete the hash and the index; how many entries there were."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hlen(self.key)
        pipe.delete(self.key, self.index_key)
        n, _ = await pipe.execute()
        return int(n)
