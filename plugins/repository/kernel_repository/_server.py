"""A private MongoDB wire-protocol server (``nx-27017``, SQLite-backed) that never outlives its parent."""

from __future__ import annotations

import importlib.util
import os
import socket
import struct
import sys
from pathlib import Path

import bson

from kernel.process import ChildServer, free_port

__all__ = [
    "INSTALL_HINT",
    "MongoServerError",
    "MongoWireServer",
    "free_port",
    "ping_wire",
    "wire_server_available",
]

_OP_MSG = 2013

INSTALL_HINT = (
    "`pip install 'milo-kernel-repository[embedded]'` (installs nx-27017, a MongoDB wire-protocol "
    "server on SQLite), or point [plugins.repository] uri at a running MongoDB"
)

# Runs the server's own CLI (`-m nx_27017.nx_27017` would warn about a module imported twice) with
# neosqlite's SQL update tier switched off: that tier writes datetimes given to $set as strings
# (measured with nx-27017 0.8.1), while its Python tier keeps every BSON type. Reads are untouched.
# Transactions are isolated server-wide (_wire_gate: one open at a time, other sessions wait), in
# the threaded server (a connection per thread, so a waiting command never holds up the owner's).
_LAUNCH = """
import sys
try:
    from neosqlite.collection.query_helper import QueryHelper
    QueryHelper._can_use_sql_updates = lambda self, *args, **kwargs: False
except (ImportError, AttributeError):
    pass
from kernel_repository._wire_gate import install
install()
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


class MongoWireServer(ChildServer):
    """A private ``nx-27017`` server on a free loopback port with its own data directory.

    >>> with MongoWireServer() as server:        # doctest: +SKIP
    ...     client = AsyncIOMotorClient(server.uri)

    Each logical database is one SQLite file under ``data_dir``. The port and the
    data directory survive :meth:`stop`/:meth:`start`. :meth:`close` also removes a
    temporary data directory. The child gets SIGTERM when this process dies (Linux).
    """

    error = MongoServerError
    probe_name = "ping"
    probe_errors = (bson.errors.BSONError,)
    poll_interval = 0.02

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
        super().__init__(port=port, startup_timeout=startup_timeout, prefix="kernel-mongo-")
        self.python = str(python or sys.executable)
        self.data_dir = Path(data_dir) if data_dir is not None else self._workdir / "data"

    @property
    def uri(self) -> str:
        """``mongodb://127.0.0.1:<port>/`` (single node, direct connection)."""
        if not self._port:
            raise MongoServerError("the server has no port yet: start() it first")
        return f"mongodb://127.0.0.1:{self._port}/?directConnection=true"

    def _describe(self) -> str:
        return "nx-27017"

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def _cwd(self) -> Path:
        return self._workdir

    def _argv(self) -> list[str]:
        return [
            self.python,
            "-c",
            _LAUNCH,
            "--host",
            "127.0.0.1",
            "--port",
            str(self._port),
            "--data-dir",
            str(self.data_dir),
            "--pid-file",
            str(self._workdir / "server.pid"),
            "--log-file",
            str(self.log_path),
            "--threaded",
        ]

    def _probe(self, timeout: float) -> None:
        ping_wire("127.0.0.1", self._port, timeout=timeout)

    def __repr__(self) -> str:
        return f"<MongoWireServer 127.0.0.1:{self._port} {'running' if self.running else 'stopped'}>"
