"""Pure-ASGI middleware: exceptions become problem+json, every response carries the trace id."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio

from kernel.logging import (
    FINISHED,
    TraceSlot,
    get_trace_id,
    get_trace_slot,
    new_trace_id,
    reset_trace_id,
    set_trace_slot,
)
from kernel.web import RESPONSE_STATUS, ASGIApp, ASGIMiddleware, Message, Receive, Scope, Send

from ._errors import INTERNAL_CODE, AppError, _unwrap
from ._problem import PROBLEM_JSON, ProblemRenderer

log = logging.getLogger("kernel.plugins.errors")

# Scope key set by the ErrorMiddleware that handles a request: a nested one (a host's middleware
# around a mounted KernelApp that has its own) steps aside instead of adding a second id header and
# log line. Kept in the scope, not in a context variable: a server may start the next request on a
# keep-alive connection from a copy of this request's context (uvicorn does when it resumes reading
# inside a request, or parses a pipelined request inside ``send``), and the scope is never shared.
_HANDLED = "kernel_errors.handled"

# The trace id of a request is one kernel.logging.TraceSlot, set in its context for the request and
# reset after it: the slot's owner is the request's task while it runs, FINISHED afterwards. Finding
# a slot with another owner current when a new request arrives means this context was copied from an
# earlier request: its id is stale, not one a host layer set for this request (those have no owner).


if sys.version_info < (3, 12):
    # 3.11: asyncio.current_task() is a Python function reading this dict (the C tasks keep it);
    # from 3.12 on it is a C function of its own.
    from asyncio.tasks import _current_tasks  # type: ignore[attr-defined]  # (the dict the C tasks keep)

    _task_of_loop: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] | None = _current_tasks.get
else:
    _task_of_loop = None


def _task() -> object:
    """The running task (asyncio), anyio's task id (other backends), or None outside any task.

    A request's slot holds it only while the request runs (see ``kernel.logging.TraceSlot``), so no
    finished task is kept alive by a context copied from its request.
    """
    try:
        if _task_of_loop is not None:
            return _task_of_loop(asyncio.get_running_loop())
        return asyncio.current_task()
    except RuntimeError:  # no asyncio loop running in this thread: another anyio backend
        return anyio.get_current_task().id


_new_slot = TraceSlot.__new__
_running_loop = asyncio.get_running_loop

# A caller-supplied request id is echoed into logs and headers: accept only short, plain tokens.
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
# W3C traceparent: version-traceid-parentid-flags; the trace id must not be all zeros.
_TRACEPARENT = re.compile(rb"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def incoming_trace_id(headers: Iterable[tuple[bytes, bytes]], header: bytes) -> str | None:
    """The caller's trace id from ``header`` or ``traceparent``, if well-formed."""
    request_id = traceparent = None
    for name, value in headers:
        if name == header:
            request_id = value
        elif name == b"traceparent":
            traceparent = value
    return _checked_trace_id(request_id, traceparent)


def _checked_trace_id(request_id: bytes | None, traceparent: bytes | None) -> str | None:
    """The trace id of a request-id header value, else of a ``traceparent`` one, if well-formed."""
    if request_id is not None and _REQUEST_ID.match(request_id):
        return request_id.decode()
    if traceparent is not None:
        m = _TRACEPARENT.match(traceparent.strip().lower())
        if m and m.group(1) != b"0" * 32:
            return m.group(1).decode()
    return None


