"""``KernelTracer.start_remote_child(..., linked=True)``: a consumer's span, child of and linked to a
remote producer, as the SDK tracer starts it."""

from __future__ import annotations

from typing import Any

import pytest
from kernel_otel._lean import KernelTracer, LeanSpan
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import RandomIdGenerator, SpanLimits, SpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState

from .test_lean import _pipeline, _root_pipeline, _view

ATTRIBUTES = {"messaging.system": "milo-kernel-eventbus", "kernel.eventbus.attempt": 1}
PARENTS = [
    SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(flags), trace_state=state)
    for flags in (0x00, 0x01, 0x02, 0x03)
    for state in (None, TraceState([("vendor", "v1"), ("other", "x")]))
]
SAMPLERS = [
    ALWAYS_ON,
    ALWAYS_OFF,
    ParentBased(ALWAYS_ON),
    ParentBased(ALWAYS_OFF),
    ParentBased(ALWAYS_OFF, remote_parent_not_sampled=ALWAYS_ON),
    ParentBased(ALWAYS_ON, remote_parent_sampled=ALWAYS_OFF),
]


def _sdk_child(tracer: trace.Tracer, parent: SpanContext) -> trace.Span:
    context = trace.set_span_in_context(NonRecordingSpan(parent), Context())
    span = tracer.start_span("process user.created", context, kind=SpanKind.CONSUMER, links=[Link(parent)])
    span.set_attributes(dict(ATTRIBUTES))
    return span


@pytest.mark.parametrize(
    "sampler", SAMPLERS, ids=["on", "off", "pb_on", "pb_off", "pb_unsampled_on", "pb_sampled_off"]
)
def test_linked_child_equals_the_sdks(sampler: Sampler) -> None:
    sdk, lean, exporter = _root_pipeline(sampler=sampler)
    assert lean.starts_remote_children
    for parent in PARENTS:
        want = _sdk_child(sdk, parent)
        got = lean.start_remote_child(
            "process user.created", SpanKind.CONSUMER, parent, dict(ATTRIBUTES), True
        )
        assert got is not None
        assert type(got) is (LeanSpan if want.is_recording() else NonRecordingSpan)
        context, wanted = got.get_span_context(), want.get_span_context()
        assert (
            context.trace_id,
            context.trace_flags,
            context.trace_state,
            context.is_remote,
            context.is_valid,
        ) == (
            wanted.trace_id,
            wanted.trace_flags,
            wanted.trace_state,
            wanted.is_remote,
            wanted.is_valid,
        )
        want.end()
        got.end()
    finished = exporter.get_finished_spans()
    assert len(finished) % 2 == 0
    for expected, span in zip(finished[::2], finished[1::2], strict=True):
        assert _view(span) == _view(expected)
        assert span.parent == expected.parent and span.parent is not None and span.parent.is_remote
        assert [link.context for link in span.links] == [link.context for link in expected.links]
        assert (span.dropped_links, span.links[0].dropped_attributes) == (expected.dropped_links, 0)


def test_linked_child_calls_processors_on_start_with_the_producer_as_parent() -> None:
    started: list[tuple[trace.Span, Any]] = []

    class Starts(SpanProcessor):
        def on_start(self, span: trace.Span, parent_context: Context | None = None) -> None:
            started.append((span, trace.get_current_span(parent_context).get_span_context()))

    _, lean, _ = _root_pipeline()
    lean.sdk.span_processor.add_span_processor(Starts())  # type: ignore[attr-defined]
    span = lean.start_remote_child("process", SpanKind.CONSUMER, PARENTS[3], {}, True)
    assert span is not None and started == [(span, PARENTS[3])]
    span.end()


@pytest.mark.parametrize(
    "options",
    [
        {"sampler": TraceIdRatioBased(0.5)},
        {"sampler": ParentBased(ALWAYS_ON, remote_parent_sampled=TraceIdRatioBased(0.5))},
        {"id_generator": RandomIdGenerator()},
        {"span_limits": SpanLimits(max_span_attribute_length=4)},
    ],
    ids=["ratio", "pb_remote_ratio", "other_ids", "value_length_limit"],
)
def test_linked_child_declines_what_it_cannot_be_sure_of(options: dict[str, Any]) -> None:
    from kernel_otel._ids import KernelIdGenerator

    ids = options.pop("id_generator", KernelIdGenerator())
    _, lean, exporter = _pipeline(id_generator=ids, **options)
    assert not lean.starts_remote_children
    assert lean.start_remote_child("process", SpanKind.CONSUMER, PARENTS[3], dict(ATTRIBUTES), True) is None
    assert exporter.get_finished_spans() == ()


def test_linked_child_declines_more_attributes_than_the_limit() -> None:
    _, lean, _ = _root_pipeline(span_limits=SpanLimits(max_span_attributes=1))
    assert isinstance(lean, KernelTracer) and lean.starts_remote_children
    assert lean.start_remote_child("process", SpanKind.CONSUMER, PARENTS[3], dict(ATTRIBUTES), True) is None
