"""``kernel serve`` at SIGTERM, on a real served process: readiness 503 first, then a bounded drain."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kernel.process import free_port

pytest.importorskip("uvicorn", reason="kernel serve needs the serve extra")

# A plugin with a slow route; the module also serves it, as ``kernel serve`` serves a kernel
# (``python slowserve.py PORT DELAY TIMEOUT``), and as a host app (``kernel serve --app slowserve:app``).
SLOW = """
import os
import sys
from pathlib import Path
from urllib.parse import parse_qsl

import anyio

from kernel import Kernel, Plugin, Route, hookimpl
from kernel.web import KernelApp, LifespanMiddleware, serve


async def slow(scope, receive, send):
    seconds = float(dict(parse_qsl(scope["query_string"].decode()))["s"])
    Path(os.environ["SLOW_MARK"]).write_text("started")
    await anyio.sleep(seconds)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
    await send({"type": "http.response.body", "body": b"done"})


class Slow(Plugin):
    name = "slow"

    @hookimpl
    def kernel_routes(self):
        return [Route("/slow", slow)]


def build(settings=None):
    if settings is None:
        return Kernel.from_config(plugins=[Slow], entry_points=False, configure_logs=True)
    table = {"plugins": ["slow"], **settings}
    return Kernel.from_dict({"kernel": table}, plugins=[Slow], entry_points=False, configure_logs=True)


if __name__ == "__main__":
    port, delay, timeout = sys.argv[1:]
    kernel = build({"drain_delay": float(delay), "drain_timeout": float(timeout)})
    raise SystemExit(serve(kernel, port=int(port), access_log=False))

