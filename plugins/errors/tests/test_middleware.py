"""ErrorMiddleware over real ASGI apps: problem+json, no leaks, trace ids in body, header and logs."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from kernel_errors import (
    PROBLEM_JSON,
    AppError,
    ConflictError,
    DatabaseError,
    ErrorMiddleware,
    Internal,
    NotFoundError,
    ProblemRenderer,
    RateLimitError,
    ServiceUnavailableError,
    ValidationError,
)

from kernel.logging import get_trace_id, trace_context
from kernel.testing import asgi_request
from kernel.web import Message, Receive, Scope, Send

SECRET = "postgres://admin:hunter2@db.internal:5432"


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The errors plugin's own records (other libraries, e.g. httpx, log too)."""
    return [r for r in caplog.records if r.name == "kernel.plugins.errors"]


def app_raising(exc: BaseException | None, *, after_start: bool = False) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if after_start:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        if exc is not None:
            raise exc
        body = json.dumps({"trace_id": get_trace_id()}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


async def call(app: Any, path: str = "/things/1", headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get(path, headers=headers)


@pytest.mark.anyio
async def test_operational_error_renders_rfc9457_problem() -> None:
    resp = await call(ErrorMiddleware(app_raising(NotFoundError("User", {"user_id": "42"}))))
    assert resp.status_code == 404
    assert resp.headers["content-type"] == PROBLEM_JSON
    body = resp.json()
    assert body["type"] == "about:blank"
    assert body["title"] == "Not Found"
    assert body["status"] == 404
    assert body["detail"] == "User not found"
    assert body["code"] == "NOT_FOUND"
    assert body["instance"] == "/things/1"
    assert "context" not in body  # off by default: context is for the logs
    assert body["trace_id"] == resp.headers["x-request-id"]
    assert set(body) == {"type", "title", "status", "detail", "code", "instance", "trace_id"}


@pytest.mark.anyio
async def test_unexpected_exception_body_carries_only_the_trace_id(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="kernel.plugins.errors"):
        resp = await call(ErrorMiddleware(app_raising(RuntimeError(f"cannot connect to {SECRET}"))))
    assert resp.status_code == 500
    assert "hunter2" not in resp.text
    assert "RuntimeError" not in resp.text
    assert "Traceback" not in resp.text
    body = resp.json()
    assert body["code"] == "INTERNAL_ERROR"
    assert set(body) == {"type", "title", "status", "detail", "code", "instance", "trace_id"}
    # ... while the operator gets everything, tied to the same trace id.
    (record,) = ours(caplog)
    assert record.trace_id == body["trace_id"]  # type: ignore[attr-defined]
    assert record.exc_info is not None
    assert "cannot connect" in record.getMessage()


@pytest.mark.anyio
async def test_programming_app_error_is_hidden_like_any_bug() -> None:
    resp = await call(
        ErrorMiddleware(app_raising(AppError("invariant broken: x<0", is_operational=False, status_code=400)))
    )
    assert resp.status_code == 500
    assert "invariant" not in resp.text


@pytest.mark.anyio
async def test_internal_context_is_never_rendered() -> None:
    exc = ValidationError("Bad email", {"field": "email"}, internal={"db_host": "db.internal", "dsn": SECRET})
    resp = await call(ErrorMiddleware(app_raising(exc)))
    assert resp.status_code == 400
    assert "db.internal" not in resp.text and "hunter2" not in resp.text
    assert resp.json()["errors"] == [{"field": "email", "message": "Bad email"}]


@pytest.mark.anyio
async def test_context_can_be_exposed_and_type_uris_configured() -> None:
    renderer = ProblemRenderer(type_base_url="https://errors.example.com/", expose_context=True)
    exc = NotFoundError("User", {"user_id": "42", "query": Internal({"email": "a@b.c"})})
    resp = await call(ErrorMiddleware(app_raising(exc), renderer=renderer))
    body = resp.json()
    assert body["type"] == "https://errors.example.com/not-found"
    assert body["context"] == {"user_id": "42"}  # the Internal-marked entry stays out
    assert "a@b.c" not in resp.text
    bug = await call(ErrorMiddleware(app_raising(KeyError("k")), renderer=renderer))
    assert bug.json()["type"] == "https://errors.example.com/internal-error"


@pytest.mark.anyio
async def test_context_and_internal_data_go_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    exc = ConflictError("User already exists", {"email": "a@b.c"}, internal={"index": "email_1"})
    with caplog.at_level(logging.INFO, logger="kernel.plugins.errors"):
        resp = await call(ErrorMiddleware(app_raising(exc)))
    assert resp.status_code == 409
    assert "email_1" not in resp.text and "a@b.c" not in resp.text
    (record,) = ours(caplog)
    assert record.levelno == logging.INFO  # 4xx: the client's mistake, not an alert
    assert record.context == {"email": "a@b.c"}  # type: ignore[attr-defined]
    assert record.internal == {"index": "email_1"}  # type: ignore[attr-defined]
    assert record.error_code == "CONFLICT"  # type: ignore[attr-defined]
    assert record.trace_id == resp.headers["x-request-id"]  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_client_error_log_level_is_configurable(caplog: pytest.LogCaptureFixture) -> None:
    app = ErrorMiddleware(app_raising(NotFoundError("User")), client_error_level=logging.DEBUG)
    with caplog.at_level(logging.DEBUG, logger="kernel.plugins.errors"):
        await call(app)
    assert [r.levelno for r in ours(caplog)] == [logging.DEBUG]


@pytest.mark.anyio
async def test_operational_5xx_logs_at_error_with_the_traceback(caplog: pytest.LogCaptureFixture) -> None:
    exc = DatabaseError.from_exception(TimeoutError(f"timed out talking to {SECRET}"))
    with caplog.at_level(logging.INFO, logger="kernel.plugins.errors"):
        resp = await call(ErrorMiddleware(app_raising(exc)))
    assert resp.status_code == 500
    assert resp.json()["detail"] == "A database error occurred"
    assert resp.json()["code"] == "DATABASE_ERROR"
    assert "hunter2" not in resp.text and "timed out" not in resp.text
    (record,) = ours(caplog)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "hunter2" in record.internal["cause"]  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_a_task_group_wrapping_one_app_error_renders_that_error() -> None:
    group = ExceptionGroup("unhandled errors in a TaskGroup", [NotFoundError("Order")])
    resp = await call(ErrorMiddleware(app_raising(group)))
    assert resp.status_code == 404
    assert resp.json()["detail"] == "Order not found"
    several = ExceptionGroup("two", [NotFoundError("Order"), ValueError(SECRET)])
    resp = await call(ErrorMiddleware(app_raising(several)))
    assert resp.status_code == 500
    assert "hunter2" not in resp.text and "Order" not in resp.text


@pytest.mark.anyio
async def test_retry_after_header() -> None:
    resp = await call(ErrorMiddleware(app_raising(RateLimitError(retry_after=12.5))))
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "13"
    assert resp.json()["code"] == "RATE_LIMITED"
    unavailable = await call(ErrorMiddleware(app_raising(ServiceUnavailableError(retry_after=5))))
    assert (unavailable.status_code, unavailable.headers["retry-after"]) == (503, "5")


@pytest.mark.anyio
async def test_trace_id_from_caller_is_used_when_well_formed() -> None:
    app = ErrorMiddleware(app_raising(None))
    ok = await call(app, headers={"x-request-id": "req-123.abc"})
    assert ok.json()["trace_id"] == "req-123.abc"
    assert ok.headers["x-request-id"] == "req-123.abc"
    tp = await call(app, headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    assert tp.json()["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    hostile = await call(app, headers={"x-request-id": "x" * 500})
    assert hostile.json()["trace_id"] != "x" * 500
    assert len(hostile.json()["trace_id"]) == 32
    injected = await call(app, headers={"x-request-id": "a\tb"})
    assert injected.json()["trace_id"] != "a\tb"


@pytest.mark.anyio
async def test_error_after_response_started_is_logged_and_the_response_not_faked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    app = ErrorMiddleware(app_raising(RuntimeError("late"), after_start=True))
    with caplog.at_level(logging.ERROR, logger="kernel.plugins.errors"):
        await app({"type": "http", "method": "GET", "path": "/x", "headers": []}, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[-1].get("more_body") is True  # never completed: the server closes the connection
    assert "after the response started" in caplog.text


@pytest.mark.anyio
async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def noop_receive() -> dict[str, Any]:
        return {}

    async def noop_send(message: Any) -> None:
        return None

    await ErrorMiddleware(inner)({"type": "lifespan"}, noop_receive, noop_send)
    assert seen == ["lifespan"]


@pytest.mark.anyio
async def test_inside_a_starlette_app() -> None:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def user(request: Request) -> JSONResponse:
        raise NotFoundError("User", {"user_id": request.path_params["uid"]})

    async def boom(request: Request) -> JSONResponse:
        raise KeyError(SECRET)

    app = Starlette(
        routes=[Route("/users/{uid}", user), Route("/boom", boom)], middleware=[Middleware(ErrorMiddleware)]
    )
    resp = await call(app, "/users/7", headers={"x-request-id": "abc-123"})
    assert resp.status_code == 404
    assert resp.headers["content-type"] == PROBLEM_JSON
    assert resp.json()["detail"] == "User not found"
    assert resp.json()["trace_id"] == resp.headers["x-request-id"] == "abc-123"
    boom_resp = await call(app, "/boom")
    assert boom_resp.status_code == 500
    assert boom_resp.json()["code"] == "INTERNAL_ERROR"
    assert "hunter2" not in boom_resp.text and "KeyError" not in boom_resp.text


@pytest.mark.anyio
async def test_a_trace_id_set_upstream_is_kept() -> None:
    with trace_context("set-by-the-host"):
        resp = await call(ErrorMiddleware(app_raising(None)))
    assert resp.json()["trace_id"] == resp.headers["x-request-id"] == "set-by-the-host"


@pytest.mark.anyio
async def test_nested_middleware_steps_aside(caplog: pytest.LogCaptureFixture) -> None:
    inner = ErrorMiddleware(
        app_raising(RuntimeError(SECRET)), renderer=ProblemRenderer(type_base_url="https://inner.example/")
    )
    with caplog.at_level(logging.ERROR, logger="kernel.plugins.errors"):
        resp = await call(ErrorMiddleware(inner))
    assert resp.status_code == 500
    assert len(resp.headers.get_list("x-request-id")) == 1
    assert len(ours(caplog)) == 1
    assert ours(caplog)[0].trace_id == resp.json()["trace_id"]  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_log_line_from_the_kernel_json_handler(capsys: pytest.CaptureFixture[str]) -> None:
    from kernel import Secret
    from kernel.logging import configure_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging(env="production", level="INFO", fmt="json")  # binds the captured stderr
    try:
        exc = ServiceUnavailableError("Search is down", {"backend": "es"}, internal={"dsn": Secret(SECRET)})
        resp = await call(ErrorMiddleware(app_raising(exc)))
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if '"kernel.plugins.errors"' in x]
    assert len(lines) == 1
    line = lines[0]
    assert line["trace_id"] == resp.headers["x-request-id"]
    assert (line["status"], line["error_code"]) == (503, "SERVICE_UNAVAILABLE")
    assert line["context"] == {"backend": "es"}
    assert "hunter2" not in json.dumps(line)  # a Secret stays masked even in the operator log
    assert "Traceback" in line["exception"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exc", "after_start", "status"),
    [
        (None, False, 200),
        (NotFoundError("User", {"user_id": "42"}), False, 404),
        (RuntimeError("boom"), False, 500),
        (RuntimeError("boom"), True, 200),  # started: the status stays the one sent
    ],
)
async def test_the_response_status_is_recorded_in_the_scope(
    exc: BaseException | None, after_start: bool, status: int
) -> None:
    from kernel.web import RESPONSE_STATUS

    app = ErrorMiddleware(app_raising(exc, after_start=after_start))
    assert app.records_response_status is True
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/things/1", "headers": []}
    sent = [m["status"] for m in await asgi_request(app, scope) if m["type"] == "http.response.start"]
    assert scope[RESPONSE_STATUS] == sent[-1] == status


@pytest.mark.anyio
async def test_a_nested_error_middleware_still_records_the_status() -> None:
    from kernel.web import RESPONSE_STATUS

    seen: list[Any] = []

    async def probe(scope: Scope, receive: Receive, send: Send) -> None:
        await inner(scope, receive, send)
        seen.append(scope.get(RESPONSE_STATUS))

    inner = ErrorMiddleware(app_raising(None))
    resp = await call(ErrorMiddleware(probe))
    assert resp.status_code == 200
    assert seen == [200]  # written by the inner, pass-through layer before the outer one returns
