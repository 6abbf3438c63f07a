"""Data written with the earlier key layout (no hash tags) keeps flowing after the upgrade.

``kernel redis migrate-keys --apply`` renames the event streams (consumer groups and pending
entries go along); the bus moves a subscription's old retries when it starts, and the old
single DLQ hash into the per-event DLQs. The earlier layout never ran on a cluster (its scripts
cross slots): this runs on standalone and sentinel.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from kernel_eventbus import DeadLetterEntry, EventMetadata
from kernel_eventbus._redis import RedisEventBus
from kernel_redis import AnyRedis
from kernel_redis.testing import run_migrate_keys
from redis.asyncio.cluster import RedisCluster

pytestmark = pytest.mark.anyio


def _entry(event_id: str, data: dict[str, Any]) -> str:
    return f"1\t{event_id}\t2026-01-01T00:00:00.000Z\t\t\n{json.dumps(data)}"


def _envelope(event_id: str, data: dict[str, Any]) -> str:
    return json.dumps(
        {"id": event_id, "n": "e", "ts": "2026-01-01T00:00:00.000Z", "att": 2, "ff": "t", "d": data}
    )


async def _write_legacy(client: AnyRedis, prefix: str) -> None:
    """What the earlier layout left: a stream with a pending and an unread entry, a due retry in
    the retry stream, a scheduled retry, and a dead letter."""
    stream = f"{prefix}:stream:e"
    await client.xgroup_create(stream, "g", id="0", mkstream=True)
    await client.xadd(stream, {"e": _entry("pending-1", {"k": "pending"})})
    await client.xadd(stream, {"e": _entry("unread-2", {"k": "unread"})})
    assert await client.xreadgroup("g", "a-dead-consumer", {stream: ">"}, count=1)  # left pending
    await client.xgroup_create(f"{prefix}:retry:g", "g", id="0", mkstream=True)
    await client.xadd(f"{prefix}:retry:g", {"j": _envelope("retry-3", {"k": "retry"})})
    await client.zadd(f"{prefix}:schedule:g", {_envelope("scheduled-4", {"k": "scheduled"}): 1})
    dead = DeadLetterEntry(
        metadata=EventMetadata("dead-5", "e", "2026-01-01T00:00:00.000Z", attempt=4),
        data={"k": "dead"},
        subscription="g",
        attempts=4,
        first_failure_at="t",
        last_failure_at="t",
        error_type="ValueError",
        error_message="bad",
    )
    await client.hset(f"{prefix}:dlq", dead.key, json.dumps(dead.to_dict()))  # type: ignore[misc]
    await client.zadd(f"{prefix}:dlq:index", {dead.key: time.time() * 1000})


def _migrate_keys(redis_url: str, prefix: str, tmp_path: Path, *args: str) -> str:
    config = tmp_path / "kernel.toml"
    config.write_text(
        f'[kernel]\nplugins = ["redis", "eventbus"]\n\n[plugins.redis]\nurl = "{redis_url}"\n\n'
        f'[plugins.eventbus]\nadapter = "redis"\nprefix = "{prefix}"\n'
    )
    return run_migrate_keys(config, *args)


async def test_data_of_the_earlier_layout_is_migrated_and_delivered(
    redis_url: str, client: AnyRedis, prefix: str, tmp_path: Path, wait: Any
) -> None:
    if isinstance(client, RedisCluster):
        pytest.skip("the earlier layout never ran on a cluster (its scripts and transactions cross slots)")
    await _write_legacy(client, prefix)
    dry = await asyncio.to_thread(_migrate_keys, redis_url, prefix, tmp_path)
    assert f"{prefix}:stream:e" in dry and "{" + prefix + ":e}:stream" in dry, dry
    assert await client.exists(f"{prefix}:stream:e"), "a dry run renames nothing"
    await asyncio.to_thread(_migrate_keys, redis_url, prefix, tmp_path, "--apply")
    assert not await client.exists(f"{prefix}:stream:e")

    got: list[str] = []

    async def handler(data: Any, meta: EventMetadata) -> None:
        got.append(data["k"])

    bus = RedisEventBus(client, prefix=prefix, read_block=0.2, visibility_timeout=0.5, reclaim_interval=0.2)
    bus.subscribe("e", handler, group="g")
    await bus.start()
    try:
        await wait(
            lambda: sorted(got) == ["pending", "retry", "scheduled", "unread"], what=f"4 events: {got}"
        )
        [dead] = await bus.get_dead_letter_queue()
        assert (dead.event_id, dead.event_name, dead.data) == ("dead-5", "e", {"k": "dead"})
        assert await bus.replay_from_dlq("dead-5") == 1
        await wait(lambda: "dead" in got, what="the replayed dead letter")
    finally:
        await bus.close()
    left = [f"{prefix}:{k}" for k in ("stream:e", "retry:g", "schedule:g", "dlq", "dlq:index")]
    assert await client.exists(*left) == 0, "nothing of the earlier layout is left"
