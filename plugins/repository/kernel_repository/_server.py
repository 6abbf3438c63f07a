"""A private MongoDB wire-protocol server (``nx-27017``, SQLite-backed) that never outlives its parent."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import bson

_PR_SET_PDEATHSIG = 1
_OP_MSG = 2013

INSTALL_HINT = (
    "`pip install 'milo-kernel-repository[embedded]'` (installs nx-27017, a MongoDB wire-protocol "
    "server on SQLite), or point [plugins.repository] uri at a running MongoDB"
)

# Runs the server's own CLI (`-m nx_27017.nx_27017` would warn about a module imported twice) with
# neosqlite's SQL update tier switched off: that tier writes datetimes given to $set as strings
# (measured with nx-27017 0.8.1), while its Python tier keeps every BSON type. Reads are untouched.
_LAUNCH = """
import sys
try:
    from neosqlite.collection.query_helper import QueryHelper
    QueryHelper._can_use_sql_updates = lambda self, *args, **kwargs: False
except (ImportError, AttributeError):
    pass
from nx_27017.nx_27017 import main
sys.argv[0] = "nx-27017"
sys.exit(main())
"""


class MongoServerError(RuntimeError):
    """The private wire-protocol server could not be found, started or stopped."""


def wire_server_available() -> bool:
    """Whether the ``nx-27017`` package is importable (without importing it)."""
    try:
        return importlib.util.find_spec("nx_27017") is not None
    except (ImportError, ValueError):
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent dies (even by SIGKILL).

    The signal fires when the *thread* that forked exits: spawn from a long-lived thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal would ever come.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def ping_wire(host: str, port: int, timeout: float = 1.0) -> None:
    """One ``ping`` OP_MSG over a fresh socket; raises ``OSError`` or :class:`MongoServerError`."""
    body = bson.encode({"ping": 1, "$db": "admin"})
    payload = struct.pack("<I", 0) + b"\x00" + body
    header = struct.pack("<iiii", 16 + len(payload), 1, 0, _OP_MSG)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(header + payload)
        buf = b""
        while len(buf) < 4 or len(buf) < struct.unpack("<i", buf[:4])[0]:
            chunk = sock.recv(65536)
            if not chunk:
                raise MongoServerError("connection closed before the reply")
            buf += chunk
    # header (16) + flag bits (4) + section kind (1) + document
    reply = bson.decode(buf[21:])
    if reply.get("ok") != 1:
        raise MongoServerError(f"ping answered {reply!r}")


_LIVE: weakref.WeakSet[MongoWireServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()


class MongoWireServer:
    """A private ``nx-27017`` server on a free loopback port with its own data directory.

    >>> with MongoWireServer() as server:        # doctest: +SKIP
    ...     client = AsyncIOMotorClient(server.uri)

    Each logical database is one SQLite file under ``data_dir``. The port and the
    data directory survive :meth:`stop`/:meth:`start`. :meth:`close` also removes a
    temporary data directory. The child gets SIGTERM when this process dies (Linux).
    """

    def __init__(
        self,
        *,
        port: int = 0,
        data_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 20.0,
        python: str | os.PathLike[str] | None = None,
    ) -> None:
        if not wire_server_available():
            raise MongoServerError(f"the embedded MongoDB wire server is not installed: {INSTALL_HINT}")
        self.python = str(python or sys.executable)
        self.startup_timeout = startup_timeout
        self._port = port
        self._auto_port = port == 0
        self._workdir = Path(tempfile.mkdtemp(prefix="kernel-mongo-"))
        self.data_dir = Path(data_dir) if data_dir is not None else self._workdir / "data"
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        _LIVE.add(self)

    @property
    def port(self) -> int:
        return self._port

    @property
    def uri(self) -> str:
        """``mongodb://127.0.0.1:<port>/`` (single node, direct connection)."""
        if not self._port:
            raise MongoServerError("the server has no port yet: start() it first")
        return f"mongodb://127.0.0.1:{self._port}/?directConnection=true"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self._workdir / "server.log"

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote (startup errors included)."""
        out: list[str] = []
        for path in (self._workdir / "stderr.log", self.log_path):
            with contextlib.suppress(OSError):
                out += path.read_text(errors="replace").splitlines()
        return "\n".join(out[-lines:]) or "(the server logged nothing)"

    def start(self) -> Self:
        """Spawn the server and wait until it answers ``ping``; a no-op when it runs."""
        for attempt in range(3):
            self.spawn()
            try:
                self.wait_ready()
                return self
            except MongoServerError:
                # A port we picked can be taken before the server binds it: pick another.
                if self._auto_port and attempt < 2 and "in use" in self.log_tail(50):
                    self._port = 0
                    continue
                raise
        raise AssertionError("unreachable")

    def spawn(self) -> None:
        """Start the child without waiting for it (call from a long-lived thread)."""
        with self._lock:
            if self.running:
                return
            if not self._port:
                self._port = free_port()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            argv = [
                self.python, "-c", _LAUNCH,
                "--host", "127.0.0.1", "--port", str(self._port),
                "--data-dir", str(self.data_dir),
                "--pid-file", str(self._workdir / "server.pid"),
                "--log-file", str(self.log_path),
            ]
            with (self._workdir / "stderr.log").open("ab") as err:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=subprocess.STDOUT,
                    close_fds=True,
                    cwd=self._workdir,
                    # Own session: a terminal's Ctrl-C reaches the kernel, which stops us in order.
                    start_new_session=True,
                    preexec_fn=_die_with_parent(),
                )

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the server answers ``ping``; raise with the log tail if it dies or times out."""
        limit = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        last: BaseException | None = None
        while True:
            proc = self._proc
            if proc is None:
                raise MongoServerError("the server was not started")
            code = proc.poll()
            if code is not None:
                raise MongoServerError(
                    f"nx-27017 exited with code {code} during startup; log tail:\n{self.log_tail()}"
                )
            try:
                ping_wire("127.0.0.1", self._port, timeout=0.5)
                return
            except (OSError, MongoServerError, bson.errors.BSONError) as exc:
                last = exc
            if time.monotonic() >= deadline:
                self.stop()
                raise MongoServerError(
                    f"nx-27017 did not answer ping within {limit:g}s (last error: {last}); "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server (SIGKILL after ``timeout``) and reap it; data dir and port are kept."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def kill(self) -> None:
        """SIGKILL the server (a crash) and reap it."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        """Stop the server and remove its temporary directory."""
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)
        _LIVE.discard(self)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        return f"<MongoWireServer 127.0.0.1:{self._port} {'running' if self.running else 'stopped'}>"
