"""The bus's PRODUCER spans on the plugin's lean path equal the SDK tracer's, as exporters see them,
with the same ``traceparent``/``tracestate`` in the stored metadata (root, child, unsampled, failed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest.mock import patch

import pytest
from kernel_eventbus import EventMetadata
from kernel_eventbus._metadata import make_metadata
from kernel_otel import _eventbus
from kernel_otel._eventbus import BusTracing, _static
from kernel_otel._ids import KernelIdGenerator
from kernel_otel._lean import KernelTracer
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def _meta(event_id: str = "e-1") -> EventMetadata:
    return make_metadata(event_id, "user.created", "2026-01-01T00:00:00.000Z", None, TRACE_ID)


def _view(span: ReadableSpan) -> dict[str, Any]:
    assert span.context is not None
    return {
        "name": span.name,
        "kind": span.kind,
        "parent": span.parent,
        "attributes": list((span.attributes or {}).items()),
        "dropped_attributes": span.dropped_attributes,
        "events": [
            (e.name, {k: v for k, v in (e.attributes or {}).items() if k != "exception.stacktrace"})
            for e in span.events
        ],
        "links": [(link.context, dict(link.attributes or {})) for link in span.links],
        "status": (span.status.status_code, span.status.description),
        "scope": span.instrumentation_scope,
        "context": (span.context.trace_flags, span.context.trace_state, span.context.is_remote),
    }


Publish = Callable[[BusTracing], tuple[EventMetadata, EventMetadata]]


def _both(publish: Publish, **provider: Any) -> tuple[Any, Any]:
    """``publish(observer)`` with a BusTracing on the SDK tracer, then on the lean one: for each, the
    exported spans' views and the metadata (the given one and the stored one, ids made relative)."""
    exporter = InMemorySpanExporter()
    tp = TracerProvider(
        resource=Resource.create({"service.name": "bus"}),
        id_generator=KernelIdGenerator(),
        shutdown_on_exit=False,
        **provider,
    )
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    sdk = tp.get_tracer("milo-kernel")
    results = []
    for tracer in (sdk, KernelTracer(sdk)):  # type: ignore[arg-type]
        exporter.clear()
        # the reference: the SDK tracer's spans, the W3C propagator's traceparent and tracestate
        with patch.object(_eventbus, "_READ_FIELDS", _eventbus._READ_FIELDS and tracer is not sdk):
            given, stored = publish(BusTracing(tracer, "memory"))
        spans = exporter.get_finished_spans()
        results.append(
            (
                [_view(s) for s in spans],
                _named(stored.traceparent, given, spans),
                stored.tracestate,
                stored.event_id,
            )
        )
    return results[0], results[1]


def _named(traceparent: str | None, given: EventMetadata, spans: Any) -> tuple[str, ...] | None:
    """``traceparent``'s fields, its ids named (the kernel trace id, an exported span), as ids differ
    between two runs."""
    if traceparent is None or traceparent.count("-") != 3:
        return (traceparent,) if traceparent is not None else None
    version, trace_id, span_id, flags = traceparent.split("-")
    exported = [f"{s.context.span_id:016x}" for s in spans]
    span = f"<span {exported.index(span_id)}>" if span_id in exported else "<not exported>"
    return version, "<trace>" if trace_id == given.trace_id else trace_id, span, flags


def _stored(observer: BusTracing, error: BaseException | None = None) -> tuple[EventMetadata, EventMetadata]:
    given = _meta()
    stored, done = observer.publishing(given)
    done(error)
    return given, stored


@pytest.mark.parametrize(
    "sampler",
    [ALWAYS_ON, ALWAYS_OFF, ParentBased(ALWAYS_ON), TraceIdRatioBased(1.0)],
    ids=["on", "off", "parent-on", "ratio"],
)
def test_root_publish_span_and_traceparent_equal_the_sdks(sampler: Sampler) -> None:
    sdk, lean = _both(_stored, sampler=sampler)
    assert lean == sdk
    if sampler is not ALWAYS_OFF:
        assert lean[1] is not None and lean[1][:3] == ("00", "<trace>", "<span 0>")  # the kernel trace id


def test_failed_publish_span_equals_the_sdks() -> None:
    sdk, lean = _both(lambda observer: _stored(observer, ConnectionError("down")))
    assert lean == sdk
    assert lean[0][0]["status"][1] == "ConnectionError: down"


