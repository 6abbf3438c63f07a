"""The redis event-bus adapter across two kernels (a web process and a worker): the traceparent travels
in the stream entry, retries and the DLQ keep it; a real redis-server (kernel_redis.testing)."""

from __future__ import annotations

from typing import Any

import pytest
from kernel_eventbus import EventBus, EventMetadata
from kernel_otel import Tracing
from kernel_redis.testing import redis_keys_left_behind, redis_server, redis_url  # noqa: F401
from opentelemetry.trace import SpanKind

from kernel.testing import boot_kernel, wait_until


def _config(url: str, prefix: str) -> dict[str, dict[str, Any]]:
    return {
        "otel": {"exporter": "memory"},
        "redis": {"url": url},
        "eventbus": {
            "adapter": "redis",
            "prefix": prefix,
            "max_retries": 1,
            "retry_base_delay": 0.0,
            "read_block": 0.05,
            "new_group_start": "earliest",
        },
    }


@pytest.mark.anyio
async def test_consumer_in_another_kernel_continues_the_publishers_trace(
    redis_url: str,  # noqa: F811
    prefix: str,
) -> None:
    config = _config(redis_url, prefix)
    attempts: list[EventMetadata] = []

    async def fails_once(data: Any, meta: EventMetadata) -> None:
        attempts.append(meta)
        raise RuntimeError("not yet")

    async with (
        boot_kernel("otel", "redis", "eventbus", config=config) as web,
        boot_kernel("otel", "redis", "eventbus", config=config) as worker,
    ):
        worker.get(EventBus).subscribe("order.paid", fails_once, group="billing")
        meta = await web.get(EventBus).publish("order.paid", {"order": 1})
        bus = worker.get(EventBus)
        await wait_until(lambda: bus.get_dead_letter_queue(), what="the event was dead-lettered")
        (entry,) = await bus.get_dead_letter_queue()
        (producer,) = web.get(Tracing).memory.get_finished_spans()
        consumers = sorted(worker.get(Tracing).memory.get_finished_spans(), key=lambda s: s.start_time or 0)
    assert producer.kind is SpanKind.PRODUCER
    assert [m.traceparent for m in attempts] == [meta.traceparent, meta.traceparent]  # stream, then retry
    assert [c.kind for c in consumers] == [SpanKind.CONSUMER, SpanKind.CONSUMER]
    for attempt, consumer in enumerate(consumers, start=1):
        assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id
        assert consumer.context.trace_id == producer.context.trace_id
        assert consumer.attributes is not None
        assert consumer.attributes["kernel.eventbus.attempt"] == attempt
        assert consumer.attributes["kernel.eventbus.adapter"] == "redis"
    assert entry.metadata.trace_id == format(producer.context.trace_id, "032x")
    assert entry.metadata.traceparent == meta.traceparent
