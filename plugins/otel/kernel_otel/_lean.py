"""A cheaper span path for the plugin's own instrumentation, in the same TracerProvider.

The SDK's ``Span`` validates every attribute on its way in (about a third of a span's cost), and
builds bounded containers for attributes, events and links whether or not they are used. The
kernel's instrumentation builds its attributes itself, from values that are already valid
(``str``/``int``), so :class:`KernelTracer` starts :class:`LeanSpan` objects: SDK spans (the same
class hierarchy, processors, sampler, id generator, resource and scope as the SDK tracer's) whose
:meth:`LeanSpan.set_trusted` writes attributes without validation, and whose events and links
containers are made when first used. Anything else a caller does to the span -- ``set_attribute``,
``add_event``, ``record_exception``, ``set_status`` -- is the SDK's own code, with its validation
and limits. Span processors and exporters see the same spans, field for field.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterator, Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util import BoundedList as _BoundedList
from opentelemetry.trace import SpanKind, TraceFlags
from opentelemetry.trace.span import DEFAULT_TRACE_STATE, SpanContext
from opentelemetry.util import types
from opentelemetry.util._decorator import _agnosticcontextmanager

from . import _batch
from ._batch import KernelBatchSpanProcessor
from ._ids import KernelIdGenerator, adopt
from ._spans import CONTEXT_IS_TUPLE as CONTEXT_IS_TUPLE

_log = logging.getLogger(sdk_trace.__name__)  # the SDK span's warnings, under its logger

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_DEFAULT = TraceFlags(TraceFlags.DEFAULT)
_SAMPLED_RANDOM = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
_DEFAULT_RANDOM = TraceFlags(TraceFlags.DEFAULT | TraceFlags.RANDOM_TRACE_ID)
_UNSET = trace_api.Status(trace_api.StatusCode.UNSET)
_NONE: tuple[Any, ...] = ()
_new_readable = object.__new__
_new_context = tuple.__new__
_MAX_TRACE_ID = (1 << 128) - 1
_SAMPLE = Decision.RECORD_AND_SAMPLE
_DROP = Decision.DROP
_EMPTY = context_api.Context()
_new_non_recording = trace_api.NonRecordingSpan
_Link = trace_api.Link
_last_sole: tuple[Any, Any] = (None, None)
"""The processors tuple :func:`_sole_batch` last looked at and its answer (held: its id stays unique)."""


class _NoProcessor:
    """Where a lean span goes when the provider has no span processor (exporter ``none``): nowhere."""

    __slots__ = ()

    def on_end(self, span: object) -> None:
        """Nothing: no processor would see the span (nor the snapshot the SDK would make for them)."""


_NOBODY = _NoProcessor()


def _sole_batch(active: Any) -> KernelBatchSpanProcessor | _NoProcessor | None:
    """The provider's only span processor when it is a fast :class:`KernelBatchSpanProcessor`;
    :data:`_NOBODY` when it has none (a span's start and end then call nothing); else None.

    ``active`` is the provider's composite processor; its tuple of processors is replaced when
    one is added, so a span ending after that reaches every processor the SDK way.
    """
    global _last_sole
    processors = getattr(active, "_span_processors", None)
    last = _last_sole  # one read: another thread may replace it
    if processors is last[0]:
        return last[1]  # type: ignore[no-any-return]
    sole: KernelBatchSpanProcessor | _NoProcessor | None = None
    if (
        type(active) is sdk_trace.SynchronousMultiSpanProcessor
        and type(processors) is tuple
        and len(processors) == 1
        and type(processors[0]) is KernelBatchSpanProcessor
        and processors[0].fast
    ):
        sole = processors[0]
    elif type(active) is sdk_trace.SynchronousMultiSpanProcessor and processors == ():
        sole = _NOBODY
    _last_sole = (processors, sole)
    return sole


class LeanSpan(sdk_trace.Span):
    """An SDK span whose attributes start as a plain dict of trusted values.

    A caller's ``set_attribute(s)`` turns them into the SDK's ``BoundedAttributes`` first, so
    from then on every write is validated and limited exactly as on an SDK span.
    """

    # fields every span starts with: read from the class until set on the span
    _end_time: int | None = None
    _status = _UNSET
    _trace_config = None
    _events: Any = _NONE
    _links: Any = _NONE

    def __init__(
        self,
        name: str,
        context: trace_api.SpanContext,
        parent: trace_api.SpanContext | None,
        tracer: sdk_trace.Tracer,
        kind: SpanKind,
        attributes: types.Attributes,
        links: Sequence[trace_api.Link],
        record_exception: bool,
        set_status_on_exception: bool,
        record_end_metrics: Any,
        start_time: int | None,
    ) -> None:
        # deliberately not the SDK's __init__: the same fields, set directly
        limits = tracer._span_limits
        self._name = name
        self._context = context
        self._kind = kind
        self._instrumentation_info = tracer.instrumentation_info
        self._instrumentation_scope = tracer._instrumentation_scope
        self._parent = parent
        self._start_time = start_time if start_time is not None else time_ns()
        self._resource = tracer.resource
        self._sampler = tracer.sampler
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        self._span_processor = tracer.span_processor
        self._limits = limits
        self._lock = threading.Lock()
        self._attributes: Any = {}
        if attributes:  # the sampler's (the start attributes): validated as the SDK does
            self._attributes = BoundedAttributes(
                limits.max_span_attributes,
                attributes,
                immutable=False,
                max_value_len=limits.max_span_attribute_length,
            )
        if links:
            self._links = self._new_links(links)
        self._record_end_metrics = record_end_metrics

    def _bounded(self) -> BoundedAttributes:
        """The attributes as the SDK keeps them (made from the trusted dict on first need)."""
        attributes = self._attributes
        if type(attributes) is dict:
            limits = self._limits
            attributes = self._attributes = BoundedAttributes(
                limits.max_span_attributes,
                attributes,
                immutable=self._end_time is not None,
                max_value_len=limits.max_span_attribute_length,
            )
        return attributes  # type: ignore[no-any-return]

    def set_trusted(self, attributes: Mapping[str, str | int]) -> None:
        """Set attributes whose keys are non-empty strings and values ``str``/``int``/``float``/``bool``.

        No validation when the span's limits cannot apply to them; otherwise the SDK's path.
        """
        current = self._attributes
        limits = self._limits
        maxlen = limits.max_span_attributes
        if (
            type(current) is dict
            and limits.max_span_attribute_length is None
            and (maxlen is None or len(current) + len(attributes) <= maxlen)
            and self._end_time is None
        ):
            if current.keys().isdisjoint(attributes):
                current.update(attributes)
                return
            for key, value in attributes.items():
                if key in current:  # as the SDK does: a set key moves to the end
                    del current[key]
                current[key] = value
            return
        self.set_attributes(attributes)

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        """The SDK's ``set_attributes``, validated and limited (on ``BoundedAttributes`` from now on)."""
        self._bounded()
        super().set_attributes(attributes)

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        """The SDK's ``set_attribute``, validated and limited (on ``BoundedAttributes`` from now on)."""
        self._bounded()
        super().set_attribute(key, value)

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        """The SDK's ``add_event``, the events container made on first use."""
        with self._lock:
            if self._events is _NONE:
                self._events = self._new_events()  # type: ignore[no-untyped-call]
        super().add_event(name, attributes, timestamp)

    def add_link(self, context: trace_api.SpanContext, attributes: types.Attributes = None) -> None:
        """The SDK's ``add_link``, the links container made on first use."""
        with self._lock:
            if self._links is _NONE:
                self._links = self._new_links(())
        super().add_link(context, attributes)

    def update_name(self, name: str) -> None:
        """Rename the span unless it has ended (then warn, as the SDK does)."""
        # the SDK's, without its decorator's extra call; acquire/release rather than ``with``, which
        # makes two bound methods per use
        lock = self._lock
        lock.acquire()
        try:
            if self._end_time is None:
                self._name = name
                return
        finally:
            lock.release()
        _log.warning("Tried calling %s on an ended span.", "update_name")

    def end(self, end_time: int | None = None) -> None:
        """End the span (once; again only warns) and hand it to the span processors."""
        lock = self._lock  # as in update_name
        lock.acquire()
        try:
            if self._end_time is not None:
                _log.warning("Calling end() on an ended span.")
                return
            self._end_time = end_time if end_time is not None else time_ns()
            if type(self._attributes) is not dict:
                self._attributes._immutable = True
        finally:
            lock.release()
        if self._record_end_metrics:
            self._record_end_metrics()
        processor = self._span_processor
        last = _last_sole  # _sole_batch(processor), its remembered answer read here
        sole = last[1] if getattr(processor, "_span_processors", None) is last[0] else _sole_batch(processor)
        if sole is not None:  # its _on_ending does nothing; the ended span itself is queued (or none is)
            sole.on_end(self)
            return
        processor._on_ending(self)
        processor.on_end(self._readable_span())

    def finish(self, name: str | None, attributes: Mapping[str, str | int]) -> None:
        """``update_name(name)`` (unless None), ``set_trusted(attributes)`` and ``end()``, in one step
        when the attributes are new keys the limits cannot apply to (a request's closing attributes)."""
        current = self._attributes
        limits = self._limits
        maxlen = limits.max_span_attributes
        if (
            type(current) is dict
            and limits.max_span_attribute_length is None
            and (maxlen is None or len(current) + len(attributes) <= maxlen)
            and current.keys().isdisjoint(attributes)
        ) and self._close(name, attributes):
            # end()'s hand-over to the processors, inlined (a request's last step)
            if self._record_end_metrics:
                self._record_end_metrics()
            processor = self._span_processor
            last = _last_sole
            sole = (
                last[1] if getattr(processor, "_span_processors", None) is last[0] else _sole_batch(processor)
            )
            if sole is not None:
                sole.on_end(self)
                return
            processor._on_ending(self)
            processor.on_end(self._readable_span())
            return
        if name is not None:
            self.update_name(name)
        self.set_trusted(attributes)
        self.end()

    def _close(self, name: str | None, attributes: Mapping[str, str | int]) -> bool:
        """Rename (unless None), add ``attributes`` to the trusted dict and end, under the span's
        lock; False (nothing done) when it had ended already. The processors are not told."""
        lock = self._lock  # as in update_name
        lock.acquire()
        try:
            if self._end_time is not None:
                return False
            if name is not None:
                self._name = name
            self._attributes.update(attributes)
            self._end_time = time_ns()
            return True
        finally:
            lock.release()

    def _readable_span(self) -> sdk_trace.ReadableSpan:
        """The SDK's snapshot of the ended span (its ``ReadableSpan``), its fields set in one step."""
        snapshot = _new_readable(sdk_trace.ReadableSpan)
        snapshot.__dict__ = {
            "_name": self._name,
            "_context": self._context,
            "_kind": self._kind,
            "_instrumentation_info": self._instrumentation_info,
            "_instrumentation_scope": self._instrumentation_scope,
            "_parent": self._parent,
            "_start_time": self._start_time,
            "_end_time": self._end_time,
            "_attributes": self._attributes,
            "_events": self._events,
            "_links": self._links,
            "_resource": self._resource,
            "_status": self._status,
        }
        return snapshot


_batch._lean_type = LeanSpan  # what KernelBatchSpanProcessor may queue encoded


def _decide(
    sampler: Sampler,
    context: context_api.Context | None,
    parent: trace_api.SpanContext | None,
    trace_id: int,
    name: str,
    kind: SpanKind,
    attributes: types.Attributes,
    links: Sequence[trace_api.Link],
) -> tuple[Decision, types.Attributes, trace_api.TraceState | None]:
    """``sampler.should_sample(...)``: its decision, the span's attributes and trace state.

    ``parent`` is the valid parent span context in ``context``, or None. The SDK's samplers
    ``ParentBased`` and ``ALWAYS_ON``/``ALWAYS_OFF`` are decided here as their own code decides
    (without making a ``SamplingResult``); any other sampler is asked.
    """
    if type(sampler) is ParentBased:
        if parent is None:
            sampler = sampler._root
        elif parent.is_remote:
            sampled = parent.trace_flags.sampled
            sampler = sampler._remote_parent_sampled if sampled else sampler._remote_parent_not_sampled
        else:
            sampled = parent.trace_flags.sampled
            sampler = sampler._local_parent_sampled if sampled else sampler._local_parent_not_sampled
    if type(sampler) is StaticSampler:
        decision = sampler._decision
        trace_state = parent.trace_state if parent is not None else None
        return decision, None if decision is _DROP else attributes, trace_state
    result = sampler.should_sample(context, trace_id, name, kind, attributes, links)
    return result.decision, result.attributes, result.trace_state


_ALL_ROOTS = 1 << 64
"""The bound of a root sampler that samples every trace id (its low 64 bits are always below it)."""
_LOW64 = TraceIdRatioBased.TRACE_ID_LIMIT


def _ratio_bound(sampler: Sampler) -> int | None:
    """``sampler``'s bound when it is the SDK's ``TraceIdRatioBased`` deciding a root span as its code
    does today: sampled (attributes kept) iff the trace id's low 64 bits are below the bound, dropped
    (no attributes) otherwise, no trace state; checked on ids at and around the bound. Else None."""
    if type(sampler) is not TraceIdRatioBased:
        return None
    bound = sampler.bound
    attributes = {"probe": 1}
    for low in {0, bound - 1, bound, bound + 1, _LOW64}:
        if not 0 <= low <= _LOW64:
            continue
        result = sampler.should_sample(None, (0x5EED << 64) | low, "probe", SpanKind.INTERNAL, attributes, ())
        sampled = low < bound
        if (
            result.decision is not (_SAMPLE if sampled else _DROP)
            or dict(result.attributes or {}) != (attributes if sampled else {})
            or (result.trace_state is not None and len(result.trace_state) > 0)
        ):
            return None
    return bound


_Fields = tuple[Any, Any, Any, Any, Any, Any]
"""The fields a lean span takes from its SDK tracer: instrumentation info and scope, resource,
sampler, span processor, span limits."""


def _lean_fields(sdk: sdk_trace.Tracer) -> _Fields | None:
    """What :func:`_new_lean_span` copies from ``sdk``, when the one-step starts apply to it; else None.

    They apply when a span context is the tuple this module builds, the SDK tracer's ids are the
    plugin's, its span metrics are off and its limits cannot apply to trusted attributes. (An SDK
    tracer's sampler, ids, metrics, limits and processor are set once, when the provider makes it.)
    """
    limits = sdk._span_limits
    if not (
        CONTEXT_IS_TUPLE
        and type(sdk.id_generator) is KernelIdGenerator
        and type(sdk._tracer_metrics) is NoOpTracerMetrics
        and limits.max_span_attribute_length is None
    ):
        return None
    scope = sdk._instrumentation_scope
    return (sdk.instrumentation_info, scope, sdk.resource, sdk.sampler, sdk.span_processor, limits)


def _root_bound(sampler: Sampler) -> int | None:
    """A root span is sampled iff its trace id's low 64 bits are below this, when ``sampler``'s root
    decision (its own, or ``ParentBased``'s root's) rests on the trace id alone: ``ALWAYS_ON``,
    ``ALWAYS_OFF``, ``TraceIdRatioBased``. Else None."""
    root = sampler._root if type(sampler) is ParentBased else sampler
    if type(root) is StaticSampler:
        return _ALL_ROOTS if root._decision is _SAMPLE else 0
    return _ratio_bound(root)


def _remote_decisions(sampler: Sampler) -> tuple[bool, bool] | None:
    """Whether a child of a remote parent is sampled when the parent is, and when it is not; None
    unless ``sampler`` decides that alone (``ALWAYS_ON``/``ALWAYS_OFF``, or ``ParentBased`` with
    those for remote parents)."""
    if type(sampler) is ParentBased:
        delegates = (sampler._remote_parent_sampled, sampler._remote_parent_not_sampled)
    else:
        delegates = (sampler, sampler)
    if not all(type(delegate) is StaticSampler for delegate in delegates):
        return None
    return delegates[0]._decision is _SAMPLE, delegates[1]._decision is _SAMPLE  # type: ignore[attr-defined]


def _new_lean_span(
    name: str,
    context: SpanContext,
    kind: SpanKind,
    parent: SpanContext | None,
    fields: _Fields,
    attributes: dict[str, Any],
    links: Any = None,
) -> LeanSpan:
    """A started :class:`LeanSpan` whose attribute dict is ``attributes`` (``links``: its link
    container, if any), its fields set as ``LeanSpan.__init__`` sets them, in its order (instances
    then share their keys); its processors not yet told."""
    span: LeanSpan = _new_readable(LeanSpan)
    span._name = name
    span._context = context
    span._kind = kind
    span._instrumentation_info = fields[0]
    span._instrumentation_scope = fields[1]
    span._parent = parent
    span._start_time = time_ns()
    span._resource = fields[2]
    span._sampler = fields[3]
    span._record_exception = True
    span._set_status_on_exception = True
    span._span_processor = fields[4]
    span._limits = fields[5]
    span._lock = threading.Lock()
    span._attributes = attributes
    if links is not None:
        span._links = links
    span._record_end_metrics = None
    return span


class RootLane:
    """What a caller needs to start and end root spans of a :class:`KernelTracer` in line.

    For a tracer whose root decision rests on the trace id (:func:`_root_bound`) and whose provider's
    only span processor is the plugin's batch processor with an encoder for the tracer's spans (or
    no processor at all): a root span is then started from two id draws and ended by
    :func:`end_root`, which queues its encoded bytes itself. :meth:`applies` says, per span,
    whether that still holds (the tracer enabled, the provider's processors unchanged).
    """

    __slots__ = (
        "active",
        "bound",
        "encode",
        "fields",
        "max_attributes",
        "processors",
        "sdk",
        "sole",
    )

    def __init__(
        self, tracer: KernelTracer, sole: KernelBatchSpanProcessor | _NoProcessor, encode: Any
    ) -> None:
        fields = tracer._fields
        assert fields is not None
        self.sdk = tracer.sdk
        self.fields = fields
        self.bound = tracer._root_bound
        """A root span is sampled iff its trace id's low 64 bits are below this."""
        self.max_attributes: int | None = tracer._root_max
        self.active = fields[4]
        self.processors = self.active._span_processors
        self.sole = sole
        self.encode = encode

    def applies(self) -> bool:
        """Whether a root span may be started and ended through this lane now."""
        return self.sdk._tracer_config.is_enabled and self.active._span_processors is self.processors


def root_lane(tracer: trace_api.Tracer | None, attributes: int) -> RootLane | None:
    """``tracer``'s :class:`RootLane` for root spans of up to ``attributes`` attributes, or None."""
    if type(tracer) is not KernelTracer or not tracer.samples_roots or not tracer._reads_config:
        return None
    fields = tracer._fields
    maxlen = tracer._root_max
    if fields is None or (maxlen is not None and maxlen < attributes):
        return None
    sole = _sole_batch(fields[4])
    if sole is None:
        return None
    encode = None
    if type(sole) is KernelBatchSpanProcessor:
        lean_encoder = getattr(sole.exporter, "lean_encoder", None)
        if sole.encode is None or lean_encoder is None:
            return None
        encode = lean_encoder(fields[2], fields[1])  # the tracer's resource and scope
        if encode is None:
            return None
    return RootLane(tracer, sole, encode)


def end_root(lane: RootLane, span: LeanSpan, name: str | None, attributes: Mapping[str, str | int]) -> None:
    """``span.finish(name, attributes)`` for a span ``lane`` started (:meth:`RootLane.applies` held),
    queueing it encoded as the batch processor would (``KernelBatchSpanProcessor.on_end``)."""
    current = span._attributes
    maxlen = lane.max_attributes
    if (
        type(current) is not dict
        or (maxlen is not None and len(current) + len(attributes) > maxlen)
        or not current.keys().isdisjoint(attributes)
    ):
        span.finish(name, attributes)
        return
    if not span._close(name, attributes):  # ended already: the SDK's warnings, from finish
        span.finish(name, attributes)
        return
    if lane.active._span_processors is not lane.processors:  # a processor was added meanwhile
        processor = span._span_processor
        processor._on_ending(span)
        processor.on_end(span._readable_span())
        return
    sole = lane.sole
    if type(sole) is KernelBatchSpanProcessor:  # else no span processor
        sole.enqueue(span, lane.encode)


def _config_is_enabled(self: Any) -> bool:
    return self._tracer_config.is_enabled  # type: ignore[no-any-return]


def _reads_config(sdk: sdk_trace.Tracer) -> bool:
    """Whether ``sdk._is_enabled()`` returns ``sdk._tracer_config.is_enabled`` (read directly then)."""
    method = getattr(type(sdk), "_is_enabled", None)
    code, ours = getattr(method, "__code__", None), _config_is_enabled.__code__
    return (
        code is not None
        and hasattr(sdk, "_tracer_config")
        and (code.co_code, code.co_names) == (ours.co_code, ours.co_names)
    )


class KernelTracer(trace_api.Tracer):
    """Starts :class:`LeanSpan` objects where ``sdk`` (an SDK tracer) starts its own spans.

    Sampling, ids, trace flags, processors' ``on_start``/``on_end``, the tracer's own metrics:
    the SDK tracer's, step for step (``opentelemetry.sdk.trace.Tracer.start_span``).
    """

    def __init__(self, sdk: sdk_trace.Tracer) -> None:
        self.sdk = sdk
        self._fields = _lean_fields(sdk)
        bound = _root_bound(sdk.sampler) if self._fields is not None else None
        self.samples_roots = bound is not None
        """Whether :meth:`start_root_span` starts root spans (else it always returns None)."""
        self._root_bound = bound if bound is not None else 0
        self.samples_every_root = bound == _ALL_ROOTS
        """Whether every root span :meth:`start_root_span` starts is sampled (a :class:`LeanSpan`)."""
        self._root_max = sdk._span_limits.max_span_attributes
        self._reads_config = _reads_config(sdk)
        self._child_decisions = _remote_decisions(sdk.sampler) if self._fields is not None else None
        limits = sdk._span_limits
        self._link_attributes = BoundedAttributes(
            limits.max_link_attributes, None, max_value_len=limits.max_attribute_length, immutable=True
        )
        """A link's attributes as the SDK sets them on a link without any (immutable: one for all)."""
        self.starts_remote_children = self._child_decisions is not None
        """Whether :meth:`start_remote_child` starts spans (else it always returns None)."""

    def start_root_span(
        self, name: str, kind: SpanKind, attributes: dict[str, Any], adopted: int | None = None
    ) -> LeanSpan | trace_api.NonRecordingSpan | None:
        """A root span with ``attributes`` (trusted, kept as given), or None when that is not sure.

        The same span as ``start_span(name, Context(), kind)`` followed by
        ``set_trusted(attributes)`` -- ids drawn the same way, sampled or not as the sampler
        decides, processors' ``on_start`` called -- in fewer steps: a :class:`LeanSpan`, or the
        non-recording span of an unsampled trace. None (nothing started) when the sampler, ids,
        metrics or limits are not ones it knows (:func:`_lean_fields`, :func:`_root_bound`), or the
        attributes are more than the limit allows. ``attributes`` becomes the span's own dict.
        ``adopted``, when given, is the trace id to adopt (0: none), as if started with ``adopt`` set
        to it (without the context variable's set and reset).
        """
        sdk = self.sdk
        if not self.samples_roots or not (
            sdk._tracer_config.is_enabled if self._reads_config else sdk._is_enabled()
        ):
            return None
        maxlen = self._root_max
        if maxlen is not None and len(attributes) > maxlen:
            return None
        if adopted is None:
            adopted = adopt.get()
        trace_id = adopted or random.getrandbits(128) or self.sdk.id_generator.generate_trace_id()
        span_id = random.getrandbits(64) or self.sdk.id_generator.generate_span_id()
        valid = 0 < trace_id <= _MAX_TRACE_ID  # an adopted id is the caller's
        if trace_id & _LOW64 >= self._root_bound:  # not sampled: the SDK's non-recording span
            return _new_non_recording(
                _new_context(
                    SpanContext, (trace_id, span_id, False, _DEFAULT_RANDOM, DEFAULT_TRACE_STATE, valid)
                )
            )
        context = _new_context(
            SpanContext, (trace_id, span_id, False, _SAMPLED_RANDOM, DEFAULT_TRACE_STATE, valid)
        )
        span = _new_lean_span(name, context, kind, None, self._fields, attributes)  # type: ignore[arg-type]
        processor = span._span_processor
        last = _last_sole  # _sole_batch(processor), its remembered answer read here
        sole = last[1] if getattr(processor, "_span_processors", None) is last[0] else _sole_batch(processor)
        if sole is None:  # a batch processor's on_start does nothing (and no processor's none)
            processor.on_start(span, parent_context=_EMPTY)
        return span

    def start_remote_child(
        self,
        name: str,
        kind: SpanKind,
        parent: SpanContext,
        attributes: dict[str, Any],
        linked: bool = False,
    ) -> LeanSpan | trace_api.NonRecordingSpan | None:
        """A child of ``parent`` (a valid remote span context: a caller's or a producer's), linked to
        it when ``linked``, with ``attributes`` (trusted, kept as given); None when that is not sure.

        The same span as ``start_span(name, set_span_in_context(NonRecordingSpan(parent)), kind,
        links=[Link(parent)] if linked else ())`` followed by ``set_trusted(attributes)`` -- the
        sampler's decision for a remote parent, a span id drawn the same way, the parent's trace
        state, the link through the SDK's own link container, processors' ``on_start`` called --
        in fewer steps; a non-recording span when not sampled. None (nothing started) unless the
        sampler decides from the parent alone (:func:`_remote_decisions`), or when the
        attributes are more than the limit allows.
        """
        decisions = self._child_decisions
        sdk = self.sdk
        if decisions is None or not (
            sdk._tracer_config.is_enabled if self._reads_config else sdk._is_enabled()
        ):
            return None
        maxlen = self._root_max
        if maxlen is not None and len(attributes) > maxlen:
            return None
        # (trace_id, span_id, is_remote, flags, state, is_valid)
        trace_id, flags, state = parent[0], parent[3], parent[4]
        span_id = random.getrandbits(64) or sdk.id_generator.generate_span_id()
        if not decisions[0 if flags & 1 else 1]:  # not sampled: the SDK's non-recording span
            unsampled = _DEFAULT_RANDOM if flags & 2 else _DEFAULT
            return _new_non_recording(
                _new_context(SpanContext, (trace_id, span_id, False, unsampled, state, True))
            )
        sampled = _SAMPLED_RANDOM if flags & 2 else _SAMPLED
        context = _new_context(SpanContext, (trace_id, span_id, False, sampled, state, True))
        links: _BoundedList[trace_api.Link] | None = None
        if linked:  # span._new_links((Link(parent),)): the SDK's container, its empty attributes shared
            links = _BoundedList(sdk._span_limits.max_links)
            links.append(_Link(parent, self._link_attributes))
        span = _new_lean_span(name, context, kind, parent, self._fields, attributes, links)  # type: ignore[arg-type]
        processor = span._span_processor
        last = _last_sole  # _sole_batch(processor), its remembered answer read here
        sole = last[1] if getattr(processor, "_span_processors", None) is last[0] else _sole_batch(processor)
        if sole is None:  # a batch processor's on_start does nothing (and no processor's none)
            parent_context = trace_api.set_span_in_context(_new_non_recording(parent), _EMPTY)
            processor.on_start(span, parent_context=parent_context)
        return span

    def start_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace_api.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        """A :class:`LeanSpan` (or a non-recording span) as the SDK tracer's ``start_span`` would start it."""
        sdk = self.sdk
        links = links or ()
        parent: trace_api.SpanContext | None = trace_api.get_current_span(context).get_span_context()
        if parent is not None and not isinstance(parent, trace_api.SpanContext):
            raise TypeError("parent_span_context must be a SpanContext or None.")
        if not sdk._is_enabled():
            return trace_api.NonRecordingSpan(context=parent)  # type: ignore[arg-type]  # as the SDK does
        ids = sdk.id_generator
        own_ids = type(ids) is KernelIdGenerator  # the plugin's: its draws, made here without its calls
        if parent is None or not parent.is_valid:
            parent = None
            if own_ids:  # a zero (invalid) id is drawn again, by the generator itself
                trace_id, random_id = adopt.get() or random.getrandbits(128) or ids.generate_trace_id(), True
            else:
                trace_id = ids.generate_trace_id()
                random_id = ids.is_trace_id_random()
        else:
            trace_id = parent.trace_id
            random_id = parent.trace_flags.random_trace_id
        decision, attributes, trace_state = _decide(
            sdk.sampler, context, parent, trace_id, name, kind, attributes, links
        )
        if decision is _SAMPLE:
            flags = _SAMPLED_RANDOM if random_id else _SAMPLED
        else:
            flags = _DEFAULT_RANDOM if random_id else _DEFAULT
        span_id = (random.getrandbits(64) or ids.generate_span_id()) if own_ids else ids.generate_span_id()
        span_context = trace_api.SpanContext(
            trace_id, span_id, is_remote=False, trace_flags=flags, trace_state=trace_state
        )
        metrics = sdk._tracer_metrics  # the SDK's own span metrics, when enabled
        record_end_metrics = None
        if type(metrics) is not NoOpTracerMetrics:
            record_end_metrics = metrics.start_span(parent, decision)
        if decision is _DROP:
            return trace_api.NonRecordingSpan(context=span_context)
        span = LeanSpan(
            name,
            span_context,
            parent,
            sdk,
            kind,
            attributes,
            links,
            record_exception,
            set_status_on_exception,
            record_end_metrics,
            start_time,
        )
        sdk.span_processor.on_start(span, parent_context=context)
        return span

    @_agnosticcontextmanager
    def start_as_current_span(
        self, name: str, *args: Any, end_on_exit: bool = True, **kwargs: Any
    ) -> Iterator[trace_api.Span]:
        """``start_span(name, ...)`` as the current span in the block (or the decorated call)."""
        span = self.start_span(name, *args, **kwargs)
        with trace_api.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=getattr(span, "_record_exception", True),
            set_status_on_exception=getattr(span, "_set_status_on_exception", True),
        ) as current:
            yield current


def lean_tracer(tracer: trace_api.Tracer) -> trace_api.Tracer:
    """``tracer`` starting lean spans when it is an SDK tracer (the same spans); else ``tracer``."""
    if type(tracer) is sdk_trace.Tracer:
        return KernelTracer(tracer)
    return tracer
