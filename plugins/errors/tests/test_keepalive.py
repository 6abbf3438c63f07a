"""No per-request state outlives its request on a keep-alive connection (real uvicorn, loopback).

uvicorn pauses reading when a request body passes 64 KiB and resumes it from inside the
request's task, so the socket's reader callback - and every later request task on that
connection - starts from a copy of that request's context. The same happens to a pipelined
request, which is parsed from inside the previous request's ``send``. The trace id and the
middleware's own bookkeeping must not be inherited that way.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import h11
import pytest
import uvicorn
from anyio.abc import SocketStream
from kernel_errors import PROBLEM_JSON, ErrorMiddleware, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, Router

from kernel.logging import get_trace_id
from kernel.testing import asgi_request

MAX_NAME = 100
BIG = 70_000  # above uvicorn's 64 KiB high-water mark: reading pauses, then resumes in the request
SMALL = 10_000

seen: list[str | None] = []  # get_trace_id() inside each valid request, in order


async def create_user(request: Request) -> JSONResponse:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise ValidationError("request body must be JSON") from None
    if len(body.get("name", "")) > MAX_NAME:
        raise ValidationError(errors={"name": f"at most {MAX_NAME} characters"})
    seen.append(get_trace_id())
    return JSONResponse({"trace_id": get_trace_id()}, status_code=201)


def host_app() -> Starlette:
    # The host's ErrorMiddleware around a mounted app with its own (as a KernelApp mount has).
    inner = ErrorMiddleware(Router(routes=[Route("/users", create_user, methods=["POST"])]))
    return Starlette(routes=[Mount("/api", app=inner)], middleware=[Middleware(ErrorMiddleware)])


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options: dict[str, Any] = getattr(request, "param", {})
    if options and not set(options) <= set(inspect.signature(uvicorn.Config).parameters):
        pytest.skip(f"this uvicorn has no {', '.join(options)}")
    config = uvicorn.Config(
        host_app(),
        lifespan="off",
        ws="none",
        http="h11",
        loop="asyncio",
        log_config=None,
        access_log=False,
        **options,
    )
    server = uvicorn.Server(config)
    seen.clear()
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn only exposes a flag
                await anyio.sleep(0.01)
        yield "127.0.0.1", port
        server.should_exit = True
    sock.close()


def request_bytes(body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """One ``POST /api/users`` on the wire."""
    lines = [
        "POST /api/users HTTP/1.1",
        "host: test",
        "content-type: application/json",
        f"content-length: {len(body)}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    """One HTTP/1.1 keep-alive connection; fails the test if the server closes or resets it."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """Read the next response (requests are written raw, so h11 only parses)."""
        dummy = [("host", "t"), ("content-length", "0")]
        self.conn.send(h11.Request(method="POST", target="/", headers=dummy))
        self.conn.send(h11.EndOfMessage())
        status, headers, body = 0, {}, b""
        with anyio.fail_after(20):
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        data = await self.stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError) as exc:
                        pytest.fail(f"the server closed the keep-alive connection: {exc!r}")
                    self.conn.receive_data(data)
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    headers = {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    assert headers.get("connection") != "close", "the server closes the connection"
                    self.conn.start_next_cycle()
                    return status, headers, body

    async def post(
        self, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        await self.stream.send(request_bytes(body, headers))
        return await self.response()


def assert_problem(status: int, headers: dict[str, str], *, trace_id: str | None = None) -> str:
    assert (status, headers.get("content-type")) == (400, PROBLEM_JSON), (status, headers)
    tid = headers.get("x-request-id")
    assert tid, headers
    if trace_id is not None:
        assert tid == trace_id
    return tid


def poison(size: int) -> bytes:
    return json.dumps({"name": "x" * size}).encode()


@pytest.mark.anyio
@pytest.mark.parametrize("size", [BIG, SMALL], ids=["above-64KiB", "below-64KiB"])
@pytest.mark.parametrize("server", [{}, {"reset_contextvars": True}], ids=["default", "reset"], indirect=True)
async def test_state_of_one_request_never_reaches_the_next(server: tuple[str, int], size: int) -> None:
    async with await anyio.connect_tcp(*server) as stream:
        client = Connection(stream)
        status, headers, _ = await client.post(poison(size), {"x-request-id": "poison-1"})
        assert_problem(status, headers, trace_id="poison-1")

        status, headers, body = await client.post(b"{bad json")
        tid = assert_problem(status, headers)
        assert tid != "poison-1"
        assert json.loads(body)["trace_id"] == tid

        status, headers, body = await client.post(b'{"name": "ada"}')
        assert status == 201
        assert json.loads(body)["trace_id"] == headers["x-request-id"] != "poison-1"
        assert headers["x-request-id"] != tid
    assert seen == [headers["x-request-id"]]


@pytest.mark.anyio
@pytest.mark.parametrize("size", [BIG, SMALL], ids=["above-64KiB", "below-64KiB"])
async def test_pipelined_requests_do_not_inherit_the_previous_one(server: tuple[str, int], size: int) -> None:
    async with await anyio.connect_tcp(*server) as stream:
        client = Connection(stream)
        # Sent at once: uvicorn parses the next requests from inside the previous one's send().
        await stream.send(
            request_bytes(poison(size), {"x-request-id": "poison-1"})
            + request_bytes(b"{bad json")
            + request_bytes(b'{"name": "ada"}')
        )
        status, headers, _ = await client.response()
        assert_problem(status, headers, trace_id="poison-1")
        status, headers, body = await client.response()
        tid = assert_problem(status, headers)
        assert tid != "poison-1" and json.loads(body)["trace_id"] == tid
        status, headers, body = await client.response()
        assert status == 201
        assert json.loads(body)["trace_id"] == headers["x-request-id"] not in ("poison-1", tid)
    assert seen == [headers["x-request-id"]]


async def echo_trace(scope: Any, receive: Any, send: Any) -> None:
    body = json.dumps({"trace_id": get_trace_id()}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def http_scope() -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/", "headers": []}


async def call(app: Any, scope: dict[str, Any]) -> dict[str, Any]:
    sent = await asgi_request(app, scope)
    headers = dict(sent[0]["headers"])
    return {
        "status": sent[0]["status"],
        "id": headers[b"x-request-id"].decode(),
        **json.loads(sent[1]["body"]),
    }


@pytest.mark.anyio
async def test_a_context_copied_from_a_request_starts_clean() -> None:
    import contextvars

    copied: list[contextvars.Context] = []

    async def capture(scope: Any, receive: Any, send: Any) -> None:
        copied.append(contextvars.copy_context())  # what a server's reader callback may keep
        await echo_trace(scope, receive, send)

    poisoned = {**http_scope(), "headers": [(b"x-request-id", b"poison-1")]}
    first = await call(ErrorMiddleware(capture), poisoned)
    assert first["trace_id"] == "poison-1"
    after: list[str | None] = []

    async def next_request() -> None:  # a new task started from the copied context
        second = await call(ErrorMiddleware(echo_trace), http_scope())
        assert second["trace_id"] == second["id"] != "poison-1"
        after.append(get_trace_id())  # what the server logs after the app returned

    loop = asyncio.get_running_loop()
    await loop.create_task(next_request(), context=copied[0])
    assert after == [None]


@pytest.mark.anyio
async def test_a_sub_request_in_the_same_task_keeps_the_trace_id() -> None:
    inner = ErrorMiddleware(echo_trace)

    async def outer_app(scope: Any, receive: Any, send: Any) -> None:
        sub = await call(inner, http_scope())  # a fresh scope, served inside this request
        assert sub["trace_id"] == sub["id"] == get_trace_id()
        await echo_trace(scope, receive, send)

    resp = await call(ErrorMiddleware(outer_app), {**http_scope(), "headers": [(b"x-request-id", b"req-7")]})
    assert resp["trace_id"] == "req-7"


@pytest.mark.anyio
async def test_sub_requests_one_after_another_keep_the_trace_id() -> None:
    inner = ErrorMiddleware(echo_trace)
    ids: list[str] = []

    async def outer_app(scope: Any, receive: Any, send: Any) -> None:
        for _ in range(3):  # a finished sub-request must not make the outer id look stale
            sub = await call(inner, http_scope())
            ids.append(sub["trace_id"])
            assert get_trace_id() == "req-8"
        other = await call(inner, {**http_scope(), "headers": [(b"x-request-id", b"sub-1")]})
        assert other["trace_id"] == "sub-1"
        assert get_trace_id() == "req-8"
        await echo_trace(scope, receive, send)

    resp = await call(ErrorMiddleware(outer_app), {**http_scope(), "headers": [(b"x-request-id", b"req-8")]})
    assert resp["trace_id"] == "req-8"
    assert ids == ["req-8"] * 3
    assert get_trace_id() is None


@pytest.mark.anyio
async def test_a_context_copied_after_a_sub_request_starts_clean() -> None:
    import contextvars

    copied: list[contextvars.Context] = []
    inner = ErrorMiddleware(echo_trace)

    async def outer_app(scope: Any, receive: Any, send: Any) -> None:
        await call(inner, {**http_scope(), "headers": [(b"x-request-id", b"sub-2")]})
        copied.append(contextvars.copy_context())  # the outer request's id is current again
        await echo_trace(scope, receive, send)

    await call(ErrorMiddleware(outer_app), {**http_scope(), "headers": [(b"x-request-id", b"req-9")]})
    after: list[str] = []

    async def next_request() -> None:
        second = await call(ErrorMiddleware(echo_trace), http_scope())
        after.append(second["trace_id"])

    await asyncio.get_running_loop().create_task(next_request(), context=copied[0])
    assert after and after[0] not in ("req-9", "sub-2")
