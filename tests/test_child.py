"""ChildServer: a private server child process that starts, answers, stops, and never outlives us."""

from __future__ import annotations

import os
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path
from typing import ClassVar

import pytest

from kernel.process import ChildServer, die_with_parent, free_port
from kernel.testing import assert_dies_with_parent, assert_startup_times_out
from kernel.testing import process_alive as alive

# A line server: answers "pong\n" to any line. Behaviour switches come from argv.
SERVER = textwrap.dedent("""
    import signal, socket, sys, time
    port, mode = int(sys.argv[1]), sys.argv[2]
    if mode == "crash":
        print("fatal: bad config line 3", file=sys.stderr, flush=True)
        sys.exit(3)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "mute":
        time.sleep(60)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError as exc:
        print(f"bind: {exc.strerror.lower()}", file=sys.stderr, flush=True)
        sys.exit(1)
    s.listen()
    print("listening", flush=True)
    while True:
        conn, _ = s.accept()
        with conn:
            conn.recv(100)
            conn.sendall(b"pong\\n")
""")


class LineServerError(RuntimeError):
    pass


class LineServer(ChildServer):
    error: ClassVar[type[Exception]] = LineServerError
    probe_name = "pong"
    port_in_use_text = "address already in use"

    def __init__(self, mode: str = "ok", **kwargs: object) -> None:
        super().__init__(prefix="kernel-test-", **kwargs)  # type: ignore[arg-type]
        self.mode = mode
        self.prepared = 0

    def _prepare(self) -> None:
        self.prepared += 1

    def _argv(self) -> list[str]:
        return [sys.executable, "-c", SERVER, str(self._port), self.mode]

    def _probe(self, timeout: float) -> None:
        with socket.create_connection(("127.0.0.1", self._port), timeout=timeout) as sock:
            sock.sendall(b"ping\n")
            if sock.recv(10) != b"pong\n":
                raise LineServerError("no pong")


def test_start_answer_stop_restart_close() -> None:
    server = LineServer()
    workdir = server.workdir
    with server:
        assert server.running and server.pid is not None and server.port > 0
        assert server.prepared == 1
        server._probe(1.0)
        first_pid, port = server.pid, server.port
        assert "listening" in server.log_tail()
        server.restart()
        assert server.port == port  # same port after a restart
        assert server.pid != first_pid and server.prepared == 2
        server._probe(1.0)
        server.stop()
        assert not server.running and server.pid is None and not alive(first_pid)
        assert workdir.is_dir()  # stop keeps the directory
    assert not workdir.exists()  # close removes it
    assert "stopped" in repr(server)


def test_a_child_that_dies_at_startup_raises_with_its_log_tail() -> None:
    server = LineServer("crash")
    try:
        with pytest.raises(LineServerError, match=r"LineServer exited with code 3 during startup") as info:
            server.start()
        assert "fatal: bad config line 3" in str(info.value)
    finally:
        server.close()


def test_a_child_that_never_answers_times_out_and_is_stopped() -> None:
    assert_startup_times_out(LineServer("mute", startup_timeout=0.5), r"did not answer pong within 0\.5s")


def test_stop_kills_a_child_that_ignores_sigterm() -> None:
    with LineServer("stubborn") as server:
        pid, proc = server.pid, server._proc
        assert pid is not None and proc is not None
        t0 = time.monotonic()
        server.stop(timeout=0.3)
        elapsed = time.monotonic() - t0
        assert 0.3 <= elapsed < 5  # waited out the ignored SIGTERM, then did not hang
        assert proc.returncode == -signal.SIGKILL and not alive(pid)


def test_a_taken_port_picked_by_us_is_replaced_by_another() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        server = LineServer()
        server._port = taken  # as if free_port() had raced with another process
        try:
            server.start()
            assert server.port != taken and server.running
        finally:
            server.close()


def test_a_fixed_port_that_is_taken_is_an_error() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        server = LineServer(port=blocker.getsockname()[1])
        try:
            with pytest.raises(LineServerError, match="exited with code 1"):
                server.start()
        finally:
            server.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_the_child_dies_with_a_sigkilled_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_child import LineServer
        server = LineServer().start()
        print(server.pid, flush=True)
        time.sleep(60)
    """)
    assert_dies_with_parent(script, env={**os.environ, "TMPDIR": str(tmp_path)}, what="the server")


def test_free_port_and_die_with_parent() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nothing listens there
    hook = die_with_parent()
    assert (hook is not None) == sys.platform.startswith("linux")
