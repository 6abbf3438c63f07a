"""Fixtures for the metrics plugin tests: a real ``kernel serve`` process on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.testing import asgi_request, http_scope, kill_left_running
from kernel.web import ASGIApp


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """A ``python -m kernel serve`` child process and what it logged."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def start_serve(
    tmp_path: Path,
    toml: str,
    *args: str,
    env: dict[str, str] | None = None,
    ready_path: str = "/health",
    timeout: float = 20,
) -> Served:
    """Write ``toml``, start ``kernel serve`` on a free port and wait until ``ready_path`` answers."""
    config = tmp_path / "kernel.toml"
    config.write_text(toml)
    port = free_port()
    log_path = tmp_path / f"serve-{port}.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL")}
    child_env.update(env or {})
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kernel", "--config", str(config), "serve", "--port", str(port), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=tmp_path,
        )
    served = Served(proc, port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"kernel serve exited with {proc.returncode}:\n{served.log}")
        try:
            httpx.get(served.url + ready_path, timeout=1)
            return served
        except httpx.TransportError:
            time.sleep(0.1)
    served.stop(signal.SIGKILL)
    raise AssertionError(f"kernel serve did not answer within {timeout}s:\n{served.log}")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """``serve(toml, *args, env=...)`` starts a server; every one left running is killed after the test."""
    started: list[Served] = []

    def start(toml: str, *args: str, env: dict[str, str] | None = None) -> Served:
        served = start_serve(tmp_path, toml, *args, env=env)
        started.append(served)
        return served

    yield start
    kill_left_running(served.proc for served in started)


async def call_asgi(app: ASGIApp, path: str, method: str = "GET", **scope_extra: Any) -> int:
    """Send one request straight to an ASGI app (no network); return the status (0 if none was sent)."""
    scope = http_scope(path, method, **scope_extra)
    started = [m for m in await asgi_request(app, scope) if m["type"] == "http.response.start"]
    return int(started[0]["status"]) if started else 0


@pytest.fixture
def asgi_call() -> Callable[..., Any]:
    """:func:`call_asgi` for tests (test modules can't import conftest under importlib mode)."""
    return call_asgi
