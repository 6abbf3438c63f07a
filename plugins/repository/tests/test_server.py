"""The private wire-protocol server: start/stop, readiness, restart on the same port, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from kernel_repository import MongoServerError, MongoWireServer
from kernel_repository._server import ping_wire
from kernel_repository.testing import on_wire_server


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): look at its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_start_ping_restart_close() -> None:
    server = MongoWireServer()
    with pytest.raises(MongoServerError, match="start"):
        _ = server.uri
    with server:
        port, pid = server.port, server.pid
        assert pid is not None and alive(pid)
        ping_wire("127.0.0.1", port)
        assert server.uri == f"mongodb://127.0.0.1:{port}/?directConnection=true"
        server.stop()
        assert not alive(pid) and server.pid is None
        with pytest.raises(ConnectionRefusedError):
            ping_wire("127.0.0.1", port, timeout=0.5)
        server.start()
        assert server.port == port and server.pid != pid
        ping_wire("127.0.0.1", port)
    assert not server.running and not server.data_dir.exists()


def test_startup_failure_reports_the_log_tail(tmp_path: os.PathLike[str]) -> None:
    blocker = os.path.join(tmp_path, "file")
    with open(blocker, "w") as f:
        f.write("not a directory")
    server = MongoWireServer(data_dir=os.path.join(blocker, "sub"))
    with pytest.raises((MongoServerError, OSError)):
        server.start()
    server.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_the_server_dies_with_its_parent_even_on_sigkill() -> None:
    code = (
        "import sys, time\n"
        "from kernel_repository import MongoWireServer\n"
        "s = MongoWireServer().start()\n"
        "print(s.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def test_mongodb_url_switches_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONGODB_URL", raising=False)
    assert on_wire_server()
    monkeypatch.setenv("MONGODB_URL", "mongodb://db.example:27017")
    assert not on_wire_server()
