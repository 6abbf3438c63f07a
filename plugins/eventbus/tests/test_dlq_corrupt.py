"""Corrupt dead-letter entries: listed as corrupt, skipped by replay, deletable; the rest works.

The entries are written straight into the redis adapter's DLQ hash and index, as a foreign writer,
a partial restore or a bug would leave them.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
from kernel_eventbus import EventBus, EventMetadata
from kernel_eventbus._keys import retry_key
from kernel_eventbus._redis import RedisEventBus
from kernel_eventbus._redis_dlq import RedisDeadLetterStore
from kernel_redis import AnyRedis

pytestmark = pytest.mark.anyio

# key -> stored bytes: not JSON, bad UTF-8, JSON but not an object, an object without its fields
CORRUPT: dict[str, bytes] = {
    "bad-json|orders": b"{not json",
    "bad-utf8|orders": b'{"x": "\xff\xfe"}',
    "a-list|orders": b"[1, 2, 3]",
    "no-fields|orders": json.dumps({"metadata": {"event_id": "no-fields"}}).encode(),
}


async def _corrupt(client: AnyRedis, prefix: str) -> None:
    now = time.time() * 1000
    store = RedisDeadLetterStore(client, prefix)
    await store.note_event("order.created")
    for n, (key, raw) in enumerate(CORRUPT.items()):
        await client.hset(store.key("order.created"), key, raw)  # type: ignore[misc]
        await client.zadd(store.index_key("order.created"), {key: now + n})


async def test_corrupt_entries_are_listed_skipped_and_deletable(
    client: AnyRedis, prefix: str, wait: Any, dead_letter_orders: Any
) -> None:
    metas = await dead_letter_orders(client, prefix)
    await _corrupt(client, prefix)
    bus: EventBus = RedisEventBus(client, prefix=prefix, read_block=0.2)
    handled: list[Any] = []

    async def handler(data: Any, meta: EventMetadata) -> None:
        handled.append(data)

    bus.subscribe("order.created", handler, group="orders")
    await bus.start()
    try:
        entries = await bus.get_dead_letter_queue()
        assert len(entries) == 7
        corrupt = {e.key: e for e in entries if e.corrupt is not None}
        assert set(corrupt) == set(CORRUPT)
        for key, e in corrupt.items():
            assert e.raw_size == len(CORRUPT[key])
            assert e.event_id == key.split("|")[0]
            assert e.subscription == "orders"
        assert "JSONDecodeError" in corrupt["bad-json|orders"].corrupt  # type: ignore[operator]
        assert "UnicodeDecodeError" in corrupt["bad-utf8|orders"].corrupt  # type: ignore[operator]
        assert "JSON object" in corrupt["a-list|orders"].corrupt  # type: ignore[operator]
        assert "missing field" in corrupt["no-fields|orders"].corrupt  # type: ignore[operator]
        sound = [e for e in entries if e.corrupt is None]
        assert {e.event_id for e in sound} == {m.event_id for m in metas}
        assert [e.data for e in await bus.get_dead_letter_queue(event="order.created")][::-1] == [
            {"n": 0},
            {"n": 1},
            {"n": 2},
        ]

        [shown] = await bus.get_dead_letter("bad-json")
        assert shown.corrupt is not None
        with pytest.raises(ValueError, match="corrupt and cannot be replayed") as info:
            await bus.replay_from_dlq("bad-json")
        assert type(info.value).__name__ == "CorruptDeadLetterError"

        assert await bus.replay_from_dlq(metas[0].event_id) == 1
        result = await bus.replay_all()
        assert result == 2, "the sound entries are replayed"
        assert sorted(result.skipped_corrupt) == sorted(CORRUPT)  # type: ignore[attr-defined]
        await wait(lambda: len(handled) == 3, what="the three replayed events")
        assert sorted(d["n"] for d in handled) == [0, 1, 2]
        assert await bus.dead_letter_count() == 4, "corrupt entries stay until deleted"

        for n, key in enumerate(CORRUPT, 1):
            assert await bus.delete_dead_letter(key.split("|")[0]) == 1
            assert await bus.dead_letter_count() == 4 - n
        assert await client.zcard(RedisDeadLetterStore(client, prefix).index_key("order.created")) == 0
    finally:
        await bus.close()


async def test_a_corrupt_key_without_a_subscription_part_is_listed_and_deletable(
    client: AnyRedis, prefix: str
) -> None:
    store = RedisDeadLetterStore(client, prefix)
    await store.note_event("e")
    await client.hset(store.key("e"), "foreign", b"\x00")  # type: ignore[misc]
    await client.zadd(store.index_key("e"), {"foreign": 1})
    bus = RedisEventBus(client, prefix=prefix)
    [entry] = await bus.get_dead_letter_queue()
    assert (entry.key, entry.event_id, entry.subscription, entry.raw_size) == ("foreign", "foreign", "", 1)
    assert (await bus.replay_all()).skipped_corrupt == ("foreign",)
    assert await bus.delete_dead_letter("foreign") == 1
    assert await bus.dead_letter_count() == 0


async def test_dlq_cli_with_corrupt_entries(
    prefix: str, client: AnyRedis, dlq_cli: Any, dead_letter_orders: Any
) -> None:
    metas = await dead_letter_orders(client, prefix)
    await _corrupt(client, prefix)

    async def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        out = await dlq_cli(*args)
        assert out.returncode == code, (args, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr, out.stderr
        return out

    out = await cli("list")
    for m in metas:
        assert m.event_id in out.stdout
    for key, raw in CORRUPT.items():
        row = next(line for line in out.stdout.splitlines() if line.startswith(key.split("|")[0] + " "))
        assert f"CORRUPT ({len(raw)} bytes)" in row
    assert "7 shown of 7 entries (redis adapter)" in out.stdout
    assert "4 shown entries are corrupt" in out.stdout

    listed = json.loads((await cli("list", "--json")).stdout)
    assert {e["event_id"]: e.get("raw_size") for e in listed if "corrupt" in e} == {
        k.split("|")[0]: len(v) for k, v in CORRUPT.items()
    }

    out = await cli("show", "bad-json")
    assert "CORRUPT:" in out.stdout
    assert "JSONDecodeError" in out.stdout
    assert f"{len(CORRUPT['bad-json|orders'])} bytes" in out.stdout
    out = await cli("show", metas[1].event_id)
    assert 'data:           {"n": 1}' in out.stdout

    out = await cli("replay", "bad-utf8", code=1)
    assert "corrupt and cannot be replayed" in out.stderr

    out = await cli("replay", metas[0].event_id)
    assert f"replayed {metas[0].event_id} to 1 subscription(s)" in out.stdout

    out = await cli("replay", "--all")
    assert "replayed 2 entries" in out.stdout
    assert "skipped 4 corrupt entries" in out.stderr
    retries = retry_key(prefix, "order.created", "orders")
    assert await client.xlen(retries) == 3, "every sound entry was re-delivered"

    out = await cli("clear", "bad-json")
    assert "removed 1 entries" in out.stdout
    out = await cli("list")
    assert "3 shown of 3 entries" in out.stdout
    assert "bad-json" not in out.stdout
