"""A SERVER span per HTTP request, as pure ASGI middleware (the kernel's ``kernel_middleware`` hook)."""

from __future__ import annotations

from collections.abc import Awaitable
from types import FunctionType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kernel.logging import reset_trace_id, set_trace_id
from kernel.web import RESPONSE_STATUS, ASGIApp, Message, Receive, Scope, Send

from ._lean import LeanSpan, lean_tracer

_SEEN = "kernel_otel.span"
"""Scope key of a request already traced (a nested KernelApp with its own middleware steps aside)."""

_PROPAGATOR = TraceContextTextMapPropagator()
_ROOT = otel_context.Context()
_SERVER_ERROR = Status(StatusCode.ERROR)


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


def _server_attributes(scope: Scope, headers: dict[bytes, bytes]) -> dict[str, Any]:
    """Semantic-convention attributes known before the app runs."""
    attributes: dict[str, Any] = {
        "http.request.method": scope.get("method", "GET"),
        "url.path": scope.get("path", "/"),
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    host = headers.get(b"host")
    server = scope.get("server")
    if host:
        attributes.update(_host_header(host.decode("latin-1")))
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


def route_of(scope: Scope) -> str | None:
    """The template of the route that served the request: the kernel's, else Starlette's, else None."""
    template = scope.get("route_template")
    if isinstance(template, str):
        return template
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and not hasattr(scope.get("route"), "routes") else None


class TracingMiddleware:
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
        return self._tracer

    @property
    def app(self) -> ASGIApp:
        """The wrapped app."""
        return self._app

    @app.setter
    def app(self, app: ASGIApp) -> None:
        self._app = app
        direct = isinstance(type(app).__call__, FunctionType)
        self._call: ASGIApp = app.__call__ if direct else app  # type: ignore[operator]
        # The inner app records each status in the scope (kernel.web.RESPONSE_STATUS): read it there.
        self._status_in_scope = getattr(app, "records_response_status", False) is True

    records_response_status = True
    """Every HTTP response's status ends up in ``scope[kernel.web.RESPONSE_STATUS]`` (for an outer layer)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = self._tracer if self._explicit else self._resolve(scope)
        if scope["type"] != "http" or _SEEN in scope or tracer is None:
            await self._call(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        # Under a live span (a host's own tracing layer) the request's span is its child. A span
        # that is current but no longer recording is stale: a server may start the next request
        # on a keep-alive connection from a copy of this one's context. Then the request is a root.
        parent: otel_context.Context | None
        if b"traceparent" in headers:
            carrier = {"traceparent": headers[b"traceparent"].decode("latin-1")}
            if b"tracestate" in headers:
                carrier["tracestate"] = headers[b"tracestate"].decode("latin-1")
            parent = _PROPAGATOR.extract(carrier)
        else:
            parent = None if trace.get_current_span().is_recording() else _ROOT
        method = scope.get("method", "GET")
        span = tracer.start_span(method, parent, kind=SpanKind.SERVER)
        if span.is_recording():  # an unsampled request skips building them (no sampler here reads them)
            _set(span, _server_attributes(scope, headers))
        scope[_SEEN] = span
        otel_token = otel_context.attach(trace.set_span_in_context(span, parent))
        trace_token = set_trace_id(format(span.get_span_context().trace_id, "032x"))
        send_on = send if self._status_in_scope else self._recording(scope, send)
        try:
            await self._call(scope, receive, send_on)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            self._finish(span, scope, method)
            reset_trace_id(trace_token)
            otel_context.detach(otel_token)

    @staticmethod
    def _recording(scope: Scope, send: Send) -> Send:
        def send_status(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                scope[RESPONSE_STATUS] = message["status"]
            return send(message)

        return send_status

    @staticmethod
    def _finish(span: trace.Span, scope: Scope, method: str) -> None:
        if span.is_recording():
            route = route_of(scope)
            attributes: dict[str, str | int] = {}
            if route is not None:
                attributes["http.route"] = route
                span.update_name(f"{method} {route}")
            status = scope.get(RESPONSE_STATUS)
            if isinstance(status, int):
                attributes["http.response.status_code"] = status
                if status >= 500:
                    attributes["error.type"] = str(status)
                    span.set_status(_SERVER_ERROR)
            _set(span, attributes)
        span.end()
