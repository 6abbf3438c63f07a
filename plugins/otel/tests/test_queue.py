"""Queue spans on a real redis-server: enqueue (PRODUCER) and one CONSUMER span per job attempt."""

from __future__ import annotations

import logging

import pytest
from kernel_otel import Tracing
from kernel_queue import JobContext, QueueManager
from kernel_queue.testing import FAST_TIMERS
from kernel_redis.testing import redis_keys_left_behind, redis_server, redis_url  # noqa: F401
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from kernel.logging import get_trace_id
from kernel.testing import boot_kernel, wait_until


def _kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.kind is kind), key=lambda s: s.start_time or 0)


@pytest.mark.anyio
async def test_job_attempts_are_spans_linked_to_the_enqueue(
    redis_url: str,  # noqa: F811
    qname: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = {"otel": {"exporter": "memory"}, "redis": {"url": redis_url}, "queue": FAST_TIMERS}
    seen: list[str | None] = []

    async def flaky(job: JobContext) -> None:
        seen.append(get_trace_id())
        logging.getLogger("test.otel.job").warning("attempt %d", job.attempts)
        if job.attempts < 2:
            raise RuntimeError("first attempt fails")

    caplog.set_level(logging.WARNING, logger="test.otel.job")
    async with boot_kernel("otel", "redis", "queue", config=config) as kernel:
        manager, tracing = kernel.get(QueueManager), kernel.get(Tracing)
        await manager.create_worker(qname, flaky)
        with tracing.tracer.start_as_current_span("request") as request:
            job_id = await manager.add_job(qname, "report", {"n": 1}, attempts=2)

        async def completed() -> bool:
            info = await manager.get_job(qname, job_id)
            return info is not None and info.state == "completed"

        await wait_until(completed, what="the job completed on its second attempt")
        record = await manager.get_queue(qname).job(job_id)  # the stored job record
        await wait_until(lambda: len(_kind(tracing.memory.get_finished_spans(), SpanKind.CONSUMER)) == 2)
        spans = tracing.memory.get_finished_spans()
    (producer,) = _kind(spans, SpanKind.PRODUCER)
    first, second = _kind(spans, SpanKind.CONSUMER)
    trace_id = request.get_span_context().trace_id
    assert producer.name == f"create {qname}"
    assert producer.parent is not None and producer.parent.span_id == request.get_span_context().span_id
    assert producer.attributes is not None and producer.attributes["kernel.queue.job.name"] == "report"
    for attempt, span in enumerate((first, second), start=1):
        assert span.name == f"process {qname}"
        assert span.context.trace_id == trace_id
        assert span.parent is not None and span.parent.span_id == producer.context.span_id
        assert [link.context.span_id for link in span.links] == [producer.context.span_id]
        assert span.attributes is not None
        assert span.attributes["messaging.message.id"] == job_id
        assert span.attributes["kernel.queue.attempt"] == attempt
    assert first.status.status_code is StatusCode.ERROR and first.events[0].name == "exception"
    assert second.status.status_code is StatusCode.UNSET
    assert seen == [format(trace_id, "032x")] * 2  # the processor runs with the trace's id
    assert record is not None
    assert record.meta["trace_id"] == format(trace_id, "032x")
    assert record.meta["traceparent"].split("-")[2] == format(producer.context.span_id, "016x")
    records = [r for r in caplog.records if r.name == "test.otel.job"]
    assert [getattr(r, "span_id", None) for r in records] == [
        format(first.context.span_id, "016x"),
        format(second.context.span_id, "016x"),
    ]
