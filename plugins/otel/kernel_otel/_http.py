"""A SERVER span per HTTP request, as pure ASGI middleware (the kernel's ``kernel_middleware`` hook)."""

from __future__ import annotations

import re
from collections.abc import Awaitable
from random import getrandbits as _bits
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kernel.logging import TraceSlot, reset_trace_id, set_trace_slot
from kernel.web import RESPONSE_STATUS, ASGIApp, ASGIMiddleware, Message, Receive, Scope, Send

from ._ids import adopt
from ._lean import (
    _DEFAULT_RANDOM,
    _LOW64,
    _MAX_TRACE_ID,
    _SAMPLED_RANDOM,
    CONTEXT_IS_TUPLE,
    KernelTracer,
    LeanSpan,
    RootLane,
    _new_context,
    _new_lean_span,
    _new_non_recording,
    end_root,
    lean_tracer,
    root_lane,
)
from ._runtime import attach as _attach
from ._runtime import current as _current
from ._runtime import reset as _reset
from ._spans import remote_span_context

_new_slot = TraceSlot.__new__
_SEEN = "kernel_otel.span"
"""Scope key of a request already traced (a nested KernelApp with its own middleware steps aside)."""

_PROPAGATOR = TraceContextTextMapPropagator()
_ROOT = otel_context.Context()
_SERVER_ERROR = Status(StatusCode.ERROR)
_SERVER = SpanKind.SERVER
_Context = otel_context.Context
_adopted = adopt.get
_SpanContext = trace.SpanContext
_NO_STATE = trace.DEFAULT_TRACE_STATE
_SERVER_ATTRIBUTES = 12
"""The most attributes a request's span gets here: 9 known at the start, 3 at the end."""


def _detach(token: Any) -> None:
    """``otel_context.detach(token)``: what the API does (a failure is logged, not raised)."""
    try:
        _reset(token)
    except Exception:
        otel_context.detach(token)  # fails again, and logs it as the API does


async def _send_in(outer: otel_context.Context, send: Send, message: Message) -> None:
    """``await send(message)`` with ``outer`` as the current OpenTelemetry context.

    The response's last message: a server copies the current context as it finishes a response
    (uvicorn's keep-alive timer, held for seconds), and a copy holding the request's span keeps
    the span and its attributes alive that long. Enough of them outlast the collector's young
    generation: it then ran every hundred or so requests and promoted them into full collections.
    """
    token = _attach(outer)
    try:
        await send(message)
    finally:
        try:  # _detach(token), without the call
            _reset(token)
        except Exception:
            _detach(token)


def _is_live(span: object) -> bool:
    """Whether ``span`` (the current context's, if any) is a recording span."""
    return span is not None and isinstance(span, trace.Span) and span.is_recording()


def _host_header(text: str) -> dict[str, Any]:
    """``server.address`` and ``server.port`` of a Host header (``name``, ``name:port``, ``[v6]:port``)."""
    if text.startswith("[") and "]" in text:
        name, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        name, _, port = text.partition(":")
    found: dict[str, Any] = {"server.address": name}
    if port.isdigit():
        found["server.port"] = int(port)
    return found


_HOSTS: dict[bytes, dict[str, Any]] = {}
"""Host header -> its attributes (:func:`_host_header`): a server sees a few, again and again."""
_HOSTS_MAX = 256


def _host_attributes(host: bytes) -> dict[str, Any]:
    """``_host_header(host.decode("latin-1"))``, remembered (the result is shared: read it only)."""
    found = _HOSTS.get(host)
    if found is None:
        found = _host_header(host.decode("latin-1"))
        if len(_HOSTS) >= _HOSTS_MAX:
            _HOSTS.clear()
        _HOSTS[host] = found
    return found


_REDACTED = re.compile(r"(?:^|(?<=&))(AWSAccessKeyId|Signature|sig|X-Goog-Signature)=[^&#]*")
"""Query parameters whose values the semantic conventions say to redact by default (signed URLs)."""


