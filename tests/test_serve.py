"""``kernel serve``: the served app's lifespan, and the CLI without uvicorn installed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from kernel import Plugin, PluginContext, Route, hookimpl
from kernel._plugin import Receive, Scope, Send
from kernel.testing import make_kernel
from kernel.web._serve import ServedApp

EVENTS: list[str] = []


class Needy(Plugin):
    """Its route needs a service that exists only after its lifespan started."""

    name = "needy"

    @hookimpl
    async def kernel_lifespan(self, ctx: PluginContext[Any]) -> AsyncIterator[None]:
        EVENTS.append("start")
        ctx.provide("started", name="state", types=())
        yield
        EVENTS.append("stop")

    @hookimpl
    def kernel_routes(self, ctx: PluginContext[Any]) -> list[Route]:
        state = ctx.registry.get("state")

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": state.encode()})

        return [Route("/state", app)]


class Broken(Plugin):
    name = "broken"

    @hookimpl
    async def kernel_lifespan(self) -> AsyncIterator[None]:
        raise RuntimeError("cannot start")
        yield


async def request(app: Any, path: str, state: dict[str, Any]) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": [], "state": dict(state)}
    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def lifespan(app: Any, state: dict[str, Any], during: Any = None) -> list[str]:
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []
    started = anyio.Event()
    proceed = anyio.Event()

    async def receive() -> dict[str, Any]:
        message = inbox.pop(0)
        if message["type"] == "lifespan.shutdown":
            started.set()
            await proceed.wait()
        return message

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])
        if message["type"] == "lifespan.startup.failed":
            started.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(app, {"type": "lifespan", "state": state}, receive, send)
        await started.wait()
        if during is not None:
            await during()
        proceed.set()
    return sent


@pytest.mark.anyio
async def test_served_app_boots_builds_routes_after_boot_and_tears_down() -> None:
    EVENTS.clear()
    app = ServedApp(lambda: make_kernel(Needy, entry_points=False))
    state: dict[str, Any] = {}
    before = await request(app, "/state", state)
    results: list[tuple[int, bytes]] = []

    async def during() -> None:
        results.append(await request(app, "/state", state))
        results.append(await request(app, "/health", state))

    sent = await lifespan(app, state, during)
    assert before[0] == 503
    assert results[0] == (200, b"started")
    assert results[1][0] == 200
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert EVENTS == ["start", "stop"]
    assert "kernel" in state


@pytest.mark.anyio
async def test_boot_failure_fails_the_startup(caplog: pytest.LogCaptureFixture) -> None:
    app = ServedApp(lambda: make_kernel(Broken, entry_points=False))
    sent = await lifespan(app, {})
    assert sent == ["lifespan.startup.failed"]
    assert "kernel serve: startup failed" in caplog.text
    assert "cannot start" in caplog.text


class Clashing(Plugin):
    """Boots fine, but two of its routes claim the same path: the app cannot be built."""

    name = "clashing"

    @hookimpl
    async def kernel_lifespan(self) -> AsyncIterator[None]:
        EVENTS.append("start")
        yield
        EVENTS.append("stop")

    @hookimpl
    def kernel_routes(self) -> list[Route]:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            raise AssertionError("never served")

        return [Route("/twice", app), Route("/twice", app)]


@pytest.mark.anyio
async def test_an_app_that_cannot_be_built_fails_the_startup_and_stops_the_kernel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    EVENTS.clear()
    app = ServedApp(lambda: make_kernel(Clashing, entry_points=False))
    sent = await lifespan(app, {})
    assert sent == ["lifespan.startup.failed"]
    assert "kernel serve: startup failed: two routes claim '/twice'" in caplog.text
    assert EVENTS == ["start", "stop"]


def test_serve_with_workers_needs_an_import_string() -> None:
    from kernel.web import serve

    with pytest.raises(ValueError, match=r"serve\(workers=2\) needs the app as a 'module:attr'"):
        serve(make_kernel(Needy, entry_points=False), workers=2)


def test_serve_without_uvicorn_says_how_to_install(tmp_path: Path) -> None:
    config = tmp_path / "kernel.toml"
    config.write_text("[kernel]\nplugins = []\n")
    code = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "from kernel._cli import main\n"
        f"raise SystemExit(main(['--config', {str(config)!r}, 'serve']))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "kernel serve needs uvicorn: pip install 'milo-kernel[serve]'" in result.stderr


LEAKY_APP = """
import contextvars
import json

# A library that sets a context variable and never resets it.
LEAK = contextvars.ContextVar("leak", default=None)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    before = LEAK.get()
    LEAK.set(dict(scope["headers"]).get(b"x-tag", b"").decode())
    more = True
    while more:  # a body above 64 KiB makes uvicorn pause reading and resume it from this task
        message = await receive()
        more = message.get("more_body", False)
    body = json.dumps({"before": before}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("size", [70_000, 10_000], ids=["above-64KiB", "below-64KiB"])
def test_serve_starts_every_request_from_a_fresh_context(tmp_path: Path, size: int) -> None:
    import http.client
    import inspect
    import json
    import time

    uvicorn = pytest.importorskip("uvicorn", reason="kernel serve needs the serve extra")
    if "reset_contextvars" not in inspect.signature(uvicorn.Config).parameters:
        pytest.skip("uvicorn < 0.45 has no reset_contextvars (the errors middleware covers its own state)")
    (tmp_path / "leaky.py").write_text(LEAKY_APP)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL")}
    log = tmp_path / "serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kernel",
                "--config",
                str(tmp_path / "kernel.toml"),
                "serve",
                "--app",
                "leaky:app",
                "--app-dir",
                str(tmp_path),
                "--port",
                str(port),
                "--no-access-log",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 60
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:  # wait until it listens
            try:
                conn.connect()
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "kernel serve did not start listening"
                time.sleep(0.05)  # polling a subprocess's port, with a deadline
        seen = []
        for tag, body in (("poison-1", b"x" * size), ("second", b"{}"), ("third", b"{}")):
            conn.request("POST", "/", body=body, headers={"x-tag": tag})
            resp = conn.getresponse()
            assert resp.status == 200, log.read_text()
            seen.append(json.loads(resp.read())["before"])
        assert seen == [None, None, None]  # one keep-alive connection, nothing inherited
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
