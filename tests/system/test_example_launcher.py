"""The example service's launcher (examples/service/run.py): restarts, secrets, stale folders."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.service.run import ROOT, STATE_FILE, TEMP_PREFIX, Stack, process_identity


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL")}
    env.update(extra)
    return env


def alive(pid: int) -> bool:
    """Running (a zombie, exited but not reaped, is not)."""
    return process_identity(pid) is not None


class Launcher:
    """``python -m examples.service.run`` in a private ``TMPDIR``; its output is read by a thread
    so tests can wait for a line (a real signal) with a deadline."""

    def __init__(self, port: int, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "examples.service.run", "--port", str(port), *args],
            cwd=ROOT,
            env=env or clean_env(TMPDIR=str(tmp)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 60.0, *, after: int = 0) -> re.Match[str]:
        """The first output line (from index ``after``) matching ``pattern``; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        with self._changed:
            while True:
                for line in self.lines[after:]:
                    found = regex.search(line)
                    if found:
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or (not self._reader.is_alive()):
                    tail = "\n".join(self.lines[-60:])
                    raise AssertionError(f"no line matching {pattern!r} (exit {self.proc.poll()}):\n{tail}")
                self._changed.wait(min(left, 1.0))

    def ready(self) -> tuple[list[int], list[int]]:
        """Wait for the ready line; return the web and worker pids it names."""
        found = self.wait_for(r"^service ready: .*\(web pids \[([\d, ]*)\], worker pids \[([\d, ]*)\]\)")
        return (
            [int(p) for p in found.group(1).split(",") if p.strip()],
            [int(p) for p in found.group(2).split(",") if p.strip()],
        )

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(k) for k in out.split()]

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60.0) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Launcher]]:
    launchers: list[Launcher] = []

    def start(port: int, *args: str, env: dict[str, str] | None = None) -> Launcher:
        launcher = Launcher(port, tmp_path, *args, env=env)
        launchers.append(launcher)
        return launcher

    yield start
    for launcher in launchers:
        launcher.close()


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def health(url: str) -> dict[str, Any] | None:
    try:
        r = httpx.get(f"{url}/health", trust_env=False, timeout=5)
    except httpx.TransportError:
        return None
    return r.json() if r.status_code == 200 else None


def create_user(url: str, name: str, email: str) -> httpx.Response:
    """``POST /users`` to the example service; fails the test unless the user is created (201)."""
    r = httpx.post(f"{url}/users", json={"name": name, "email": email}, trust_env=False, timeout=10)
    assert r.status_code == 201, r.text
    return r


def test_a_crashed_worker_or_web_process_is_restarted_and_counted(
    launch: Callable[..., Launcher], port_pair: int, tmp_path: Path
) -> None:
    launcher = launch(port_pair)
    webs, workers = launcher.ready()
    first = health(launcher.url)
    assert first is not None and first["supervisor"]["restarts"] == 0, first

    # A crash of the worker: restarted (with its log line), never "stopping the service".
    os.kill(workers[0], signal.SIGKILL)
    exited = launcher.wait_for(
        r"^worker0 \(pid (\d+)\) exited with signal SIGKILL; restarting it in ([\d.]+)s$"
    )
    assert int(exited.group(1)) == workers[0] and float(exited.group(2)) > 0
    new_worker = int(launcher.wait_for(r"^worker0 restarted \(pid (\d+), restart 1\)").group(1))
    assert new_worker != workers[0] and alive(new_worker)
    report = wait_until(
        lambda: (h := health(launcher.url)) and h["supervisor"]["restarts"] >= 1 and h,
        "/health to count the restart",
    )
    assert report["supervisor"]["processes"]["worker0"] == {"restarts": 1, "running": True}
    assert report["status"] == "ok"

    # The service keeps working end to end: the new worker sends the new user's notification.
    r = create_user(launcher.url, "Grace", "grace@example.org")
    launcher.wait_for("notification sent", timeout=60)

    # A crash of the web process: restarted on the same port; /health answers again.
    os.kill(webs[0], signal.SIGKILL)
    launcher.wait_for(r"^web0 \(pid \d+\) exited with signal SIGKILL")
    new_web = int(launcher.wait_for(r"^web0 restarted \(pid (\d+), restart 1\)").group(1))
    report = wait_until(lambda: health(launcher.url), "the restarted web process to answer")
    assert report["supervisor"]["restarts"] == 2
    assert report["supervisor"]["processes"]["web0"]["restarts"] == 1
    assert launcher.proc.poll() is None
    assert "stopping the service" not in launcher.output
    # The user stored before the web crash is still there: nothing deleted the embedded data.
    user = httpx.get(f"{launcher.url}/users/{r.json()['id']}", trust_env=False, timeout=10)
    assert user.status_code == 200 and user.json()["name"] == "Grace"

    # Only SIGTERM stops it: everything, cleanly.
    kids = launcher.children()
    assert new_web in kids and new_worker in kids
    assert launcher.stop(signal.SIGTERM) == 0, launcher.output
    assert "service stopped: exit codes {'web0': 0, 'worker0': 0}" in launcher.output
    wait_until(lambda: not any(alive(k) for k in kids), "every child to exit", timeout=15)
    assert list(tmp_path.iterdir()) == []