@pytest.mark.parametrize("sampled", [True, False])
@pytest.mark.parametrize(
    "sampler", [ALWAYS_ON, ParentBased(ALWAYS_ON), TraceIdRatioBased(0.5)], ids=["on", "parent-on", "ratio"]
)
def test_publish_in_a_remote_parent_with_tracestate_equals_the_sdks(sampler: Sampler, sampled: bool) -> None:
    parent = SpanContext(
        0xABC,
        0xDEF,
        is_remote=True,
        trace_flags=TraceFlags(int(sampled)),
        trace_state=TraceState([("k", "v")]),
    )

    def publish(observer: BusTracing) -> tuple[EventMetadata, EventMetadata]:
        token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
        try:
            return _stored(observer)
        finally:
            otel_context.detach(token)

    sdk, lean = _both(publish, sampler=sampler)
    assert lean == sdk
    if sdk[0]:
        assert sdk[2] == "k=v"  # the parent's trace state travels


def test_publish_under_baggage_only_is_a_root_span_like_the_sdks() -> None:
    def publish(observer: BusTracing) -> tuple[EventMetadata, EventMetadata]:
        token = otel_context.attach(otel_context.set_value("other", 1))  # a context, no span
        try:
            return _stored(observer)
        finally:
            otel_context.detach(token)

    sdk, lean = _both(publish)
    assert lean == sdk and lean[0][0]["parent"] is None


def test_publish_with_span_limits_equals_the_sdks() -> None:
    limits = SpanLimits(max_span_attributes=3, max_span_attribute_length=4)
    sdk, lean = _both(_stored, span_limits=limits)
    assert lean == sdk
    assert len(lean[0][0]["attributes"]) == 3 and lean[0][0]["dropped_attributes"] == 3


def test_context_fields_are_read_by_index() -> None:
    assert _eventbus._READ_FIELDS  # else the propagator's path runs everywhere (still correct, slower)


def test_static_samplers_are_the_sdks_fixed_decisions() -> None:
    assert _static(ALWAYS_ON) and _static(ALWAYS_OFF) and _static(ParentBased(ALWAYS_OFF))
    assert not _static(TraceIdRatioBased(0.5)) and not _static(ParentBased(TraceIdRatioBased(0.5)))


class _Sub:
    name = "welcome"


def _handled(traceparent: str | None, tracestate: str | None = None, fail: bool = False) -> Publish:
    def handle(observer: BusTracing) -> tuple[EventMetadata, EventMetadata]:
        meta = make_metadata(
            "e-1", "user.created", "2026-01-01T00:00:00.000Z", None, TRACE_ID, 2, "2026-01-02T00:00:00.000Z"
        )
        if traceparent is not None:
            meta = meta.with_trace_context(traceparent, tracestate)
        with observer.handling(_Sub(), meta) as attempt:  # type: ignore[arg-type]
            inside = trace.get_current_span()
            assert inside.get_span_context().is_valid or not inside.is_recording()
            if fail:
                attempt.failed(ValueError("bad"), retry=True)
        assert trace.get_current_span() is not inside  # detached
        return meta, meta

    return handle


@pytest.mark.parametrize(
    "sampler", [ALWAYS_ON, ParentBased(ALWAYS_ON), TraceIdRatioBased(0.5)], ids=["on", "parent-on", "ratio"]
)
@pytest.mark.parametrize(
    "carrier",
    [
        (f"00-{TRACE_ID}-b7ad6b7169203331-01", "k=v"),
        (f"00-{TRACE_ID}-b7ad6b7169203331-00", None),
        ("not a traceparent", None),
        (None, None),
    ],
    ids=["sampled-state", "unsampled", "invalid", "none"],
)
def test_handling_span_equals_the_sdks(sampler: Sampler, carrier: tuple[str | None, str | None]) -> None:
    sdk, lean = _both(_handled(*carrier), sampler=sampler)
    assert lean == sdk


def test_failed_attempt_span_equals_the_sdks() -> None:
    sdk, lean = _both(_handled(f"00-{TRACE_ID}-b7ad6b7169203331-01", fail=True))
    assert lean == sdk
    (view,) = lean[0]
    assert view["status"][1] == "ValueError: bad" and view["links"] and view["parent"] is not None
