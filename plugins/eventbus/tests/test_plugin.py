"""The plugin through the kernel: adapters, the redis dependency, metrics, health and `kernel dlq`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kernel_eventbus import EventBus, EventMetadata, MemoryEventBus
from kernel_eventbus._keys import retry_key
from kernel_eventbus._redis import RedisEventBus
from kernel_eventbus._redis_dlq import RedisDeadLetterStore
from kernel_redis import AnyRedis

import kernel
from kernel.testing import boot_kernel, make_kernel

pytestmark = pytest.mark.anyio


async def test_memory_adapter_is_the_default() -> None:
    async with boot_kernel("eventbus") as k:
        bus = k.get(EventBus)
        assert isinstance(bus, MemoryEventBus)
        assert k.registry.get("eventbus") is bus
        got: list[Any] = []

        async def handler(data: Any, meta: EventMetadata) -> None:
            got.append(data)

        bus.subscribe("ping", handler, group="g")
        await bus.publish("ping", {"n": 1})
        await asyncio.wait_for(bus.join(), 5)
        assert got == [{"n": 1}]
        report = await k.health()
        assert report.status == "ok"


def test_redis_adapter_without_the_redis_plugin_is_a_config_error_before_boot() -> None:
    # reported by the eventbus's kernel_check hook, so `kernel check` fails too (issue 11, item 4)
    with pytest.raises(kernel.ConfigError) as info:
        make_kernel("eventbus", config={"eventbus": {"adapter": "redis"}})
    [text] = info.value.errors
    assert text.startswith("plugins.eventbus.adapter: ")
    assert text == (
        'plugins.eventbus.adapter: adapter = "redis" needs the redis plugin '
        "(or set adapter = \"memory\") (add 'redis' to [kernel] plugins)"
    )


async def test_redis_adapter_through_the_kernel(redis_url: str, prefix: str, client: AnyRedis) -> None:
    config = {"redis": {"url": redis_url}, "eventbus": {"adapter": "redis", "prefix": prefix}}
    async with boot_kernel("eventbus", "redis", config=config) as k:
        assert k.load_order == ["redis", "eventbus"]
        bus = k.get(EventBus)
        assert isinstance(bus, RedisEventBus)
        assert bus.client is k.registry.get("redis")
        got: list[EventMetadata] = []

        async def handler(data: Any, meta: EventMetadata) -> None:
            got.append(meta)

        bus.subscribe("order.created", handler, group="g")
        meta = await bus.publish("order.created", {"id": 1})
        for _ in range(300):
            if got:
                break
            await asyncio.sleep(0.01)
        assert [m.event_id for m in got] == [meta.event_id]
        assert (await k.health()).status == "ok"


async def test_metrics_are_recorded_when_the_metrics_plugin_is_enabled() -> None:
    pytest.importorskip("kernel_metrics")
    async with boot_kernel(
        "metrics",
        "eventbus",
        config={
            "metrics": {"process_metrics": False},
            "eventbus": {"retry_base_delay": 0.01, "max_retries": 1},
        },
    ) as k:
        bus = k.get(EventBus)
        assert isinstance(bus, MemoryEventBus)

        async def ok(data: Any, meta: EventMetadata) -> None:
            pass

        async def bad(data: Any, meta: EventMetadata) -> None:
            raise RuntimeError("x")

        bus.subscribe("user.created", ok, group="ok")
        bus.subscribe("user.created", bad, group="bad")
        await bus.publish("user.created", {})
        await asyncio.wait_for(bus.join(), 5)
        body, _ctype = k.registry.get("metrics").render()
    text = body.decode()
    for status, n in (("published", 1), ("success", 1), ("retried", 1), ("failed", 1), ("dead_lettered", 1)):
        assert f'eventbus_events_total{{event="user.created",status="{status}"}} {n}.0' in text, status
    assert 'eventbus_handler_duration_seconds_count{event="user.created",subscription="ok"} 1.0' in text
    assert "eventbus_dlq_size 1.0" in text


async def test_dlq_cli(client: AnyRedis, prefix: str, dlq_cli: Any, dead_letter_orders: Any) -> None:
    metas = await dead_letter_orders(client, prefix)
    out = await dlq_cli("list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["event_id", "event", "subscription", "attempts", "last", "failure", "error"]
    assert set(lines[1]) <= {"-", " "}
    for m in metas:
        assert m.event_id in out.stdout
    assert "NonRetryableError: invalid order 1" in out.stdout
    assert "3 shown of 3 entries (redis adapter)" in out.stdout

    out = await dlq_cli("show", metas[0].event_id)
    assert out.returncode == 0, out.stderr
    assert "subscription:   orders" in out.stdout
    assert 'data:           {"n": 0}' in out.stdout
    assert "traceback:" in out.stdout

    out = await dlq_cli("list", "--json")
    assert {e["event_id"] for e in json.loads(out.stdout)} == {m.event_id for m in metas}

    out = await dlq_cli("replay", metas[0].event_id)
    assert out.returncode == 0, out.stderr
    assert f"replayed {metas[0].event_id} to 1 subscription(s)" in out.stdout
    retries = retry_key(prefix, "order.created", "orders")
    assert await client.xlen(retries) == 1, "re-delivered to the failed subscription only"

    out = await dlq_cli("show", "no-such-id")
    assert out.returncode == 1
    assert "no dead-letter entry for event 'no-such-id'" in out.stderr

    out = await dlq_cli("replay", "--all")
    assert out.returncode == 0, out.stderr
    assert "replayed 2 entries" in out.stdout
    assert "replaying 2/2 (100%)" in out.stderr, "progress is shown"

    store = RedisDeadLetterStore(client, prefix)
    await store.note_event("e")
    await client.hset(
        store.key("e"),
        "x|orders",
        json.dumps(
            {
                "metadata": {"event_id": "x", "event_name": "e", "timestamp": "t"},
                "subscription": "orders",
                "attempts": 1,
                "first_failure_at": "t",
                "last_failure_at": "t",
            }
        ),
    )
    out = await dlq_cli("clear")
    assert out.returncode == 2
    assert "--yes" in out.stderr
    out = await dlq_cli("clear", "--yes")
    assert out.returncode == 0, out.stderr
    assert "removed 1 entries" in out.stdout
    out = await dlq_cli("list")
    assert "dead-letter queue is empty" in out.stdout