def _redis_password(pid: int) -> str:
    """The embedded Redis password, from the child's environment (readable by its owner only)."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    url = next(e for e in environ if e.startswith(b"KERNEL__PLUGINS__REDIS__URL=")).decode().split("=", 1)[1]
    password = httpx.URL(url).password
    assert password, "the embedded Redis has no password"
    return password


def _unauthenticated_ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(200)


def test_embedded_redis_has_a_password_that_no_command_line_shows(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(web=1, workers=1)
    assert _unauthenticated_ping(stack.redis.port).startswith(b"-NOAUTH"), "anyone local could use the Redis"
    password = _redis_password(stack.webs[0].pid)
    pids = [stack.webs[0].pid, stack.workers[0].pid, stack.redis.pid, stack.mongo.pid]
    for pid in pids:
        assert pid is not None
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert password not in cmdline, cmdline.replace(password, "***")
        # ... nor on the command line of anything they start (uvicorn workers, ...).
        for kid in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split():
            assert password not in Path(f"/proc/{kid}/cmdline").read_bytes().decode(errors="replace")
    # Web and worker use it: the whole flow works.
    assert stack.webs[0].url is not None
    create_user(stack.webs[0].url, "Ada", "ada@example.org")
    wait_until(lambda: "notification sent" in stack.workers[0].log, "the worker to send the notification")
    assert password not in stack.webs[0].log + stack.workers[0].log


def test_a_launcher_url_with_a_password_must_come_from_the_environment(
    launch: Callable[..., Launcher], port_pair: int
) -> None:
    for option, url in (
        ("--redis-url", "redis://:s3cret-Pa55@127.0.0.1:1/0"),
        ("--mongo-uri", "mongodb://app:s3cret-Pa55@127.0.0.1:1/"),
        ("--redis-url", "redis://127.0.0.1:1/0?password=s3cret-Pa55"),
    ):
        launcher = launch(port_pair, option, url)
        assert launcher.proc.wait(60) == 2
        launcher.close()
        assert f"{option} contains credentials" in launcher.output
        assert "KERNEL__PLUGINS__" in launcher.output
        assert "s3cret-Pa55" not in launcher.output


def test_the_next_start_removes_the_folders_a_killed_launcher_left(
    launch: Callable[..., Launcher], port_pair: int, tmp_path: Path
) -> None:
    killed = launch(port_pair)
    killed.ready()
    kids = killed.children()
    assert len(kids) == 4, kids
    left = set(tmp_path.iterdir())  # the servers' data and config, metrics, ready files
    assert left
    assert killed.stop(signal.SIGKILL) == -signal.SIGKILL
    wait_until(lambda: not any(alive(k) for k in kids), "the killed launcher's children to exit", timeout=30)
    assert set(tmp_path.iterdir()) == left  # nothing cleaned up: SIGKILL runs no code

    # A folder whose owner still runs is never touched (here: a live process's identity).
    live = tmp_path / f"{TEMP_PREFIX}live"
    live.mkdir()
    (live / STATE_FILE).write_text(f'{{"owners": ["{process_identity(os.getpid())}"], "servers": []}}')

    again = launch(port_pair)
    again.ready()
    assert not (left & set(tmp_path.iterdir())), "the stale folders are still there"
    removed = [line for line in again.lines if line.startswith("removed ")]
    assert len(removed) == 1 and "left behind by a launcher that was killed" in removed[0], again.output
    assert live.exists()
    assert again.stop(signal.SIGTERM) == 0, again.output
    assert set(tmp_path.iterdir()) == {live}


def test_restart_backoff_doubles_up_to_the_cap_and_resets_after_a_stable_run(tmp_path: Path) -> None:
    """The supervisor's schedule, with a real process that keeps crashing (exit 3) and the clock
    handed to :meth:`Stack.supervise` (no waiting for the delays themselves)."""
    from examples.service.run import BACKOFF_FIRST, BACKOFF_MAX, STABLE_AFTER, Child

    stack = Stack(web=1, workers=0)
    crasher = Child("web0", [sys.executable, "-c", "raise SystemExit(3)"], clean_env(), tmp_path / "web0.log")
    stack.webs = [crasher]
    crasher.start()
    delays: list[float] = []
    now = time.monotonic()
    try:
        for restart in range(1, 10):
            assert crasher.proc is not None
            crasher.proc.wait(30)
            (died,) = stack.supervise(now)
            found = re.fullmatch(r"web0 \(pid \d+\) exited with code 3; restarting it in ([\d.]+)s", died)
            assert found, died
            delays.append(float(found.group(1)))
            assert stack.supervise(now + delays[-1] - 0.01) == []  # not before its delay
            (started,) = stack.supervise(now + delays[-1])
            assert re.fullmatch(rf"web0 restarted \(pid \d+, restart {restart}\)", started), started
            now += delays[-1]
        assert delays == [min(BACKOFF_FIRST * 2**i, BACKOFF_MAX) for i in range(9)]
        assert delays[-1] == BACKOFF_MAX

        # It stays up long enough: the next crash is restarted after the first delay again.
        assert crasher.proc is not None
        crasher.proc.wait(30)
        stack.supervise(now)
        crasher.argv = [sys.executable, "-c", "import signal; signal.pause()"]
        (started,) = stack.supervise(now + BACKOFF_MAX)
        assert "restart 10" in started
        assert stack.supervise(crasher.started_at + STABLE_AFTER) == []
        assert crasher.failures == 0
        crasher.kill()
        (died,) = stack.supervise(crasher.started_at + STABLE_AFTER + 1)
        assert died.endswith(f"exited with signal SIGKILL; restarting it in {BACKOFF_FIRST:g}s"), died
    finally:
        crasher.kill()
        crasher.close()
