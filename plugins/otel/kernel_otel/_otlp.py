"""OTLP/HTTP span export with a faster encoding of the request body.

The OTLP exporter builds one protobuf object per span, attribute and value before serialising
them: about 300k instructions per HTTP server span, more than the span itself costs. Here the
``ExportTraceServiceRequest`` bytes are written directly (the protobuf wire format: tags, varints,
length-delimited fields), and the bytes of each attribute (key and value) are remembered, since
most repeat from span to span (method, route, status, host, service). The bytes are the
exporter's own, field for field (tested against it); everything else -- the HTTP client,
retries, TLS, compression, headers, the size limit, the exporter's metrics -- stays the
exporter's.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from ._lean import CONTEXT_IS_TUPLE, LeanSpan

try:
    from ._transport import use_plain_http
except ImportError:  # an exporter older than its pluggable HTTP transport: keep its own transport

    def use_plain_http(client: Any, endpoint: str, options: Mapping[str, Any]) -> bool:
        """Never: this exporter version has no transport to replace."""
        return False


_log = logging.getLogger(__name__)

_DOUBLE = struct.Struct("<d").pack
_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack
_INT64 = range(-(1 << 63), 1 << 63)
_CACHED_TYPES = (str, int, bool)  # not float: -0.0 == 0.0, and they encode apart
_BLOCK_TYPES = frozenset((str, int, bool))  # equal values of these types encode alike (not -0.0 and 0.0)
_CACHE_SIZE = 4096
_LAYOUT_SPANS = 256
"""How many spans a layout remembers (by their stable values: method, route, status, host...)."""
_REMOTE = 0x300  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK | SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_LOCAL = 0x100  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_SPAN_FLAGS = {True: b"\x85\x01" + _FIXED32(_REMOTE), False: b"\x85\x01" + _FIXED32(_LOCAL)}
_UNSET_STATUS = b"\x7a\x00"
_UNSET_CODE = StatusCode.UNSET
_NO_STATE = DEFAULT_TRACE_STATE  # a span context's trace state when it has none (a Python __len__ to test)
_IDS_TAGS = 0x0A10 << 208 | 0x1208 << 64  # trace_id (field 1, 16 bytes) and span_id (field 2, 8 bytes)
_PARENT_TAG = 0x2208 << 64  # parent_span_id (field 4, 8 bytes)
_TIMES = struct.Struct("<BQBQ").pack  # start and end time (fields 7 and 8, fixed64)
_KIND_BY_ID = {id(kind): kind.value for kind in SpanKind}  # SpanKind's hash is Python code
_UNSET = LeanSpan._status  # the status of every lean span until one is set
PER_MESSAGE = "messaging.message.id"
"""An attribute whose value differs on every span (the bus's event id): see :data:`VARYING`."""
VARYING = frozenset((PER_MESSAGE, "url.path", "url.query", "client.address", "user_agent.original"))
"""Attributes of the plugin's spans whose values vary from span to span (an event's id, a request's
path, query, client and user agent): a lean span's string value of one of these is encoded where
it is, each time, and never remembered. A span remembered with it would be used again only for
that value: with ``/users/{id}`` paths or many clients nearly every span would miss, be encoded
whole, and push the spans that do repeat out of the caches."""


def _prefixes(key: str) -> tuple[bytes, ...]:
    """A :data:`VARYING` attribute's field up to its value's UTF-8 bytes, by their length: the
    lengths for which every length in the field is one byte."""
    name = key.encode()
    head = bytes((0x0A, len(name))) + name + b"\x12"
    return tuple(
        bytes((0x4A, 6 + len(name) + size)) + head + bytes((size + 2, 0x0A, size))
        for size in range(max(0, 0x80 - 6 - len(name)))
    )


_PREFIXES = {key: _prefixes(key) for key in VARYING}


class _Layout:
    """A lean span's attribute keys (with its name, kind, remote parent): where the :data:`VARYING`
    values are among the attribute values, and the spans remembered by their other values."""

    __slots__ = ("plan", "spans", "stable", "varying")

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        keys = tuple(attributes)
        self.varying = tuple(i for i, key in enumerate(keys) if key in VARYING)
        """The positions of the varying values in ``tuple(attributes.values())``."""
        self.plan = tuple((i, _PREFIXES[keys[i]], len(_PREFIXES[keys[i]]), keys[i]) for i in self.varying)
        """Per varying value: its position, its field's starts by length (and how many), its key."""
        stable = [i for i in range(len(keys)) if i not in self.varying]
        self.stable: Callable[[tuple[Any, ...]], tuple[Any, ...]]
        """The other values, from all of them (a tuple)."""
        if not self.varying:
            self.stable = _same
        elif len(stable) > 1:
            self.stable = itemgetter(*stable)
        else:
            self.stable = _picker(stable)
        self.spans: dict[tuple[Any, ...], tuple[tuple[bytes, ...], tuple[tuple[int, type], ...]]] = {}
        """Stable values -> the span's bytes around its times and varying values, and type checks."""


def _add_varying(
    out: list[bytes],
    plan: tuple[tuple[int, tuple[bytes, ...], int, str], ...],
    values: tuple[Any, ...],
    parts: tuple[bytes, ...],
) -> bool:
    """Add each varying value's field and the remembered bytes after it to ``out`` (``plan``: the
    layout's); False when one is not a ``str`` (then the span is encoded field by field)."""
    after = 2
    for at, prefixes, limit, key in plan:
        value = values[at]
        if type(value) is not str:
            return False
        encoded = value.encode()
        size = len(encoded)
        if size < limit:  # every length in its field is one byte: its start is in the table
            out += (prefixes[size], encoded, parts[after])
        else:
            out += (_field(b"\x4a", _key_value(key, value)), parts[after])
        after += 1
    return True


def _same(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return values


def _picker(positions: list[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """``itemgetter(*positions)`` that always returns a tuple (for none or one position)."""
    return lambda values: tuple(values[i] for i in positions)


_SNAPSHOTS = frozenset((ReadableSpan, LeanSpan) if CONTEXT_IS_TUPLE else ())
"""Span types :meth:`Encoder.span` reads field by field: the SDK's snapshot and an ended lean span."""
_SPAN_TAG: list[bytes | None] = [bytes((0x12, n)) for n in range(0x80)] + [None] * (0x4000 - 0x80)
"""A span field's tag and length by the length (up to 16k), the two-byte lengths made when first seen."""


def _kind(kind: SpanKind) -> int:
    """``kind.value``, mostly through an id()-keyed map (SpanKind's hash is Python code)."""
    value = _KIND_BY_ID.get(id(kind))
    return kind.value if value is None else value


def _varint(n: int) -> bytes:
    if n < 0:  # int64: two's complement, ten bytes
        n += 1 << 64
    if n < 0x80:
        return bytes((n,))
    if n < 0x4000:  # a span's length
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    return tag + _varint(len(payload)) + payload


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` message (the body); raises on a value OTLP cannot carry."""
    if value is None:
        return b""
    kind = type(value)
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is str:
        return _field(b"\x0a", value.encode())
    if kind is int:
        if value not in _INT64:
            raise ValueError(f"integer {value} does not fit in int64")
        return b"\x18" + _varint(value)
    if kind is float:
        return b"\x21" + _DOUBLE(value)
    if kind is bytes:
        return _field(b"\x3a", value)
    return _any_subclass(value)


def _any_subclass(value: Any) -> bytes:
    """Values of other types, tested as the exporter tests them (a ``StrEnum`` member is a string)."""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, int):
        return _any_value(int(value))
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", bytes(value))
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(item)) for item in value))
    if isinstance(value, Mapping):
        pairs = b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items())
        return _field(b"\x32", pairs)
    raise ValueError(f"invalid type {type(value).__name__} of value {value!r}")


def _key_value(key: str, value: Any) -> bytes:
    return _field(b"\x0a", key.encode()) + _field(b"\x12", _any_value(value))


class Encoder:
    """Writes ``ExportTraceServiceRequest`` bytes; remembers the bytes of attributes it has seen."""

    def __init__(self) -> None:
        self._seen: dict[tuple[bytes, str, type, Any], bytes] = {}
        self._names: dict[tuple[str, int], bytes] = {}
        self._blocks: dict[bytes, dict[tuple[Any, ...], bytes]] = {}
        self._layouts: dict[tuple[Any, ...], _Layout] = {}

    def _attributes(self, tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
        """Each attribute as a ``KeyValue`` field ``tag``; one that cannot be encoded is logged, left out.

        A whole set of ``str``/``int``/``bool`` attributes seen before (keys, types and values: the
        HTTP span's of a route) is one lookup, with no Python-level loop.
        """
        if not attributes:
            return b""
        blocks = self._blocks.get(tag)
        if blocks is None:
            blocks = self._blocks[tag] = {}
        values = attributes.values()
        block = (*attributes, *values, *map(type, values))  # keys, values, their types: one flat tuple
        try:
            encoded = blocks.get(block)
        except TypeError:  # an unhashable value (a mapping): never remembered
            return self._each(tag, attributes)[0]
        if encoded is None:
            encoded, whole = self._each(tag, attributes)
            # one left out is logged again next time, as the exporter does
            if (
                whole
                and _BLOCK_TYPES.issuperset(block[2 * len(attributes) :])
                and VARYING.isdisjoint(attributes)
            ):
                if len(blocks) >= _CACHE_SIZE:
                    blocks.clear()
                blocks[block] = encoded
        return encoded

    def _each(self, tag: bytes, attributes: Mapping[str, Any]) -> tuple[bytes, bool]:
        """The attributes' fields, and whether every one of them could be encoded."""
        whole = True
        parts: list[bytes] = []
        seen = self._seen
        for key, value in attributes.items():
            cached = type(value) in _CACHED_TYPES and key not in VARYING
            memo = (tag, key, type(value), value) if cached else None
            encoded = seen.get(memo) if memo is not None else None
            if encoded is None:
                try:
                    encoded = _field(tag, _key_value(key, value))
                except Exception:  # as the exporter does: the span goes out without it
                    _log.exception("cannot encode attribute %s", key)
                    whole = False
                    continue
                if memo is not None:
                    if len(seen) >= _CACHE_SIZE:
                        seen.clear()
                    seen[memo] = encoded
            parts.append(encoded)
        return b"".join(parts), whole

    def span(self, span: ReadableSpan) -> bytes:
        """One ``Span`` message (the body)."""
        if type(span) in _SNAPSHOTS:  # the SDK's snapshot, or an ended lean span
            return self._snapshot(span)
        return self._any_span(span)

    def _snapshot(self, span: ReadableSpan) -> bytes:
        """:meth:`span` of the SDK's ``ReadableSpan``, reading its fields rather than its properties.

        A span context is read as the tuple it is (``_SNAPSHOTS`` is empty where it is not).
        """
        context = span._context
        if context is None or (context[4] is not _NO_STATE and context[4]):  # trace_state
            return self._any_span(span)
        parent = span._parent
        # trace_id and span_id fields with their tags, in one int-to-bytes step
        ids = (_IDS_TAGS | context[0] << 80 | context[1]).to_bytes(28, "big")
        if parent is not None:
            ids += (_PARENT_TAG | parent[1]).to_bytes(10, "big")
        attributes = span._attributes
        start, end = span._start_time, span._end_time
        if (
            span._status is _UNSET
            and type(attributes) is dict
            and start
            and end
            and not (span._events or span._links)
        ):
            # a lean span's usual form: its bytes but ids, times and varying values are remembered,
            # by its attribute keys (its layout) and then the other values
            remote = parent is not None and parent[2]
            layout = self._layouts.get((span._name, id(span._kind), remote, *attributes))
            if layout is None:
                layout = self._layout(span, attributes)
            values = tuple(attributes.values())
            try:
                remembered = layout.spans.get(layout.stable(values))
            except TypeError:  # an unhashable value (a mapping)
                return self._fields(span, ids)
            if remembered is not None:
                # Equal to a remembered str is a str (or a str subclass: the same bytes); equal to an
                # int or a bool may be another of int, bool, float: those positions' types must match.
                for at, kind in remembered[1]:
                    if type(values[at]) is not kind:
                        remembered = None
                        break
            if remembered is None:
                remembered = self._remember(span, layout, attributes)
            parts = remembered[0]
            times = _TIMES(0x39, start, 0x41, end)
            varying = layout.varying
            if not varying:
                return ids + parts[0] + times + parts[1]
            out = [ids, parts[0], times, parts[1]]
            if _add_varying(out, layout.plan, values, parts):
                return b"".join(out)
        return self._fields(span, ids)

    def _fields(self, span: ReadableSpan, ids: bytes) -> bytes:
        """:meth:`_snapshot` of any snapshot span, after its ``ids`` fields."""
        parent = span._parent
        attributes = span._attributes
        start, end = span._start_time, span._end_time
        out = [ids, self._name_and_kind(span._name, _kind(span._kind))]
        if start and end:
            out.append(_TIMES(0x39, start, 0x41, end))
        elif start:
            out.append(b"\x39" + _FIXED64(start))
        elif end:
            out.append(b"\x41" + _FIXED64(end))
        if attributes:
            out.append(self._attributes(b"\x4a", attributes))
        # BoundedAttributes counts them; a (lean span's) dict drops none: no failed attribute lookup
        dropped = 0 if type(attributes) is dict else getattr(attributes, "dropped", 0)
        if dropped:
            out.append(b"\x50" + _varint(dropped))
        if span._events or span._links:
            return self._any_tail(span, out)
        status = span._status
        if status is _UNSET or (status.status_code is _UNSET_CODE and not status.description):
            out.append(_UNSET_STATUS)
        else:
            out.append(self._status(status))
        out.append(_SPAN_FLAGS[parent is not None and parent[2]])  # is_remote
        return b"".join(out)

    def _layout(self, span: ReadableSpan, attributes: dict[str, Any]) -> _Layout:
        """The (remembered) :class:`_Layout` of a lean span with these attribute keys."""
        parent = span._parent
        layout = _Layout(attributes)
        layouts = self._layouts
        if len(layouts) >= _CACHE_SIZE:
            layouts.clear()
        layouts[span._name, id(span._kind), parent is not None and parent[2], *attributes] = layout
        return layout

    def _remember(
        self, span: ReadableSpan, layout: _Layout, attributes: dict[str, Any]
    ) -> tuple[tuple[bytes, ...], tuple[tuple[int, type], ...]]:
        """A lean span's bytes before its times (name, kind), then its attributes up to each varying
        value and after the last (with status and flags), and the positions and types of its values
        that are not strings. Remembered in ``layout`` by the other values when each of those is a
        ``str``/``int``/``bool`` that could be encoded.

        For a span with a dict of attributes, no events or links and an unset status.
        """
        parent = span._parent
        items = list(attributes.items())
        parts = [self._name_and_kind(span._name, _kind(span._kind))]
        whole = True
        begin = 0
        for at in (*layout.varying, len(items)):  # the stable attributes between varying ones
            encoded, complete = self._each(b"\x4a", dict(items[begin:at])) if at > begin else (b"", True)
            parts.append(encoded)
            whole = whole and complete
            begin = at + 1
        parts[-1] += _UNSET_STATUS + _SPAN_FLAGS[parent is not None and parent[2]]
        values = tuple(attributes.values())
        varying = set(layout.varying)
        checks = tuple(
            (i, type(value)) for i, value in enumerate(values) if i not in varying and type(value) is not str
        )
        remembered = (tuple(parts), checks)
        stable = layout.stable(values)
        if whole and _BLOCK_TYPES.issuperset(map(type, stable)):
            spans = layout.spans
            if len(spans) >= _LAYOUT_SPANS:
                spans.clear()
            spans[stable] = remembered
        return remembered

    def _any_tail(self, span: ReadableSpan, out: list[bytes]) -> bytes:
        """:meth:`_snapshot` from the events on: through the span's properties."""
        self._events_and_links(span, out)
        self._status_and_flags(span, out)
        return b"".join(out)

    def _any_span(self, span: ReadableSpan) -> bytes:
        """One ``Span`` message of any ``ReadableSpan``, through its public properties."""
        context = span.get_span_context()
        assert context is not None  # an SDK span always has one
        out = [
            b"\x0a\x10",
            context.trace_id.to_bytes(16, "big"),
            b"\x12\x08",
            context.span_id.to_bytes(8, "big"),
        ]
        if context.trace_state:
            state = ",".join(f"{k}={v}" for k, v in context.trace_state.items())
            out.append(_field(b"\x1a", state.encode()))
        parent = span.parent
        if parent:
            out += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
        out.append(self._name_and_kind(span.name, span.kind.value))
        if span.start_time:
            out.append(b"\x39" + _FIXED64(span.start_time))
        if span.end_time:
            out.append(b"\x41" + _FIXED64(span.end_time))
        out.append(self._attributes(b"\x4a", span.attributes))
        if span.dropped_attributes:
            out.append(b"\x50" + _varint(span.dropped_attributes))
        return self._any_tail(span, out)

    def _events_and_links(self, span: ReadableSpan, out: list[bytes]) -> None:
        out.extend(_field(b"\x5a", self._event(event)) for event in span.events)
        if span.dropped_events:
            out.append(b"\x60" + _varint(span.dropped_events))
        out.extend(_field(b"\x6a", self._link(link.context, link)) for link in span.links)
        if span.dropped_links:
            out.append(b"\x70" + _varint(span.dropped_links))

    def _status_and_flags(self, span: ReadableSpan, out: list[bytes]) -> None:
        status = span.status
        if status is not None:
            out.append(self._status(status))
        parent = span.parent
        out.append(_SPAN_FLAGS[parent is not None and parent.is_remote])

    @staticmethod
    def _status(status: Status) -> bytes:
        if status.description or status.status_code.value:
            body = _field(b"\x12", status.description.encode()) if status.description else b""
            if status.status_code.value:
                body += b"\x18" + _varint(status.status_code.value)
            return _field(b"\x7a", body)
        return _UNSET_STATUS

    def _name_and_kind(self, name: str, kind: int) -> bytes:
        """The span's name and kind fields (remembered: names repeat, ``GET /users/{id}``)."""
        encoded = self._names.get((name, kind))
        if encoded is None:
            # SpanKind INTERNAL=0 is SPAN_KIND_INTERNAL=1
            encoded = (_field(b"\x2a", name.encode()) if name else b"") + b"\x30" + _varint(kind + 1)
            if len(self._names) >= _CACHE_SIZE:
                self._names.clear()
            self._names[name, kind] = encoded
        return encoded

    def _event(self, event: Any) -> bytes:
        body = b"\x09" + _FIXED64(event.timestamp) if event.timestamp else b""
        if event.name:
            body += _field(b"\x12", event.name.encode())
        body += self._attributes(b"\x1a", event.attributes)
        if event.dropped_attributes:
            body += b"\x20" + _varint(event.dropped_attributes)
        return body

    def _link(self, context: SpanContext, link: Any) -> bytes:
        body = (
            b"\x0a\x10"
            + context.trace_id.to_bytes(16, "big")
            + b"\x12\x08"
            + context.span_id.to_bytes(8, "big")
        )
        body += self._attributes(b"\x22", link.attributes)
        if link.dropped_attributes:
            body += b"\x28" + _varint(link.dropped_attributes)
        return body + b"\x35" + _FIXED32(_REMOTE if context.is_remote else _LOCAL)

    def request(self, spans: Sequence[ReadableSpan | bytes], ended: tuple[Any, Any] | None = None) -> bytes:
        """The ``ExportTraceServiceRequest``: spans grouped by resource, then instrumentation scope.

        A ``bytes`` item is a span encoded when it ended (:meth:`span`), of the resource and scope
        ``ended``.
        """
        resources: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
        last: tuple[Any, Any] = (None, None)
        parts: list[bytes] = []
        snapshot = self._snapshot
        span: Any  # a span, or the bytes of one
        for span in spans:
            kind = type(span)
            if kind is bytes:  # encoded when it ended, a span of ``ended``'s group
                resource, scope = ended  # type: ignore[misc]
                encoded = span
            elif kind in _SNAPSHOTS:  # their fields, not their properties
                resource, scope = span._resource, span._instrumentation_scope
                encoded = snapshot(span)
            else:
                resource, scope = span.resource, span.instrumentation_scope
                encoded = self._any_span(span)
            if resource is not last[0] or scope is not last[1]:  # mostly one resource, one scope
                scopes = resources.setdefault(id(resource), (resource, {}))[1]
                last = (resource, scope)
                parts = scopes.setdefault(id(scope), (scope, []))[1]
            size = len(encoded)
            if size < 0x4000:  # the span field's tag and length (a span is mostly 128 to 16k bytes)
                tag = _SPAN_TAG[size]
                if tag is None:
                    tag = _SPAN_TAG[size] = bytes((0x12, size & 0x7F | 0x80, size >> 7))
                parts += (tag, encoded)
            else:
                parts += (b"\x12" + _varint(size), encoded)
        out: list[bytes] = []
        for resource, scopes in resources.values():
            body = _field(b"\x0a", self._attributes(b"\x0a", resource.attributes))
            for scope, fields in scopes.values():
                body += _field(b"\x12", self._scope(scope) + b"".join(fields) + self._schema(scope))
            out.append(_field(b"\x0a", body + self._schema(resource)))
        return b"".join(out)

    def _scope(self, scope: Any) -> bytes:
        body = b""
        if scope is not None:
            if scope.name:
                body += _field(b"\x0a", scope.name.encode())
            if scope.version:
                body += _field(b"\x12", scope.version.encode())
            body += self._attributes(b"\x1a", scope.attributes)
        return _field(b"\x0a", body)

    @staticmethod
    def _schema(item: Any) -> bytes:
        url = getattr(item, "schema_url", None) if item is not None else None
        return _field(b"\x1a", url.encode()) if url else b""


class KernelSpanExporter(OTLPSpanExporter):
    """The OTLP/HTTP span exporter, encoding each batch with :class:`Encoder`.

    Sending is the exporter's own (client, retries, TLS, compression, size limit, metrics), through
    a persistent ``http.client`` connection instead of a ``requests`` session where that sends the
    same (:mod:`kernel_otel._transport`: a plain ``http://`` endpoint, no proxy or ``.netrc``). With
    an exporter version whose internals differ from the ones this was written against,
    :attr:`fast` is False and batches go through the exporter's ``export`` unchanged.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.encoder = Encoder()
        self.span_encoder = Encoder()
        """:meth:`encode_span`'s, apart from the export thread's :attr:`encoder`."""
        self._ended: tuple[Any, Any] | None = None  # the resource and scope of encoded spans
        self._ended_lock = threading.Lock()
        self.fast = all(
            hasattr(self, name) for name in ("_client", "_metrics", "_max_request_size", "_shutdown")
        )
        self.plain_http = use_plain_http(self._client, self._endpoint, options) if self.fast else False
        """Whether requests go out through :class:`~kernel_otel._transport.PlainHTTPTransport`."""

    def queue_encoder(self) -> Callable[[ReadableSpan], bytes | None] | None:
        """What a batch processor may queue an ended lean span as: :meth:`encode_span` (None when
        :attr:`fast` is False: then ``export`` is the exporter's own, which needs span objects)."""
        return self.encode_span if self.fast else None

    def encode_span(self, span: ReadableSpan) -> bytes | None:
        """``span`` (ended, not to change again) as the bytes :meth:`export` sends for it, or None:
        queue the span itself.

        A batch queue of plain ``bytes`` is nothing to the garbage collector (not a container:
        never tracked). Span objects waiting there, up to 512 for seconds, outlived the young
        generation's collections: a server's queue made the collector run every hundred requests or
        so, walk the waiting spans, and promote them into full collections of the whole heap.
        Encoded, a span is freed as soon as its request lets go of it. Bytes carry no resource or
        scope: spans of the first ended span's (the plugin's tracer's) are encoded, any other
        span is queued itself. Runs where spans end, with its own :attr:`span_encoder`.
        """
        resource, scope = span._resource, span._instrumentation_scope
        ended = self._ended or self._bind(resource, scope)
        if resource is not ended[0] or scope is not ended[1]:
            return None
        encoder = self.span_encoder
        return encoder._snapshot(span) if type(span) in _SNAPSHOTS else encoder.span(span)

    def lean_encoder(self, resource: Any, scope: Any) -> Callable[[ReadableSpan], bytes] | None:
        """What :meth:`encode_span` does for an ended lean span of ``resource`` and ``scope``, without
        its checks: a caller that has made those checks once (a tracer's own spans). None when such a
        span would not be encoded here (``fast`` is False, or spans of another group are).

        Binds the encoded spans' group to ``resource`` and ``scope`` when none is yet.
        """
        if not self.fast or LeanSpan not in _SNAPSHOTS:
            return None
        ended = self._bind(resource, scope)
        if resource is not ended[0] or scope is not ended[1]:
            return None
        return self.span_encoder._snapshot

    def _bind(self, resource: Any, scope: Any) -> tuple[Any, Any]:
        """The encoded spans' resource and scope: ``resource`` and ``scope`` unless already bound."""
        with self._ended_lock:
            if self._ended is None:
                self._ended = (resource, scope)
            return self._ended

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Encode ``spans`` with :attr:`encoder` and send them as the OTLP exporter would."""
        if not self.fast or self._shutdown:
            return super().export(spans)
        with self._metrics.export_operation(len(spans)) as result:
            try:
                body = self.encoder.request(spans, self._ended)
            except Exception as exc:
                _log.exception("cannot encode a batch of %d spans", len(spans))
                result.error = exc
                return SpanExportResult.FAILURE
            if 0 < self._max_request_size < len(body):
                _log.warning(
                    "dropping a batch of %d spans: %d bytes is over the limit", len(spans), len(body)
                )
                result.error = ValueError(
                    f"export request of {len(body)} bytes over {self._max_request_size}"
                )
                return SpanExportResult.FAILURE
            sent = self._client.export(body)
            if not sent.success:
                result.error = sent.error
                status = getattr(sent, "status_code", None)
                result.error_attrs = {"http.response.status_code": status} if status is not None else None
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
