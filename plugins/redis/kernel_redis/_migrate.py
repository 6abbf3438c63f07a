"""``kernel redis migrate-keys``: find the keys of the registered old layouts and rename them.

:func:`migrate_keys` SCANs every primary for each layout's ``legacy_patterns()``, asks
``new_name(key)`` for each key found, and (with ``apply=True``) renames: ``RENAMENX`` where both
names share a slot (always on one server), else ``DUMP`` + ``RESTORE`` (with the TTL) + ``DEL``.
An existing target is never overwritten (counted as a conflict).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import attrs
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from ._clients import AnyRedis
from ._layouts import KeyLayouts
from ._url import key_slot

SCAN_COUNT = 1000
Outcome = Literal["planned", "renamed", "conflict", "gone"]


@attrs.frozen
class KeyMove:
    """One key of an old layout: where it goes, and (after ``apply``) what happened."""

    owner: str
    old: str
    new: str
    outcome: Outcome = "planned"


@attrs.frozen
class MigrationReport:
    """What :func:`migrate_keys` found (and did)."""

    applied: bool
    moves: tuple[KeyMove, ...]
    owners: tuple[str, ...]
    """The layouts consulted."""

    def count(self, outcome: Outcome | None = None, owner: str | None = None) -> int:
        """How many moves had ``outcome`` (any: ``None``), of ``owner`` (any: ``None``)."""
        return sum(
            1
            for m in self.moves
            if (outcome is None or m.outcome == outcome) and (owner is None or m.owner == owner)
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return attrs.asdict(self)


async def _scan(client: AnyRedis, pattern: str) -> AsyncIterator[str]:
    """Every key matching ``pattern``: on a cluster, SCAN on every primary."""
    if isinstance(client, RedisCluster):
        await client.initialize()
        for node in client.get_primaries():
            cursor = 0
            while True:
                reply = await client.execute_command(
                    "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT, target_nodes=node
                )
                cursor, keys = _scan_reply(reply)
                for key in keys:
                    yield _text(key)
                if cursor == 0:
                    break
        return
    async for key in client.scan_iter(match=pattern, count=SCAN_COUNT):
        yield _text(key)


def _scan_reply(reply: Any) -> tuple[int, list[Any]]:
    """``SCAN``'s reply as (cursor, keys), whether a callback parsed it or not."""
    if isinstance(reply, dict):  # a cluster callback keyed by node
        reply = next(iter(reply.values()))
    cursor, keys = reply
    if isinstance(cursor, dict):  # redis-py's cluster SCAN: ({node: cursor}, keys)
        cursor = next(iter(cursor.values()))
    return int(cursor), list(keys)


def _text(key: str | bytes) -> str:
    return key.decode("utf-8", errors="surrogateescape") if isinstance(key, bytes) else key


def _raw(key: str) -> bytes:
    return key.encode("utf-8", errors="surrogateescape")


async def plan_moves(client: AnyRedis, layouts: KeyLayouts) -> list[KeyMove]:
    """Every key of every layout's legacy patterns that ``new_name`` renames (each key once)."""
    moves: list[KeyMove] = []
    seen: set[str] = set()
    for layout in layouts:
        for pattern in layout.legacy_patterns():
            async for key in _scan(client, pattern):
                if key in seen:
                    continue
                seen.add(key)
                new = layout.new_name(key)
                if new is not None and new != key:
                    moves.append(KeyMove(layout.owner, key, new))
    return moves


async def _move(client: AnyRedis, move: KeyMove) -> Outcome:
    """Rename one key without overwriting: RENAMENX on one slot, else DUMP/RESTORE/DEL."""
    old, new = _raw(move.old), _raw(move.new)
    if not isinstance(client, RedisCluster) or key_slot(old) == key_slot(new):
        try:
            renamed = await client.renamenx(old, new)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return "gone"
            raise
        return "renamed" if renamed else "conflict"
    payload = await client.dump(old)
    if payload is None:
        return "gone"
    ttl = int(await client.pttl(old))
    if ttl == -2:
        return "gone"
    try:
        await client.restore(new, max(ttl, 0), payload)
    except ResponseError as exc:
        if "busykey" in str(exc).lower():
            return "conflict"
        raise
    await client.delete(old)
    return "renamed"


async def migrate_keys(
    client: AnyRedis,
    layouts: KeyLayouts,
    *,
    apply: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> MigrationReport:
    """Find every key of the registered old layouts; with ``apply``, rename each to its new name.

    Dry run by default. A target name that exists already is left alone (``conflict``); a key
    that vanished meanwhile is ``gone``.
    """
    moves = await plan_moves(client, layouts)
    if apply:
        done: list[KeyMove] = []
        for i, move in enumerate(moves, 1):
            done.append(attrs.evolve(move, outcome=await _move(client, move)))
            if progress is not None:
                progress(i, len(moves))
        moves = done
    return MigrationReport(applied=apply, moves=tuple(moves), owners=tuple(layouts.owners))
