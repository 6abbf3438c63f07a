"""The plugin's lean span path: the same spans as the SDK tracer's, seen by processors and exporters."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kernel_otel._ids import KernelIdGenerator
from kernel_otel._lean import KernelTracer, LeanSpan
from kernel_otel._sdk import adopting
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

_CONTEXT_FIELDS = ("trace_flags", "trace_state", "is_remote")


def _pipeline(**provider: Any) -> tuple[trace.Tracer, KernelTracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider(
        resource=Resource.create({"service.name": "lean"}), shutdown_on_exit=False, **provider
    )
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    sdk = tp.get_tracer("milo-kernel")
    return sdk, KernelTracer(sdk), exporter  # type: ignore[arg-type]


def _view(span: ReadableSpan) -> dict[str, Any]:
    """Everything an exporter reads of a span, ids and times left out."""
    assert span.context is not None
    return {
        "name": span.name,
        "kind": span.kind,
        "parent": span.parent is not None,
        "attributes": list((span.attributes or {}).items()),
        "dropped_attributes": span.dropped_attributes,
        "events": [(e.name, _no_stack(e.attributes)) for e in span.events],
        "dropped_events": span.dropped_events,
        "links": [(link.context, dict(link.attributes or {})) for link in span.links],
        "dropped_links": span.dropped_links,
        "status": (span.status.status_code, span.status.description),
        "resource": span.resource,
        "scope": span.instrumentation_scope,
        "context": tuple(getattr(span.context, f) for f in _CONTEXT_FIELDS),
        "type": type(span),
    }


def _no_stack(attributes: Any) -> dict[str, Any]:
    """An event's attributes but the stack trace (whose frames differ between two tracers)."""
    return {k: v for k, v in (attributes or {}).items() if k != "exception.stacktrace"}