kernel = build() if os.environ.get("KERNEL_CONFIG") else None
app = LifespanMiddleware(KernelApp(kernel), kernel) if kernel is not None else None
"""


class Served:
    """A ``kernel serve`` subprocess on a free loopback port, its stderr in a file."""

    def __init__(self, tmp_path: Path, argv: list[str], port: int) -> None:
        self.port = port
        self.mark = tmp_path / "slow.started"
        self.log = tmp_path / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL")}
        env["SLOW_MARK"] = str(self.mark)
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
        with self.log.open("w") as err:
            self.proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err)

    def get(self, path: str, timeout: float = 30) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
        """Poll a state of the subprocess (its port, a file it writes) until true, with a deadline."""
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc.poll() is None, f"kernel serve exited while waiting for {what}:\n{self.text}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.text}"
            time.sleep(0.02)

    def listening(self) -> bool:
        try:
            return self.get("/health/live", timeout=2)[0] == 200
        except OSError:
            return False

    @property
    def text(self) -> str:
        return self.log.read_text()


@pytest.fixture
def serve_slow(tmp_path: Path) -> Iterator[Callable[[list[str]], Served]]:
    (tmp_path / "slowserve.py").write_text(SLOW)
    started: list[Served] = []

    def start(argv: list[str]) -> Served:
        port = free_port()
        served = Served(tmp_path, [a.replace("{port}", str(port)) for a in argv], port)
        started.append(served)
        served.wait_for(served.listening, "kernel serve to listen")
        return served

    yield start
    for served in started:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait(timeout=30)


class Outcome:
    """What a request made in a thread got, and when it ended."""

    status: int | None = None
    body: bytes = b""
    error: OSError | None = None
    ended: float | None = None

    def __repr__(self) -> str:
        return f"<Outcome status={self.status} body={self.body[:80]!r} error={self.error!r}>"


def slow_request(served: Served, seconds: float) -> tuple[threading.Thread, Outcome]:
    """GET /slow?s=seconds in a thread, once the server has started it."""
    outcome = Outcome()

    def run() -> None:
        try:
            outcome.status, outcome.body = served.get(f"/slow?s={seconds}", timeout=120)
        except OSError as exc:
            outcome.error = exc
        outcome.ended = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    served.wait_for(lambda: served.mark.exists() or outcome.ended is not None, "the slow request to start")
    assert outcome.ended is None, (outcome, served.text)
    return thread, outcome


def readiness_503(served: Served) -> bytes:
    """Poll /health/ready until it answers 503; its body."""
    seen: list[tuple[int, bytes]] = [(0, b"")]

    def is_503() -> bool:
        seen.append(served.get("/health/ready"))
        return seen[-1][0] == 503

    served.wait_for(is_503, "readiness 503")
    return seen[-1][1]


def test_sigterm_turns_readiness_503_first_and_the_in_flight_request_completes(
    serve_slow: Callable[[list[str]], Served],
) -> None:
    delay, timeout = 2.0, 15.0
    served = serve_slow([sys.executable, "slowserve.py", "{port}", str(delay), str(timeout)])
    status, body = served.get("/health/ready")
    assert (status, json.loads(body)["status"]) == (200, "ok"), body
    thread, outcome = slow_request(served, 3.0)

    signalled = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    ready = readiness_503(served)
    seen_503 = time.monotonic()
    live = served.get("/health/live")
    assert json.loads(ready) == {"status": "draining"}
    assert live == (200, b'{"status":"alive"}')  # liveness stays 200 while draining

    thread.join(timeout=60)
    assert (outcome.status, outcome.body) == (200, b"done"), (outcome, served.text)
    assert outcome.ended is not None and seen_503 < outcome.ended  # flipped while it was in flight
    code = served.proc.wait(timeout=60)
    exited = time.monotonic() - signalled
    assert code == 0, served.text
    assert exited < timeout, f"exited {exited:.1f}s after SIGTERM, deadline {timeout}s"
    assert "SIGTERM: /health/ready answers 503; serving 2s more" in served.text
    assert "kernel serve: drained: no request in flight" in served.text


def test_a_request_still_running_at_the_deadline_is_cut_and_the_exit_says_so(
    serve_slow: Callable[[list[str]], Served], tmp_path: Path
) -> None:
    config = "[kernel]\nplugins = ['slow']\ndrain_delay = 0.5\ndrain_timeout = 2.0\n"
    (tmp_path / "kernel.toml").write_text(config)
    kernel = [sys.executable, "-m", "kernel", "--config", "kernel.toml"]
    served = serve_slow([*kernel, "serve", "--app", "slowserve:app", "--port", "{port}", "--no-access-log"])
    thread, outcome = slow_request(served, 60.0)
    signalled = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    code = served.proc.wait(timeout=60)
    exited = time.monotonic() - signalled
    thread.join(timeout=30)
    assert code == 1, served.text
    assert 2.0 <= exited < 2.0 + 5.0, f"exited {exited:.1f}s after SIGTERM; drain_timeout 2s"
    assert outcome.status == 503, (outcome, served.text)
    assert json.loads(outcome.body)["detail"] == "cut at the drain deadline"
    assert "drain deadline of 2s passed: 1 in-flight request(s) cut" in served.text
    assert "kernel serve: stopped; 1 request(s) were cut at the drain deadline" in served.text


def test_invalid_drain_settings_stop_kernel_serve_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "kernel.toml").write_text("[kernel]\ndrain_delay = 30\n")
    (tmp_path / "slowserve.py").write_text(SLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL")}
    env["KERNEL__KERNEL__DRAIN_TIMEOUT"] = "20"
    result = subprocess.run(
        [sys.executable, "-m", "kernel", "--config", "kernel.toml", "serve", "--app", "slowserve:app"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    expected = "kernel.drain_delay: must be less than drain_timeout (20), the deadline it is part of"
    assert f"error: {expected}, got 30.0" in result.stderr


def test_a_second_sigterm_ends_the_delay_early(serve_slow: Callable[[list[str]], Served]) -> None:
    delay = 60.0  # far longer than this test may take: only the second signal can end it
    served = serve_slow([sys.executable, "slowserve.py", "{port}", str(delay), "90"])
    served.proc.send_signal(signal.SIGTERM)
    readiness_503(served)
    assert served.get("/health/live")[0] == 200  # still serving during the delay
    second = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    code = served.proc.wait(timeout=delay / 2)
    assert code == 0, served.text
    assert time.monotonic() - second < delay / 2
    assert "kernel serve: no longer accepting connections; 0 request(s) in flight" in served.text
