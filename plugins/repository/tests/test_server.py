"""The private wire-protocol server: start/stop, readiness, restart on the same port, no orphans."""

from __future__ import annotations

import os
import sys

import pytest
from kernel_repository import MongoServerError, MongoWireServer
from kernel_repository._server import ping_wire
from kernel_repository.testing import on_wire_server

from kernel.testing import assert_dies_with_parent
from kernel.testing import process_alive as alive


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
    assert_dies_with_parent(code, what="the wire server")


def test_mongodb_url_switches_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONGODB_URL", raising=False)
    assert on_wire_server()
    monkeypatch.setenv("MONGODB_URL", "mongodb://db.example:27017")
    assert not on_wire_server()