def _both(work: Any, **provider: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``work(tracer)`` run on the SDK tracer and on the lean one; the exported views of each."""
    sdk, lean, exporter = _pipeline(**provider)
    work(sdk)
    expected = [_view(s) for s in exporter.get_finished_spans()]
    exporter.clear()
    work(lean)
    return expected, [_view(s) for s in exporter.get_finished_spans()]


def _everything(tracer: trace.Tracer) -> None:
    linked = trace.SpanContext(0xAB, 0xCD, is_remote=True, trace_flags=trace.TraceFlags(1))
    with tracer.start_as_current_span("outer", kind=SpanKind.SERVER, attributes={"a": [1, 2]}) as outer:
        span = tracer.start_span("inner", links=[Link(linked, {"k": "v"})])
        if isinstance(span, LeanSpan):
            span.set_trusted({"http.route": "/x", "http.response.status_code": 200})
        else:
            span.set_attributes({"http.route": "/x", "http.response.status_code": 200})
        span.set_attribute("bad", object())  # type: ignore[arg-type]  # cleaned as the SDK cleans it
        span.set_attribute("http.route", "/y")  # a set key moves to the end
        span.set_attribute("list", ["a", "b"])
        span.add_event("retry", {"n": 1})
        span.add_link(linked, {"later": True})
        span.record_exception(ValueError("bad"))
        span.set_status(Status(StatusCode.ERROR, "bad"))
        span.update_name("inner renamed")
        span.end()
        span.set_attribute("late", 1)  # ignored: ended
        outer.set_attribute("user.id", "7")


def test_lean_spans_equal_sdk_spans_as_exported() -> None:
    expected, lean = _both(_everything)
    assert [s["name"] for s in lean] == ["inner renamed", "outer"]
    for want, got in zip(expected, lean, strict=True):
        assert got == want
    inner = lean[0]
    keys = [key for key, _ in inner["attributes"]]
    assert keys == ["http.response.status_code", "bad", "http.route", "list"]
    assert ("list", ("a", "b")) in inner["attributes"] and ("http.route", "/y") in inner["attributes"]
    assert [name for name, _ in inner["events"]] == ["retry", "exception"]


def test_trusted_attributes_keep_the_span_limits() -> None:
    def work(tracer: trace.Tracer) -> None:
        span = tracer.start_span("limited")
        values = {"a": "x" * 10, "b": 2, "c": "y" * 3}
        if isinstance(span, LeanSpan):
            span.set_trusted(values)
        else:
            span.set_attributes(values)
        span.end()

    limits = SpanLimits(max_span_attributes=2, max_span_attribute_length=4)
    expected, lean = _both(work, span_limits=limits)
    assert lean == expected
    assert lean[0]["attributes"] == [("b", 2), ("c", "yyy")]
    assert lean[0]["dropped_attributes"] == 1


def test_unsampled_lean_span_is_non_recording_with_the_sdk_context() -> None:
    expected, lean = _both(lambda t: t.start_span("dropped").end(), sampler=ALWAYS_OFF)
    assert expected == lean == []
    _, tracer, _ = _pipeline(sampler=ParentBased(ALWAYS_OFF))
    span = tracer.start_span("x")
    assert not span.is_recording()
    assert span.get_span_context().is_valid and not span.get_span_context().trace_flags.sampled


def test_sdk_span_under_lean_span_is_its_child() -> None:
    sdk, lean, exporter = _pipeline()
    with lean.start_as_current_span("request", kind=SpanKind.SERVER) as request:
        assert isinstance(request, SdkSpan)
        with sdk.start_as_current_span("user work"), lean.start_as_current_span("repository"):
            pass
    repository, work, outer = exporter.get_finished_spans()
    assert outer.parent is None
    assert work.parent == outer.context and repository.parent == work.context
    assert len({s.context.trace_id for s in (repository, work, outer)}) == 1  # type: ignore[union-attr]


def test_start_as_current_span_as_decorator_starts_a_span_per_call() -> None:
    _, lean, exporter = _pipeline()

    @lean.start_as_current_span("job")
    def job() -> int:
        return trace.get_current_span().get_span_context().span_id

    first, second = job(), job()
    assert first != second
    assert [s.context.span_id for s in exporter.get_finished_spans()] == [first, second]  # type: ignore[union-attr]


def test_exception_in_lean_current_span_is_recorded() -> None:
    def work(tracer: trace.Tracer) -> None:
        with pytest.raises(KeyError), tracer.start_as_current_span("fails"):
            raise KeyError("k")

    expected, lean = _both(work)
    assert lean == expected
    assert lean[0]["status"][0] is StatusCode.ERROR


_STATE = trace.TraceState([("vendor", "x")])


@pytest.mark.parametrize(
    "sampler",
    [ALWAYS_ON, ALWAYS_OFF, ParentBased(ALWAYS_ON), ParentBased(ALWAYS_OFF), TraceIdRatioBased(0.5)],
    ids=["always_on", "always_off", "parentbased_on", "parentbased_off", "ratio"],
)
def test_sampling_decisions_equal_the_sdk_tracers(sampler: Sampler) -> None:
    parents = [None] + [
        trace.set_span_in_context(trace.NonRecordingSpan(_parent(0xA1 + i, remote, flag)))
        for i, (remote, flag) in enumerate([(True, 1), (True, 0), (False, 1), (False, 0)])
    ]

    def work(tracer: trace.Tracer) -> None:
        for parent in parents:
            for trace_id_bits in range(8):  # the ratio sampler decides by trace id: roots take fixed ones
                with _root_trace_id(trace_id_bits << 61):
                    span = tracer.start_span("s", parent, attributes={"k": "v"})
                    contexts.append(span.get_span_context())
                    span.end()

    contexts: list[trace.SpanContext] = []
    expected, lean = _both(work, sampler=sampler, id_generator=_FixedIds())
    assert lean == expected
    half = len(contexts) // 2
    keep = ("trace_id", "is_remote", "trace_flags", "trace_state")
    sdk_side = [tuple(getattr(c, f) for f in keep) for c in contexts[:half]]
    assert [tuple(getattr(c, f) for f in keep) for c in contexts[half:]] == sdk_side


def _parent(trace_id: int, remote: bool, flags: int) -> trace.SpanContext:
    return trace.SpanContext(
        trace_id, 0xB2, is_remote=remote, trace_flags=trace.TraceFlags(flags), trace_state=_STATE
    )


_next_trace_id: list[int] = [1]


class _FixedIds(RandomIdGenerator):
    def generate_trace_id(self) -> int:
        return _next_trace_id[0]


@contextmanager
def _root_trace_id(trace_id: int) -> Iterator[None]:
    """Root spans started in the block take ``trace_id`` (1 for 0)."""
    _next_trace_id[0] = trace_id or 1
    yield


def test_snapshot_has_the_fields_of_the_sdks() -> None:
    _, lean, exporter = _pipeline()
    lean.start_span("s").end()
    (snapshot,) = exporter.get_finished_spans()
    assert type(snapshot) is ReadableSpan
    assert set(vars(snapshot)) == set(vars(ReadableSpan("reference")))


_ROOT_ATTRIBUTES = {"http.request.method": "GET", "url.path": "/users/7", "server.port": 8000}


def _root_pipeline(**provider: Any) -> tuple[trace.Tracer, KernelTracer, InMemorySpanExporter]:
    return _pipeline(id_generator=KernelIdGenerator(), **provider)


def _sdk_root(tracer: trace.Tracer) -> trace.Span:
    span = tracer.start_span("GET", Context(), kind=SpanKind.SERVER)
    span.set_attributes(dict(_ROOT_ATTRIBUTES))
    return span


@pytest.mark.parametrize("sampler", [ALWAYS_ON, ParentBased(ALWAYS_ON)], ids=["always_on", "parentbased_on"])
def test_root_span_equals_the_sdks_root_span_with_its_attributes(sampler: Sampler) -> None:
    sdk, lean, exporter = _root_pipeline(sampler=sampler)
    _sdk_root(sdk).end()
    assert lean.samples_roots
    span = lean.start_root_span("GET", SpanKind.SERVER, dict(_ROOT_ATTRIBUTES))
    assert isinstance(span, LeanSpan) and span.is_recording()
    span.set_trusted({"http.route": "/users/{id}"})  # what the middleware adds at the end, either way
    span.end()
    expected, got = exporter.get_finished_spans()
    assert _view(got) == {
        **_view(expected),
        "attributes": [*_view(expected)["attributes"], ("http.route", "/users/{id}")],
    }
    assert set(vars(got)) == set(vars(expected))
    context, want = got.get_span_context(), expected.get_span_context()
    assert context is not None and want is not None
    assert type(context) is type(want) and context.is_valid and context.trace_flags == want.trace_flags
    assert (context.trace_state, context.is_remote) == (want.trace_state, want.is_remote)
    assert got.parent is None and got.start_time is not None and got.end_time is not None


def test_root_span_takes_an_adopted_trace_id() -> None:
    _, lean, _ = _root_pipeline()
    with adopting("0" * 31 + "9"):
        span = lean.start_root_span("GET", SpanKind.SERVER, {})
    assert span is not None and span.get_span_context().trace_id == 9
    span.end()


def test_root_span_takes_the_trace_id_given_to_adopt_in_place_of_the_context_variable() -> None:
    """``adopted`` is what ``adopt`` would be set to: the given id, else (0) a random one, whatever
    the variable holds."""
    _, lean, _ = _root_pipeline()
    with adopting("0" * 31 + "9"):
        given = lean.start_root_span("GET", SpanKind.SERVER, {}, 7)
        drawn = lean.start_root_span("GET", SpanKind.SERVER, {}, 0)
    assert given is not None and given.get_span_context().trace_id == 7
    assert drawn is not None and drawn.get_span_context().trace_id not in (0, 7, 9)
    assert drawn.get_span_context().is_valid
    given.end()
    drawn.end()


def test_root_span_calls_processors_on_start_unless_the_sole_one_is_the_batch() -> None:
    started: list[trace.Span] = []

    class Starts(SpanProcessor):
        def on_start(self, span: trace.Span, parent_context: Context | None = None) -> None:
            started.append(span)

    _, lean, _ = _root_pipeline()
    lean.sdk.span_processor.add_span_processor(Starts())  # type: ignore[attr-defined]
    span = lean.start_root_span("GET", SpanKind.SERVER, {})
    assert span is not None and started == [span]
    span.end()


class _OwnRatio(TraceIdRatioBased):
    """A sampler of the application's own (here: the SDK's ratio, subclassed): asked, never assumed."""


@pytest.mark.parametrize(
    "options",
    [
        {"sampler": _OwnRatio(0.5)},
        {"sampler": ParentBased(_OwnRatio(0.5))},
        {"id_generator": RandomIdGenerator()},
        {"span_limits": SpanLimits(max_span_attribute_length=4)},
        {"span_limits": SpanLimits(max_span_attributes=2)},
    ],
    ids=["own_sampler", "parentbased_own", "other_ids", "value_length_limit", "count_limit"],
)
def test_root_span_declines_what_it_cannot_be_sure_of(options: dict[str, Any]) -> None:
    ids = options.pop("id_generator", KernelIdGenerator())
    _, lean, exporter = _pipeline(id_generator=ids, **options)
    assert lean.start_root_span("GET", SpanKind.SERVER, dict(_ROOT_ATTRIBUTES)) is None
    assert exporter.get_finished_spans() == ()
    # the middleware asks only a tracer that makes root spans (an unsampled request builds no attributes)
    assert lean.samples_roots is (
        "span_limits" in options and options["span_limits"].max_span_attribute_length is None
    )


def test_root_span_follows_the_tracer_config_when_it_changes() -> None:
    from opentelemetry.sdk.trace import _TracerConfig

    sdk, lean, exporter = _pipeline(id_generator=KernelIdGenerator())
    assert lean._reads_config  # the SDK's _is_enabled() reads its config: read here directly
    sdk._set_tracer_config(_TracerConfig(is_enabled=False))  # type: ignore[attr-defined]
    assert lean.start_root_span("GET", SpanKind.SERVER, dict(_ROOT_ATTRIBUTES)) is None
    sdk._set_tracer_config(_TracerConfig(is_enabled=True))  # type: ignore[attr-defined]
    span = lean.start_root_span("GET", SpanKind.SERVER, dict(_ROOT_ATTRIBUTES))
    assert span is not None
    span.end()
    assert len(exporter.get_finished_spans()) == 1


_ROOT_SAMPLERS = [
    ALWAYS_OFF,
    ParentBased(ALWAYS_OFF),
    TraceIdRatioBased(0.5),
    ParentBased(TraceIdRatioBased(0.25)),
    TraceIdRatioBased(0.0),
    TraceIdRatioBased(1.0),
]


@pytest.mark.parametrize(
    "sampler",
    _ROOT_SAMPLERS,
    ids=["off", "parentbased_off", "ratio", "parentbased_ratio", "ratio_0", "ratio_1"],
)
def test_root_span_decides_as_the_sdks_sampler_does(sampler: Sampler) -> None:
    """Unsampled roots are the SDK's non-recording span (same context); sampled ones the same spans."""
    import random

    sdk, lean, exporter = _root_pipeline(sampler=sampler)
    assert lean.samples_roots
    root = sampler._root if isinstance(sampler, ParentBased) else sampler
    bound = getattr(root, "bound", 0)
    rng = random.Random(16)
    trace_ids = [rng.getrandbits(128) for _ in range(300)]
    trace_ids += [(0xAB << 64) | low for low in (bound - 1, bound, bound + 1) if 0 <= low < 1 << 64]
    decided = set()
    for trace_id in trace_ids:
        with adopting(format(trace_id, "032x")):
            want = _sdk_root(sdk)
        got = lean.start_root_span("GET", SpanKind.SERVER, {}, trace_id)
        assert got is not None
        if isinstance(got, LeanSpan):
            got.set_trusted(dict(_ROOT_ATTRIBUTES))
        assert (type(got), got.is_recording()) == (
            (LeanSpan, True) if want.is_recording() else (trace.NonRecordingSpan, False)
        )
        context, wanted = got.get_span_context(), want.get_span_context()
        assert (context.trace_id, context.trace_flags, context.trace_state, context.is_remote) == (
            wanted.trace_id,
            wanted.trace_flags,
            wanted.trace_state,
            wanted.is_remote,
        )
        assert context.is_valid and type(context) is type(wanted)
        decided.add(want.is_recording())
        want.end()
        got.end()
    if isinstance(root, TraceIdRatioBased) and 0 < root.rate < 1:
        assert decided == {True, False}  # both decisions were compared
    finished = exporter.get_finished_spans()
    assert [_view(s) for s in finished[1::2]] == [_view(s) for s in finished[::2]]
