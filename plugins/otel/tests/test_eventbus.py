"""Event bus spans: PRODUCER per publish, CONSUMER per handler attempt, linked; trace ids in DLQ entries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from kernel_eventbus import EventBus, EventMetadata
from kernel_otel import Tracing
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from kernel.logging import get_trace_id
from kernel.testing import boot_kernel, wait_until

CONFIG: dict[str, dict[str, Any]] = {
    "otel": {"exporter": "memory"},
    "eventbus": {"adapter": "memory", "max_retries": 2, "retry_base_delay": 0.0},
}


def _hex(value: int, width: int = 32) -> str:
    return format(value, f"0{width}x")


def _kinds(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans if s.kind is kind]


async def handle_ok(data: Any, meta: EventMetadata) -> None:
    seen.append((meta, get_trace_id()))


seen: list[tuple[EventMetadata, str | None]] = []


@asynccontextmanager
async def traced_bus() -> AsyncIterator[tuple[EventBus, Tracing]]:
    """A booted otel + memory-eventbus kernel's bus and tracing; ``seen`` cleared, ``handle_ok``
    subscribed to ``user.created`` in group ``welcome``."""
    seen.clear()
    async with boot_kernel("otel", "eventbus", config=CONFIG) as kernel:
        bus, tracing = kernel.registry.get(EventBus), kernel.registry.get(Tracing)
        bus.subscribe("user.created", handle_ok, group="welcome")
        yield bus, tracing


@pytest.mark.anyio
async def test_publish_and_handle_yield_linked_producer_and_consumer_spans() -> None:
    async with traced_bus() as (bus, tracing):
        meta = await bus.publish("user.created", {"user_id": "7"})
        await wait_until(lambda: seen, what="the handler ran")
        await wait_until(lambda: _kinds(tracing.memory.get_finished_spans(), SpanKind.CONSUMER))
        spans = tracing.memory.get_finished_spans()
    (producer,) = _kinds(spans, SpanKind.PRODUCER)
    (consumer,) = _kinds(spans, SpanKind.CONSUMER)
    assert producer.name == "publish user.created"
    assert dict(producer.attributes or {}) == {
        "messaging.system": "milo-kernel-eventbus",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": "user.created",
        "messaging.message.id": meta.event_id,
        "kernel.eventbus.adapter": "memory",
    }
    # published outside any span: the producer's trace is the event's kernel trace id
    assert _hex(producer.context.trace_id) == meta.trace_id
    assert meta.traceparent is not None
    version, trace_id, span_id, flags = meta.traceparent.split("-")
    assert (version, trace_id, span_id) == ("00", meta.trace_id, _hex(producer.context.span_id, 16))
    assert int(flags, 16) & 1  # sampled
    assert consumer.name == "process user.created"
    assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id
    assert [link.context.span_id for link in consumer.links] == [producer.context.span_id]
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.operation.type"] == "process"
    assert consumer.attributes["messaging.consumer.group.name"] == "welcome"
    assert consumer.attributes["kernel.eventbus.attempt"] == 1
    handled_meta, handler_trace_id = seen[0]
    assert handled_meta.traceparent == meta.traceparent  # traceparent travelled in the metadata
    assert handler_trace_id == meta.trace_id


@pytest.mark.anyio
async def test_retried_event_shows_one_span_per_attempt_and_dlq_entry_carries_the_trace_id() -> None:
    async def always_fails(data: Any, meta: EventMetadata) -> None:
        raise RuntimeError(f"attempt {meta.attempt} failed")

    async with boot_kernel("otel", "eventbus", config=CONFIG) as kernel:
        bus, tracing = kernel.registry.get(EventBus), kernel.registry.get(Tracing)
        bus.subscribe("order.paid", always_fails, group="billing")
        meta = await bus.publish("order.paid", {"order": 1})
        await wait_until(lambda: bus.get_dead_letter_queue(), what="the event was dead-lettered")
        (entry,) = await bus.get_dead_letter_queue()
        spans = tracing.memory.get_finished_spans()
    (producer,) = _kinds(spans, SpanKind.PRODUCER)
    consumers = sorted(_kinds(spans, SpanKind.CONSUMER), key=lambda s: s.start_time or 0)
    assert [c.attributes["kernel.eventbus.attempt"] for c in consumers if c.attributes] == [1, 2, 3]
    assert [c.attributes["kernel.eventbus.retry"] for c in consumers if c.attributes] == [True, True, False]
    for consumer in consumers:
        assert consumer.status.status_code is StatusCode.ERROR
        assert consumer.context.trace_id == producer.context.trace_id
        assert [link.context.span_id for link in consumer.links] == [producer.context.span_id]
        assert consumer.events[0].name == "exception"
    assert entry.metadata.trace_id == _hex(producer.context.trace_id) == meta.trace_id
    assert entry.metadata.traceparent == meta.traceparent


@pytest.mark.anyio
async def test_publish_inside_a_span_joins_its_trace() -> None:
    async with traced_bus() as (bus, tracing):
        with tracing.tracer.start_as_current_span("request") as outer:
            await bus.publish(
                "user.created", {"user_id": "8"}, trace_id=_hex(outer.get_span_context().trace_id)
            )
        await wait_until(lambda: _kinds(tracing.memory.get_finished_spans(), SpanKind.CONSUMER))
        spans = tracing.memory.get_finished_spans()
    (producer,) = _kinds(spans, SpanKind.PRODUCER)
    (consumer,) = _kinds(spans, SpanKind.CONSUMER)
    assert producer.parent is not None and producer.parent.span_id == outer.get_span_context().span_id
    assert consumer.context.trace_id == outer.get_span_context().trace_id


@pytest.mark.anyio
async def test_event_without_traceparent_is_traced_under_its_kernel_trace_id() -> None:
    seen.clear()
    async with boot_kernel("eventbus", config={"eventbus": CONFIG["eventbus"]}) as plain:
        untraced = await plain.registry.get(EventBus).publish("x", {})
    assert untraced.traceparent is None
    async with boot_kernel("otel", "eventbus", config=CONFIG) as kernel:
        bus, tracing = kernel.registry.get(EventBus), kernel.registry.get(Tracing)
        observer = bus.observer
        assert observer is not None
        sub = bus.subscribe("x", handle_ok, group="g")
        with observer.handling(sub, untraced):  # what the bus does around a handler attempt
            inside = get_trace_id()
        (consumer,) = tracing.memory.get_finished_spans()
    assert inside is None  # the bus itself sets the kernel trace id, not the observer
    assert _hex(consumer.context.trace_id) == untraced.trace_id
    assert consumer.parent is None and not consumer.links


@pytest.mark.anyio
async def test_teardown_removes_the_observer() -> None:
    async with boot_kernel("otel", "eventbus", config=CONFIG) as kernel:
        bus = kernel.registry.get(EventBus)
        assert bus.observer is not None
    assert bus.observer is None
    assert "_invoke" not in vars(bus)  # handler runs are back on the plain path