def _query(raw: bytes) -> str:
    """``url.query`` of a request's raw query string: its parameters as sent, a signature's value
    (``sig``, ``Signature``, ``AWSAccessKeyId``, ``X-Goog-Signature``) replaced by ``REDACTED``."""
    text = raw.decode("latin-1")
    return _REDACTED.sub(r"\1=REDACTED", text) if "=" in text else text


def _server_attributes(scope: Scope, headers: dict[bytes, bytes]) -> dict[str, Any]:
    """Semantic-convention attributes known before the app runs."""
    attributes: dict[str, Any] = {
        "http.request.method": scope.get("method", "GET"),
        "url.path": scope.get("path", "/"),
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    query = scope.get("query_string")
    if query:
        attributes["url.query"] = _query(query)
    host = headers.get(b"host")
    server = scope.get("server")
    if host:
        found = _HOSTS.get(host)  # _host_attributes(host), its remembered case without the call
        attributes.update(found if found is not None else _host_attributes(host))
    elif server:
        attributes["server.address"] = server[0]
        if server[1] is not None:
            attributes["server.port"] = server[1]
    client = scope.get("client")
    if client:
        attributes["client.address"] = client[0]
    agent = headers.get(b"user-agent")
    if agent:
        attributes["user_agent.original"] = agent.decode("latin-1")
    return attributes


def _set(span: trace.Span, attributes: dict[str, Any]) -> None:
    """Attributes built here (valid types): unvalidated on the plugin's own spans."""
    if type(span) is LeanSpan:
        span.set_trusted(attributes)
    else:
        span.set_attributes(attributes)


def _root_spans(tracer: trace.Tracer | None) -> Any:
    """``tracer.start_root_span`` when it starts root spans; else None (the general path)."""
    return tracer.start_root_span if isinstance(tracer, KernelTracer) and tracer.samples_roots else None


def _remote_children(tracer: trace.Tracer | None) -> Any:
    """``tracer.start_remote_child`` when it starts children of a caller's span; else None."""
    return (
        tracer.start_remote_child
        if isinstance(tracer, KernelTracer) and tracer.starts_remote_children
        else None
    )


def _samples_every_root(tracer: trace.Tracer | None) -> bool:
    """Whether ``tracer``'s root spans are always sampled (then built with their attributes at once)."""
    return isinstance(tracer, KernelTracer) and tracer.samples_every_root


def route_of(scope: Scope) -> str | None:
    """The template of the route that served the request: the kernel's, else Starlette's, else None."""
    template = scope.get("route_template")
    if isinstance(template, str):
        return template
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and not hasattr(scope.get("route"), "routes") else None


class TracingMiddleware(ASGIMiddleware):
    """Wrap any ASGI app: one SERVER span per HTTP request, following the HTTP semantic conventions.

    Without ``tracer`` (a host app's middleware list, built before the kernel boots) it uses
    the tracer of the kernel that ``kernel.web.lifespan_for`` put in the lifespan state, and
    passes requests through untraced when the otel plugin is not enabled there.

    A ``traceparent`` (and ``tracestate``) header continues the caller's trace. While the app
    runs, the span is the current OpenTelemetry span and its trace id is the kernel trace id
    (``kernel.logging.get_trace_id()``), which the errors plugin then puts in problem+json and
    log lines (a caller's ``X-Request-ID`` still wins there).
    """

    def __init__(self, app: ASGIApp, tracer: trace.Tracer | None = None) -> None:
        self._tracer = lean_tracer(tracer) if tracer is not None else None
        self._explicit = tracer is not None
        self._root = _root_spans(self._tracer)
        self._root_all = _samples_every_root(self._tracer)
        self._remote = _remote_children(self._tracer)
        self._lane = root_lane(self._tracer, _SERVER_ATTRIBUTES)
        self._kernel: object = None
        self.app = app

    def _resolve(self, scope: Scope) -> trace.Tracer | None:
        """The booted kernel's tracer (``scope["state"]["kernel"]``, set by ``lifespan_for``), if any.

        A host app adds this middleware before the kernel boots; without an enabled otel
        plugin requests pass through untraced.
        """
        kernel = (scope.get("state") or {}).get("kernel")
        if kernel is not self._kernel:
            from ._sdk import Tracing

            self._kernel = kernel
            tracing = kernel.registry.find(Tracing) if kernel is not None else None
            self._tracer = tracing.kernel_tracer if tracing is not None else None
            self._root = _root_spans(self._tracer)
            self._root_all = _samples_every_root(self._tracer)
            self._remote = _remote_children(self._tracer)
            self._lane = root_lane(self._tracer, _SERVER_ATTRIBUTES)
        return self._tracer

    records_response_status = True
    """Every HTTP response's status ends up in ``scope[kernel.web.RESPONSE_STATUS]`` (for an outer layer)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = self._call  # a local: see kernel.web.ASGIMiddleware
        tracer = self._tracer if self._explicit else self._resolve(scope)
        if scope["type"] != "http" or _SEEN in scope or tracer is None:
            await call(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        method = scope.get("method", "GET")
        outer = _current()  # the OpenTelemetry context the response's last message is sent in
        span: trace.Span
        lane = self._lane
        if (
            lane is not None
            and b"traceparent" not in headers
            and ((live := outer.get(_SPAN_KEY)) is None or not _is_live(live))
            and lane.applies()
        ):
            # a root span, started in line: tracer.start_root_span's steps (see kernel_otel._lean)
            sdk = lane.sdk
            trace_id = _adopted() or _bits(128) or sdk.id_generator.generate_trace_id()
            span_id = _bits(64) or sdk.id_generator.generate_span_id()
            valid = 0 < trace_id <= _MAX_TRACE_ID  # an adopted id is the caller's
            if trace_id & _LOW64 < lane.bound:  # sampled: the attributes from the start
                started = _new_context(
                    _SpanContext, (trace_id, span_id, False, _SAMPLED_RANDOM, _NO_STATE, valid)
                )
                attributes = _server_attributes(scope, headers)
                span = _new_lean_span(method, started, _SERVER, None, lane.fields, attributes)
            else:  # the SDK's non-recording span
                started = _new_context(
                    _SpanContext, (trace_id, span_id, False, _DEFAULT_RANDOM, _NO_STATE, valid)
                )
                span = _new_non_recording(started)
            otel_token = _attach(_Context({_SPAN_KEY: span}))  # set_span_in_context(span, _ROOT)
        else:
            lane = None
            span, otel_token = self._start(tracer, scope, headers, method)
            # a lean span's own field (no method call); a started span always has one
            context: trace.SpanContext = span._context if type(span) is LeanSpan else span.get_span_context()  # type: ignore[assignment]
            trace_id = context[0] if CONTEXT_IS_TUPLE else context.trace_id
        scope[_SEEN] = span
        # set_trace_id(format(trace_id, "032x")) without its call: the request's TraceSlot (no owner)
        slot = _new_slot(TraceSlot)
        slot.trace_id = f"{trace_id:032x}"
        slot.owner = None
        trace_token = set_trace_slot(slot)
        send_on = self._sending(scope, send, outer, not self._status_in_scope)
        try:
            await call(scope, receive, send_on)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            self._finish(span, scope, method, lane)
            reset_trace_id(trace_token)
            try:  # _detach(otel_token), without the call
                _reset(otel_token)
            except Exception:
                _detach(otel_token)  # fails again, and logs it as the API does

    def _start(
        self, tracer: trace.Tracer, scope: Scope, headers: dict[bytes, bytes], method: str
    ) -> tuple[trace.Span, Any]:
        """The request's span, made current: its context's token for :func:`_detach`."""
        # Under a live span (a host's own tracing layer) the request's span is its child. A span
        # that is current but no longer recording is stale: a server may start the next request
        # on a keep-alive connection from a copy of this one's context. Then the request is a root.
        parent: otel_context.Context | None
        if b"traceparent" in headers:
            traceparent = headers[b"traceparent"].decode("latin-1")
            remote = self._remote
            if remote is not None and b"tracestate" not in headers:  # the caller's span in one step
                caller = remote_span_context(traceparent)  # None: not the plain version-00 form
                child = remote(method, _SERVER, caller, {}) if caller is not None else None
                if child is not None:
                    if type(child) is LeanSpan:
                        child.set_trusted(_server_attributes(scope, headers))
                    # set_span_in_context(child, the propagator's context), as one new context
                    return child, _attach(_Context({_SPAN_KEY: child}))
            carrier = {"traceparent": traceparent}
            if b"tracestate" in headers:
                carrier["tracestate"] = headers[b"tracestate"].decode("latin-1")
            parent = _PROPAGATOR.extract(carrier)
        elif (current := _current().get(_SPAN_KEY)) is not None and _is_live(current):
            parent = None  # the current span (trace.get_current_span()) is live
        else:  # a root span: sampled with its attributes in one step when the tracer can
            root = self._root
            span = None
            if root is not None:
                if self._root_all:  # sampled: the attributes from the start
                    span = root(method, _SERVER, _server_attributes(scope, headers))
                else:  # maybe not sampled: the attributes only for a sampled span
                    span = root(method, _SERVER, {})
                    if type(span) is LeanSpan:
                        span.set_trusted(_server_attributes(scope, headers))
            if span is not None:  # set_span_in_context(span, _ROOT), as one new context
                return span, _attach(_Context({_SPAN_KEY: span}))
            parent = _ROOT
        span = tracer.start_span(method, parent, kind=_SERVER)
        if span.is_recording():  # an unsampled request skips building them (no sampler here reads them)
            _set(span, _server_attributes(scope, headers))
        return span, _attach(trace.set_span_in_context(span, parent))

    @staticmethod
    def _sending(scope: Scope, send: Send, outer: otel_context.Context, record_status: bool) -> Send:
        """``send``, recording the response's status in ``scope`` (when ``record_status``), the
        response's last message sent in context ``outer`` (see :func:`_send_in`)."""

        def sending(message: Message) -> Awaitable[None]:
            kind = message["type"]
            if kind == "http.response.body":
                if not message.get("more_body", False):
                    return _send_in(outer, send, message)
            elif kind == "http.response.start" and record_status:
                scope[RESPONSE_STATUS] = message["status"]
            return send(message)

        return sending

    @staticmethod
    def _finish(span: trace.Span, scope: Scope, method: str, lane: RootLane | None = None) -> None:
        """Name the span after its route, set the response's attributes and end it (through ``lane``
        when it started the span)."""
        lean = type(span) is LeanSpan
        if span._end_time is None if lean else span.is_recording():  # type: ignore[attr-defined]
            route = scope.get("route_template")  # route_of(scope), the kernel's case without the call
            if not isinstance(route, str):
                route = route_of(scope)
            attributes: dict[str, str | int] = {}
            name = None
            if route is not None:
                attributes["http.route"] = route
                name = f"{method} {route}"
            status = scope.get(RESPONSE_STATUS)
            if isinstance(status, int):
                attributes["http.response.status_code"] = status
                if status >= 500:
                    attributes["error.type"] = str(status)
                    span.set_status(_SERVER_ERROR)
            if lean:  # renamed, attributes set and ended in one step
                if lane is not None:
                    end_root(lane, span, name, attributes)  # type: ignore[arg-type]
                else:
                    span.finish(name, attributes)  # type: ignore[attr-defined]
                return
            if name is not None:
                span.update_name(name)
            span.set_attributes(attributes)
        span.end()
