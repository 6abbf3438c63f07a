"""A private server child process that never outlives its parent (embedded Redis, MongoDB, ...)."""

from __future__ import annotations

import abc
import atexit
import contextlib
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import anyio

from ._os import die_with_parent, free_port, terminate

_LIVE: weakref.WeakSet[ChildServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()


class ProcessHandle(abc.ABC):
    """Something that runs processes: ``with handle:`` calls :meth:`start`, and :meth:`close` on leaving."""

    @abc.abstractmethod
    def start(self) -> Self:
        """Start the process(es); return once ready."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the process(es) and remove what they left on disk."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ChildServer(ProcessHandle):
    """A server run as a child process on a loopback port, with its own temporary directory.

    Subclasses give the command line (:meth:`_argv`) and a readiness probe (:meth:`_probe`).
    The child gets SIGTERM when this process dies (Linux), runs in its own session (a
    terminal's Ctrl-C reaches the parent, which stops it in order), and writes its output
    to ``stderr.log`` in the work directory; errors quote the log's tail. The port and the
    work directory survive :meth:`stop`/:meth:`start`; :meth:`close` removes the directory.
    """

    error: ClassVar[type[Exception]] = RuntimeError
    """Raised when the server cannot be started (subclasses name their own)."""
    probe_name: ClassVar[str] = "the readiness probe"
    """How the timeout message names the probe ("PING", "ping")."""
    log_name: ClassVar[str] = "server.log"
    """The server's own log file in the work directory (beside ``stderr.log``)."""
    port_in_use_text: ClassVar[str] = "in use"
    """Log text meaning the port was taken: :meth:`start` retries on another free port."""
    probe_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    """Exceptions the probe may raise while the server is not ready yet (besides ``OSError``)."""
    poll_interval: ClassVar[float] = 0.01
    """Seconds between readiness probes."""

    def __init__(
        self, *, port: int = 0, startup_timeout: float = 10.0, prefix: str = "kernel-server-"
    ) -> None:
        self.startup_timeout = startup_timeout
        self._port = port
        self._auto_port = port == 0
        self._workdir = Path(tempfile.mkdtemp(prefix=prefix))
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        _LIVE.add(self)

    # ------------------------------------------------------------------ for subclasses

    @abc.abstractmethod
    def _argv(self) -> list[str]:
        """The command line of the child (called in :meth:`spawn`, once the port is known)."""

    @abc.abstractmethod
    def _probe(self, timeout: float) -> None:
        """Return when the server answers; raise ``OSError``, :attr:`error` or a :attr:`probe_errors`."""

    def _prepare(self) -> None:
        """Called before each spawn, with the port chosen (write config files, create directories)."""

    def _cwd(self) -> Path | None:
        """Working directory of the child (default: the parent's)."""
        return None

    def _describe(self) -> str:
        """How messages name the server."""
        return type(self).__name__

    def _require_managed(self, action: str) -> None:
        """Raise when this handle may not ``action`` the server (see ``RedisServer.external``)."""

    # ------------------------------------------------------------------ state

    @property
    def port(self) -> int:
        """The loopback TCP port (0 before the first start when picked automatically)."""
        return self._port

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the child process runs now."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def workdir(self) -> Path:
        """The temporary directory of this server (logs, config, default data)."""
        return self._workdir

    @property
    def log_path(self) -> Path:
        """The server's own log file (:attr:`log_name` in the work directory)."""
        return self._workdir / self.log_name

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote (startup errors included)."""
        out: list[str] = []
        for path in (self._workdir / "stderr.log", self.log_path):
            with contextlib.suppress(OSError):
                out += path.read_text(errors="replace").splitlines()
        return "\n".join(out[-lines:]) or "(the server logged nothing)"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Spawn the server and wait until it answers; a no-op when it runs."""
        self._require_managed("start")
        for attempt in range(3):
            self.spawn()
            try:
                self.wait_ready()
                return self
            except self.error:
                # A free port picked by us can be taken before the server binds it: pick another.
                if self._auto_port and attempt < 2 and self.port_in_use_text in self.log_tail(50):
                    self._port = 0
                    continue
                raise
        raise AssertionError("unreachable")

    def spawn(self) -> None:
        """Start the child without waiting for it (call from a long-lived thread, see die_with_parent)."""
        self._require_managed("start")
        with self._lock:
            if self.running:
                return
            if self._needs_port() and not self._port:
                self._port = free_port()
            self._prepare()
            with (self._workdir / "stderr.log").open("ab") as err:
                self._proc = subprocess.Popen(
                    self._argv(),
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=subprocess.STDOUT,
                    close_fds=True,
                    cwd=self._cwd(),
                    start_new_session=True,
                    preexec_fn=die_with_parent(),
                )

    def _needs_port(self) -> bool:
        return True

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the probe succeeds; raise :attr:`error` with the log tail if the child
        exits or does not answer within ``timeout`` (default ``startup_timeout``), and stop it."""
        limit = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        last: BaseException | None = None
        not_ready: tuple[type[BaseException], ...] = (OSError, self.error, *self.probe_errors)
        while True:
            proc = self._proc
            if proc is None:
                raise self.error("the server was not started")
            code = proc.poll()
            if code is not None:
                raise self.error(
                    f"{self._describe()} exited with code {code} during startup; log tail:\n{self.log_tail()}"
                )
            try:
                self._probe(0.5)
                return
            except not_ready as exc:
                last = exc
            if time.monotonic() >= deadline:
                self.stop()
                raise self.error(
                    f"{self._describe()} did not answer {self.probe_name} within {limit:g}s "
                    f"(last error: {last}); "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(self.poll_interval)

    async def start_from_loop(self) -> Self:
        """:meth:`spawn` and :meth:`wait_ready` from async code; closed again if it does not come up.

        Spawns from the event loop's thread (the parent-death signal is tied to the forking thread,
        and a worker thread may exit long before this process does) and waits in a worker thread.
        """
        try:
            self.spawn()
            await anyio.to_thread.run_sync(self.wait_ready)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def aclose(self) -> None:
        """:meth:`close` from async code: in a worker thread, the event loop stays free meanwhile."""
        await anyio.to_thread.run_sync(self.close)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server (SIGKILL after ``timeout``) and reap it; work dir and port are kept."""
        self._require_managed("stop")
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                terminate(proc, timeout)

    def kill(self) -> None:
        """SIGKILL the server (a crash: no shutdown) and reap it."""
        self._require_managed("kill")
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    def restart(self) -> Self:
        """:meth:`stop` then :meth:`start` on the same port with the same work directory."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its temporary directory."""
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)
        _LIVE.discard(self)

    def __del__(self) -> None:
        # A forgotten handle must not leave a server behind (nor a "still running" warning).
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} 127.0.0.1:{self._port} {'running' if self.running else 'stopped'}>"
