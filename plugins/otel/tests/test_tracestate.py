"""W3C ``tracestate`` crosses the bus and the queue: a consumer's span context has the producer's trace
state (memory bus; Redis bus across two kernels, with a retry and a DLQ replay; a queue job's attempts),
on a real redis-server (kernel_redis.testing)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kernel_eventbus import EventBus, EventMetadata
from kernel_otel import Tracing
from kernel_queue import JobContext, QueueManager
from kernel_queue.testing import FAST_TIMERS
from kernel_redis.testing import redis_keys_left_behind, redis_server, redis_url  # noqa: F401
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kernel.testing import boot_kernel, wait_until

CALLER_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{CALLER_TRACE_ID}-b7ad6b7169203331-01"
TRACESTATE = "milo=t61rcWkgMzE,congo=ucfJifl5GOE"


@contextmanager
def in_callers_context() -> Iterator[None]:
    """Run inside a remote caller's context that has a trace state (as a request with both headers)."""
    carrier = {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}
    token = otel_context.attach(TraceContextTextMapPropagator().extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)


def _current_tracestate() -> str:
    return trace.get_current_span().get_span_context().trace_state.to_header()


def _kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.kind is kind), key=lambda s: s.start_time or 0)


def _bus_config(**eventbus: Any) -> dict[str, dict[str, Any]]:
    return {
        "otel": {"exporter": "memory"},
        "eventbus": {"max_retries": 1, "retry_base_delay": 0.0, **eventbus},
    }


async def _retry_dlq_replay(
    producer_bus: EventBus, consumer_bus: EventBus
) -> tuple[EventMetadata, list[str]]:
    """Publish in the caller's context to a handler failing twice (attempt, retry: dead-lettered), then
    replay it to the now passing handler; the trace state the handler's span had on each attempt."""
    states: list[str] = []
    fail = [True]

    async def handler(data: Any, meta: EventMetadata) -> None:
        assert meta.tracestate == TRACESTATE
        states.append(_current_tracestate())
        if fail[0]:
            raise RuntimeError(f"attempt {meta.attempt} fails")

    consumer_bus.subscribe("order.paid", handler, group="billing")
    with in_callers_context():
        meta = await producer_bus.publish("order.paid", {"order": 1}, trace_id=CALLER_TRACE_ID)
    await wait_until(consumer_bus.get_dead_letter_queue, what="the event was dead-lettered")
    (entry,) = await consumer_bus.get_dead_letter_queue()
    assert entry.metadata.tracestate == TRACESTATE
    fail[0] = False
    assert await consumer_bus.replay_from_dlq(meta.event_id) == 1
    await wait_until(lambda: len(states) == 3, what="the replayed delivery")
    return meta, states


def _assert_consumers_continue(producer: ReadableSpan, consumers: list[ReadableSpan]) -> None:
    assert producer.context.trace_state.to_header() == TRACESTATE
    assert [c.attributes["kernel.eventbus.attempt"] for c in consumers if c.attributes] == [1, 2, 1]
    assert "kernel.eventbus.replayed_at" in (consumers[2].attributes or {})
    for consumer in consumers:
        assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id
        assert consumer.parent.trace_state.to_header() == TRACESTATE
        assert consumer.context.trace_state.to_header() == TRACESTATE
        assert format(consumer.context.trace_id, "032x") == CALLER_TRACE_ID


@pytest.mark.anyio
async def test_memory_bus_consumer_spans_have_the_producers_tracestate() -> None:
    async with boot_kernel("otel", "eventbus", config=_bus_config(adapter="memory")) as kernel:
        bus, tracing = kernel.get(EventBus), kernel.get(Tracing)
        meta, states = await _retry_dlq_replay(bus, bus)
        await wait_until(lambda: len(_kind(tracing.memory.get_finished_spans(), SpanKind.CONSUMER)) == 3)
        spans = tracing.memory.get_finished_spans()
    assert meta.tracestate == TRACESTATE
    assert states == [TRACESTATE] * 3
    (producer,) = _kind(spans, SpanKind.PRODUCER)
    _assert_consumers_continue(producer, _kind(spans, SpanKind.CONSUMER))


@pytest.mark.anyio
async def test_redis_bus_consumer_in_another_kernel_has_the_producers_tracestate(
    redis_url: str,  # noqa: F811
    prefix: str,
) -> None:
    config = _bus_config(adapter="redis", prefix=prefix, read_block=0.05, new_group_start="earliest")
    config["redis"] = {"url": redis_url}
    async with (
        boot_kernel("otel", "redis", "eventbus", config=config) as web,
        boot_kernel("otel", "redis", "eventbus", config=config) as worker,
    ):
        meta, states = await _retry_dlq_replay(web.get(EventBus), worker.get(EventBus))
        consumed = worker.get(Tracing).memory
        await wait_until(lambda: len(_kind(consumed.get_finished_spans(), SpanKind.CONSUMER)) == 3)
        (producer,) = web.get(Tracing).memory.get_finished_spans()
        consumers = _kind(consumed.get_finished_spans(), SpanKind.CONSUMER)
    assert meta.tracestate == TRACESTATE
    assert states == [TRACESTATE] * 3  # stream entry, retry envelope, replayed envelope
    _assert_consumers_continue(producer, consumers)


@pytest.mark.anyio
async def test_job_attempts_have_the_enqueuers_tracestate(redis_url: str, qname: str) -> None:  # noqa: F811
    config = {"otel": {"exporter": "memory"}, "redis": {"url": redis_url}, "queue": FAST_TIMERS}
    states: list[str] = []

    async def flaky(job: JobContext) -> None:
        states.append(_current_tracestate())
        if job.attempts < 2:
            raise RuntimeError("first attempt fails")

    async with boot_kernel("otel", "redis", "queue", config=config) as kernel:
        manager, tracing = kernel.get(QueueManager), kernel.get(Tracing)
        await manager.create_worker(qname, flaky)
        with in_callers_context():
            job_id = await manager.add_job(qname, "report", {"n": 1}, attempts=2)

        async def completed() -> bool:
            info = await manager.get_job(qname, job_id)
            return info is not None and info.state == "completed"

        await wait_until(completed, what="the job completed on its second attempt")
        record = await manager.get_queue(qname).job(job_id)
        await wait_until(lambda: len(_kind(tracing.memory.get_finished_spans(), SpanKind.CONSUMER)) == 2)
        spans = tracing.memory.get_finished_spans()
    assert record is not None and record.meta["tracestate"] == TRACESTATE
    assert states == [TRACESTATE] * 2
    (producer,) = _kind(spans, SpanKind.PRODUCER)
    assert producer.context.trace_state.to_header() == TRACESTATE
    for attempt, span in enumerate(_kind(spans, SpanKind.CONSUMER), start=1):
        assert span.attributes is not None and span.attributes["kernel.queue.attempt"] == attempt
        assert span.parent is not None and span.parent.span_id == producer.context.span_id
        assert span.context.trace_state.to_header() == TRACESTATE
        assert format(span.context.trace_id, "032x") == CALLER_TRACE_ID
