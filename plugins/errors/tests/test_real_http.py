"""ErrorMiddleware behind a real uvicorn server on a loopback socket."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from kernel_errors import ErrorMiddleware, ValidationError

from kernel.web import Receive, Scope, Send

SECRET = "sk_live_51HdOnotLeakThis"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/invalid":
        raise ValidationError(errors={"email": "not an address"})
    if path == "/bug":
        raise RuntimeError(f"stripe key {SECRET} rejected")
    if path == "/late":
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"first chunk ", "more_body": True})
        raise RuntimeError("the generator died half-way")
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        ErrorMiddleware(app), lifespan="off", ws="none", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn only exposes a flag
                await anyio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True
    sock.close()


@pytest.mark.anyio
async def test_problems_over_a_real_socket(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        ok = await client.get("/ok")
        invalid = await client.get("/invalid")
        bug = await client.get("/bug", headers={"x-request-id": "client-req-1"})
    assert ok.status_code == 204 and len(ok.headers["x-request-id"]) == 32
    assert invalid.status_code == 400
    assert invalid.json()["errors"] == [{"field": "email", "message": "not an address"}]
    assert bug.status_code == 500
    assert SECRET not in bug.text and "stripe" not in bug.text
    assert bug.json()["trace_id"] == bug.headers["x-request-id"] == "client-req-1"


@pytest.mark.anyio
async def test_error_after_the_response_started_breaks_the_connection(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[bytes] = []
    seen: dict[str, str] = {}

    async def read_late(client: httpx.AsyncClient) -> None:
        async with client.stream("GET", "/late") as resp:
            seen.update(status=str(resp.status_code), trace_id=resp.headers["x-request-id"])
            async for chunk in resp.aiter_bytes():
                received.append(chunk)

    with caplog.at_level(logging.ERROR, logger="kernel.plugins.errors"):
        async with httpx.AsyncClient(base_url=base_url) as client:
            # The client must see a broken response, not a complete-looking truncated one.
            with pytest.raises(httpx.RemoteProtocolError):
                await read_late(client)
    assert seen["status"] == "200"
    assert b"".join(received) in (b"", b"first chunk ")
    records: list[Any] = [r for r in caplog.records if r.name == "kernel.plugins.errors"]
    assert len(records) == 1
    assert "after the response started" in records[0].getMessage()
    assert records[0].trace_id == seen["trace_id"]