class ErrorMiddleware(ASGIMiddleware):
    """Wrap any ASGI app: exceptions render as RFC 9457 problems, never leaking internals.

    Each request runs with a trace id set in the logging context and echoed in the
    response header: the caller's ``X-Request-ID``/``traceparent`` when well-formed,
    else the trace id already current (set by a host's tracing layer), else a new
    one. An exception after the response has started cannot change the status any
    more: it is logged and the connection is closed. Nested inside another
    ErrorMiddleware it passes requests straight through.

    No state of one request reaches the next: the nesting mark lives in the request's
    scope, and a trace id inherited from an earlier request's context (a server may
    start the next request on a keep-alive connection from a copy of it) is dropped.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        renderer: ProblemRenderer | None = None,
        trace_header: str = "x-request-id",
        client_error_level: int = logging.INFO,
    ) -> None:
        self.app = app
        self.renderer = renderer or ProblemRenderer()
        self._header = trace_header.lower().encode("latin-1")
        self._client_level = client_error_level

    records_response_status = True
    """Every HTTP response's status ends up in ``scope[kernel.web.RESPONSE_STATUS]`` (for an outer layer)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: C901 - inlined hot path
        call = self._call  # an attribute load (specialised), where self._call(...) is an unspecialised lookup
        if scope["type"] != "http":
            await call(scope, receive, send)
            return
        if _HANDLED in scope:
            await self._nested(scope, receive, send)
            return
        scope[_HANDLED] = True
        slot = get_trace_slot()
        current = None
        if slot is not None:
            # No owner: a host layer (tracing) set it for this request; this task: a request inside one.
            if slot.owner is None or slot.owner == _task():
                current = slot.trace_id
            else:
                # Inherited from an earlier request: drop it for the rest of this task (set, not
                # reset), so that nothing logged around this request (the server's own lines) has it.
                set_trace_slot(None)
        # incoming_trace_id() inlined (this runs on every request): most requests carry neither header.
        name = self._header
        headers = scope.get("headers") or ()
        if type(headers) is not list or len(headers) > 4:  # one pass in C; the last repeated header wins
            found = dict(headers)
            request_id, traceparent = found.get(name), found.get(b"traceparent")
        else:  # a few headers: a plain loop costs less than building the dict
            request_id = traceparent = None
            for key, value in headers:
                if key == name:
                    request_id = value
                elif key == b"traceparent":
                    traceparent = value
        tid = (
            (
                (request_id is not None or traceparent is not None)
                and _checked_trace_id(request_id, traceparent)
            )
            or current
            or new_trace_id()
        )
        header = (name, tid.encode())

        # A plain function handing back send's awaitable: no coroutine of its own per message. The
        # status it records also tells this layer whether the response started.
        def send_with_id(
            message: Message, scope: Scope = scope, send: Send = send, header: tuple[bytes, bytes] = header
        ) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                scope[RESPONSE_STATUS] = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            return send(message)

        # One slot for the request, set/reset (not the trace_context() manager): every request runs this.
        owner: object
        try:  # _task(), inlined
            owner = asyncio.current_task() if _task_of_loop is None else _task_of_loop(_running_loop())
        except RuntimeError:
            owner = anyio.get_current_task().id
        ours = _new_slot(TraceSlot)  # TraceSlot(tid, owner) without running __init__ in Python
        ours.trace_id = tid
        ours.owner = owner
        token = set_trace_slot(ours)
        try:
            await call(scope, receive, send_with_id)
        except Exception as exc:
            started = RESPONSE_STATUS in scope
            self._log(exc, scope, started)
            if not started:  # after the start, returning unfinished makes the server close it
                await self._send_problem(exc, scope, send, header)
        finally:
            ours.owner = FINISHED  # the id is stale in any context copied from this request
            reset_trace_id(token)

    async def _nested(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Inside another ErrorMiddleware: pass through, only recording the response status."""

        def send_status(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                scope[RESPONSE_STATUS] = message["status"]
            return send(message)

        call = self._call
        await call(scope, receive, send_status)

    def _log(self, exc: Exception, scope: Scope, started: bool) -> None:
        err = _unwrap(exc)
        operational = isinstance(err, AppError) and err.is_operational
        status = err.status_code if isinstance(err, AppError) and operational else 500
        extra: dict[str, Any] = {
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "error_code": err.error_code if isinstance(err, AppError) else INTERNAL_CODE,
            "trace_id": get_trace_id(),
        }
        # The log is where context and internal data belong: the response hides them.
        if isinstance(err, AppError):
            if err.context:
                extra["context"] = err.context
            if err.internal:
                extra["internal"] = err.internal
        if started:
            log.error("error after the response started; closing the connection", exc_info=exc, extra=extra)
        elif status >= 500:
            log.error(
                "%s %s failed: %s: %s",
                scope.get("method"),
                scope.get("path"),
                type(exc).__name__,
                exc,
                exc_info=exc,
                extra=extra,
            )
        else:
            log.log(
                self._client_level,
                "%s %s -> %d %s",
                scope.get("method"),
                scope.get("path"),
                status,
                extra["error_code"],
                extra=extra,
            )

    async def _send_problem(
        self, exc: Exception, scope: Scope, send: Send, header: tuple[bytes, bytes]
    ) -> None:
        problem = self.renderer.render(exc, instance=scope.get("path"))
        body = problem.encode()
        headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            header,
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in problem.headers),
        ]
        scope[RESPONSE_STATUS] = problem.status
        await send({"type": "http.response.start", "status": problem.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
