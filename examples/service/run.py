"""One command for the whole service: one Redis, one wire server, N web and M worker processes.

    python -m examples.service.run [--web 1] [--workers 1] [--port 4000]

Web and worker processes must share their servers, so the launcher starts one embedded
Redis (append-only, so jobs and events survive a Redis restart; protected by a random
password) and one MongoDB wire server, then runs every process with
``KERNEL__PLUGINS__REDIS__URL`` / ``KERNEL__PLUGINS__REPOSITORY__URI`` pointing at them
(in the environment: nothing secret is ever on a command line) and one
``PROMETHEUS_MULTIPROC_DIR`` (a scrape of any web process sums all of them).

A web or worker process that dies is restarted with exponential backoff (0.5 s doubling
to 30 s; back to 0.5 s after 30 s of uptime), and so is an embedded server; the restarts
are counted in ``/health`` (``supervisor``). Only Ctrl-C or SIGTERM stops the service: the
processes (SIGTERM, then SIGKILL after a grace period), then the servers. Children die with
the launcher even when it is SIGKILLed, and the next start removes the temporary folder
such a launcher left behind. With ``--redis-url`` / ``--mongo-uri`` (or, for URLs with a
password, the two environment variables above) it uses existing servers instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

from kernel.process import die_with_parent

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "kernel.toml"
APP = "examples.service.app:app"

TEMP_PREFIX = "milo-example-"
"""Prefix of the launcher's private temporary folder (``$TMPDIR/milo-example-*``)."""
STATE_FILE = "supervisor.json"
"""In that folder: who owns it (pids) and the restart counts the web processes show in ``/health``."""
STATE_ENV = "EXAMPLE_SUPERVISOR_STATE"
"""Environment variable giving the web processes the path of the state file."""
SERVER_PREFIXES = ("kernel-redis-", "kernel-mongo-")
"""The embedded servers' own work folders (config, logs) beside it, removed with it."""
BACKOFF_FIRST, BACKOFF_MAX, STABLE_AFTER = 0.5, 30.0, 30.0
"""Restart delay: BACKOFF_FIRST doubling up to BACKOFF_MAX; reset after STABLE_AFTER seconds of uptime."""
UNOWNED_GRACE = 3600.0
"""A launcher folder with no readable state file is removed once it is this many seconds old."""


def _say(text: str, *, err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout, flush=True)


def process_identity(pid: int) -> str | None:
    """``"<pid>:<start time>"`` of a running process (survives pid reuse), ``None`` when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        if sys.platform.startswith("linux"):
            return None
        try:  # no /proc: existence only
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return f"{pid}:?"
    fields = stat[stat.rfind(")") + 2 :].split()  # the command name may contain spaces and parentheses
    if fields[0] in ("Z", "X"):  # exited, not reaped yet
        return None
    return f"{pid}:{fields[19]}"


def _alive(identity: str) -> bool:
    pid, _, _start = identity.partition(":")
    current = process_identity(int(pid)) if pid.isdigit() else None
    return current is not None and (current == identity or current.endswith(":?") or identity.endswith(":?"))


def remove_stale_folders(tmp: Path | None = None) -> list[Path]:
    """Remove the temporary folders of launchers that are gone (SIGKILLed: no cleanup ran).

    A folder is stale when its state file names no live process (launcher, children,
    servers; compared by pid *and* start time). Only this user's ``milo-example-*``
    folders are considered, and only ``kernel-redis-*`` / ``kernel-mongo-*`` siblings that
    the state file lists are removed with them. Returns the folders removed.
    """
    tmp = Path(tempfile.gettempdir()) if tmp is None else tmp
    removed: list[Path] = []
    for folder in sorted(tmp.glob(f"{TEMP_PREFIX}*")):
        try:
            info = folder.lstat()
        except OSError:
            continue
        if not folder.is_dir() or folder.is_symlink() or info.st_uid != os.getuid():
            continue
        try:
            state = json.loads((folder / STATE_FILE).read_text())
            owners = [str(x) for x in state.get("owners", [])]
            servers = [str(x) for x in state.get("servers", [])]
        except (OSError, ValueError, AttributeError):
            if time.time() - info.st_mtime < UNOWNED_GRACE:
                continue  # a launcher that is starting right now has not written it yet
            owners, servers = [], []
        if any(_alive(owner) for owner in owners):
            continue
        for path in map(Path, servers):
            if path.parent == tmp and path.name.startswith(SERVER_PREFIXES) and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def url_has_credentials(url: str) -> bool:
    """Whether a redis/mongodb URL carries credentials (a userinfo part or a ``password=`` query)."""
    try:
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
    except ValueError:
        return True  # unparsable: assume the worst
    return bool(userinfo) or re.search(r"(?i)(^|&)password=", parts.query) is not None


def wait_http(url: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """GET ``url`` every 0.1 s until it answers with a status below 500.

    Raises ``RuntimeError`` once ``proc`` exited, or at ``deadline`` (``time.monotonic()``).
    """
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer in time")
        time.sleep(0.1)


class Child:
    """One web or worker process of the stack."""

    def __init__(
        self, name: str, argv: list[str], env: Mapping[str, str], log: Path | None, url: str | None = None
    ) -> None:
        self.name, self.argv, self.env, self.log_path, self.url = name, argv, dict(env), log, url
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.ready_file: Path | None = None
        self.restarts = 0
        """How many times the supervisor started this slot again after its process died."""
        self.failures = 0
        """Deaths since the last stable run (sets the backoff)."""
        self.started_at = 0.0
        self.restart_at: float | None = None
        """When the supervisor will start it again (``None`` while it runs)."""

    def start(self) -> None:
        """Start the process (again, after it exited: the log is appended to)."""
        self.close()
        if self.ready_file is not None:
            self.ready_file.unlink(missing_ok=True)
        if self.log_path is not None:
            self._log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT if self._log else None,
            # Own session: a terminal's Ctrl-C reaches only the launcher, which stops everyone in order.
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def terminate(self) -> None:
        if self.running and self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL (a crash: no shutdown at all) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class Stack:
    """The servers and processes of one running service (used by the launcher and the system tests)."""

    def __init__(
        self,
        *,
        web: int = 1,
        workers: int = 1,
        host: str = "127.0.0.1",
        port: int = 4000,
        config: Path = CONFIG,
        redis_url: str | None = None,
        mongo_uri: str | None = None,
        log_dir: Path | None = None,
        redis_options: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        worker_args: Sequence[str] = (),
    ) -> None:
        self.web_count, self.worker_count = web, workers
        self.host, self.port, self.config = host, port, config
        self.log_dir = log_dir
        self.worker_args = list(worker_args)
        self._redis_url, self._mongo_uri = redis_url, mongo_uri
        # The redis plugin's own default: a random password, so other local users cannot use the server.
        self._redis_options = {"appendonly": True, "password": True, **(redis_options or {})}
        self._extra_env = dict(env or {})
        self.redis: Any = None  # kernel_redis.RedisServer when embedded
        self.mongo: Any = None  # kernel_repository.MongoWireServer when embedded
        self.root: Path | None = None
        """The private temporary folder: state file, servers' data, metrics, ready files."""
        self.metrics_dir: Path | None = None
        self.run_dir: Path | None = None  # the workers' ready files
        self.webs: list[Child] = []
        self.workers: list[Child] = []
        self.server_restarts: dict[str, int] = {}
        self._server_retry: dict[str, float] = {}

    # ------------------------------------------------------------------ servers

    @property
    def redis_url(self) -> str:
        return self._redis_url or self.redis.url

    @property
    def mongo_uri(self) -> str:
        return self._mongo_uri or self.mongo.uri

    def start_servers(self) -> None:
        """Create the private folder (with its state file first), then start the embedded servers."""
        self.root = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        self.write_state()
        self.metrics_dir = self.root / "metrics"
        self.run_dir = self.root / "run"
        self.metrics_dir.mkdir()
        self.run_dir.mkdir()
        if self._redis_url is None:
            from kernel_redis import RedisServer

            self.redis = RedisServer(data_dir=self.root / "redis", **self._redis_options)
            self.write_state()  # its work folder exists now: a SIGKILL from here on leaves nothing behind
            self.redis.start()
        if self._mongo_uri is None:
            from kernel_repository import MongoWireServer

            self.mongo = MongoWireServer(data_dir=self.root / "mongo")
            self.write_state()
            self.mongo.start()
        self.write_state()

    @property
    def state_path(self) -> Path | None:
        return self.root / STATE_FILE if self.root is not None else None

    def _servers(self) -> dict[str, Any]:
        return {
            name: server
            for name, server in (("redis", self.redis), ("mongo", self.mongo))
            if server is not None
        }

    def state(self) -> dict[str, Any]:
        """Who owns the folder (for :func:`remove_stale_folders`) and the restart counts (for ``/health``)."""
        procs = (*self.webs, *self.workers)
        owners = [os.getpid()] + [c.pid for c in procs if c.running and c.pid]
        owners += [server.pid for server in self._servers().values() if server.pid]
        children = {c.name: {"restarts": c.restarts, "running": c.running} for c in procs}
        servers = {
            name: {"restarts": self.server_restarts.get(name, 0), "running": bool(server.running)}
            for name, server in self._servers().items()
        }
        return {
            "owners": [ident for ident in map(process_identity, owners) if ident is not None],
            "servers": [str(server.workdir) for server in self._servers().values()],
            "restarts": sum(c.restarts for c in procs) + sum(self.server_restarts.values()),
            "processes": {**children, **servers},
        }

    def write_state(self) -> None:
        """Replace the state file atomically (readers never see half of it)."""
        path = self.state_path
        if path is None:
            return
        tmp = path.with_name(f".{STATE_FILE}.tmp")
        tmp.write_text(json.dumps(self.state()))
        tmp.replace(path)

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
        }
        env.update(
            {
                "KERNEL_CONFIG": str(self.config),
                "KERNEL__PLUGINS__REDIS__URL": self.redis_url,
                "KERNEL__PLUGINS__REPOSITORY__URI": self.mongo_uri,
                "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
                STATE_ENV: str(self.state_path),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self._extra_env)
        return env

    # ------------------------------------------------------------------ processes

    def _log(self, name: str) -> Path | None:
        return self.log_dir / f"{name}.log" if self.log_dir is not None else None

    def kernel_argv(self, *args: str) -> list[str]:
        """The command line of ``python -m kernel --config <this stack's config> ARGS``."""
        return [sys.executable, "-m", "kernel", "--config", str(self.config), *args]

    def kernel_cli(self, *args: str, timeout: float = 60.0) -> str:
        """Run one kernel CLI command against this stack's servers; its stdout (an error if it fails)."""
        out = subprocess.run(
            self.kernel_argv(*args), env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if out.returncode != 0:
            raise RuntimeError(f"kernel {' '.join(args)} exited with {out.returncode}: {out.stderr}")
        return out.stdout

    def web(self, i: int) -> Child:
        port = self.port + i
        argv = self.kernel_argv("serve", "--app", APP, "--host", self.host, "--port", str(port))
        return Child(f"web{i}", argv, self.env(), self._log(f"web{i}"), f"http://{self.host}:{port}")

    def worker(self, i: int) -> Child:
        assert self.run_dir is not None, "start_servers() first"
        ready = self.run_dir / f"worker{i}.ready"
        argv = self.kernel_argv("worker", *self.worker_args, "--ready-file", str(ready))
        child = Child(f"worker{i}", argv, self.env(), self._log(f"worker{i}"))
        child.ready_file = ready
        return child

    def start(self, ready_timeout: float = 60.0) -> None:
        """Servers, then every process; returns once each web process answers ``/health`` and
        each worker takes jobs."""
        self.start_servers()
        self.webs = [self.web(i) for i in range(self.web_count)]
        self.workers = [self.worker(i) for i in range(self.worker_count)]
        for child in (*self.webs, *self.workers):
            child.start()
        self.write_state()
        self.wait_ready(ready_timeout)

    # ------------------------------------------------------------------ supervision

    def supervise(self, now: float | None = None) -> list[str]:
        """One round of supervision: schedule a restart for each process that died, start those
        whose backoff is over, restart a dead embedded server. Returns what it did (log lines)."""
        now = time.monotonic() if now is None else now
        events: list[str] = []
        changed = False
        for child in (*self.webs, *self.workers):
            if child.running:
                if child.failures and now - child.started_at >= STABLE_AFTER:
                    child.failures = 0  # it ran long enough: the next crash restarts quickly again
                continue
            if child.restart_at is None:
                code = child.wait(0)
                self._forget_metrics(child.pid)
                child.failures += 1
                delay = min(BACKOFF_FIRST * 2 ** (child.failures - 1), BACKOFF_MAX)
                child.restart_at = now + delay
                events.append(
                    f"{child.name} (pid {child.pid}) exited with {_describe_exit(code)}; "
                    f"restarting it in {delay:g}s"
                )
                changed = True
            elif now >= child.restart_at:
                child.restart_at = None
                child.restarts += 1
                child.start()
                events.append(f"{child.name} restarted (pid {child.pid}, restart {child.restarts})")
                changed = True
        for name, server in self._servers().items():
            if server.running or now < self._server_retry.get(name, 0.0):
                continue
            try:
                server.start()  # same port, same data folder: the AOF / SQLite files are kept
            except Exception as exc:  # reported, retried after a pause
                self._server_retry[name] = now + BACKOFF_MAX / 3
                events.append(
                    f"{name} server is down and did not start again ({type(exc).__name__}); "
                    f"retrying in {BACKOFF_MAX / 3:g}s"
                )
                continue
            self.server_restarts[name] = self.server_restarts.get(name, 0) + 1
            events.append(
                f"{name} server exited; restarted it (pid {server.pid}, restart {self.server_restarts[name]})"
            )
            changed = True
        if changed:
            self.write_state()
        return events

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for child in self.webs:
            assert child.proc is not None, f"{child.name} was not started"
            try:
                wait_http(f"{child.url}/health", child.proc, deadline)
            except RuntimeError as exc:
                raise RuntimeError(f"{child.name} {exc}\n{child.log[-4000:]}") from None
        for child in self.workers:
            while child.ready_file is not None and not child.ready_file.exists():
                if not child.running:
                    raise RuntimeError(f"{child.name} exited with {child.wait(0)}\n{child.log[-4000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{child.name} did not become ready\n{child.log[-4000:]}")
                time.sleep(0.05)

    def _forget_metrics(self, pid: int | None) -> None:
        """Drop a dead process's live gauges from the shared metrics (its counters keep counting)."""
        if pid is None or self.metrics_dir is None:
            return
        with contextlib.suppress(Exception):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, str(self.metrics_dir))

    def restart_worker(self, i: int) -> Child:
        """Start a fresh worker process in slot ``i`` (after a kill)."""
        child = self.worker(i)
        self.workers[i].close()
        self.workers[i] = child
        child.start()
        self.write_state()
        return child

    def stop(self, grace: float = 20.0) -> dict[str, int | None]:
        """SIGTERM every process (SIGKILL after ``grace``), then stop the servers; returns exit codes."""
        children = [*self.webs, *self.workers]
        for child in children:
            child.terminate()
        deadline = time.monotonic() + grace
        codes: dict[str, int | None] = {}
        for child in children:
            code = child.wait(max(0.0, deadline - time.monotonic()))
            if code is None:
                child.kill()
            codes[child.name] = code
            child.close()
        for server in (self.mongo, self.redis):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.close()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
        return codes

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop(grace=5)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "an unknown status"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


class _Stop(Exception):
    pass


class _StopSignals:
    """SIGINT/SIGTERM handler: raises :class:`_Stop` at once, or only records it while
    :attr:`deferred` (the supervisor must never be interrupted between starting a process
    and recording it)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.deferred = False

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name
        if not self.deferred:
            raise _Stop(self.received)


REDIS_ENV = "KERNEL__PLUGINS__REDIS__URL"
MONGO_ENV = "KERNEL__PLUGINS__REPOSITORY__URI"


def _external(name: str) -> str | None:
    """The server URL the launcher's environment names (``embedded`` or unset: none)."""
    value = os.environ.get(name, "").strip()
    return value if value and value != "embedded" else None


def health_line(url: str) -> str:
    """One line summing up ``GET {url}/health``: overall status and each plugin's check."""
    try:
        report = httpx.get(f"{url}/health", timeout=5).json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"health: unavailable ({type(exc).__name__})"
    checks = ", ".join(f"{name} {c.get('status')}" for name, c in report.get("checks", {}).items())
    return f"health: {report.get('status')} ({checks})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.service.run", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--web", type=int, default=1, help="web processes (ports PORT, PORT+1, ...)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument(
        "--redis-url",
        help=f"use this Redis instead of starting one (with credentials: "
        f"set {REDIS_ENV} instead, a command line is visible to every local user)",
    )
    parser.add_argument(
        "--mongo-uri",
        help=f"use this MongoDB instead of starting the wire server (with "
        f"credentials: set {MONGO_ENV} instead)",
    )
    args = parser.parse_args(argv)
    if args.web < 1 or args.workers < 0:
        parser.error("--web must be >= 1 and --workers >= 0")
    for option, value, env_name in (
        ("--redis-url", args.redis_url, REDIS_ENV),
        ("--mongo-uri", args.mongo_uri, MONGO_ENV),
    ):
        if value is not None and url_has_credentials(value):
            # Never echo the value: it holds a secret.
            parser.error(
                f"{option} contains credentials, and a command line is visible to every local user "
                f"(ps); pass that URL in the environment instead: {env_name}=... "
                "python -m examples.service.run"
            )
    redis_url = args.redis_url or _external(REDIS_ENV)
    mongo_uri = args.mongo_uri or _external(MONGO_ENV)
    for folder in remove_stale_folders():
        _say(f"removed {folder}: left behind by a launcher that was killed")
    stack = Stack(
        web=args.web,
        workers=args.workers,
        host=args.host,
        port=args.port,
        config=args.config,
        redis_url=redis_url,
        mongo_uri=mongo_uri,
    )
    signals = _StopSignals()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signals)
    code = 0
    try:
        stack.start()
        _say(
            f"service ready: {', '.join(c.url or '' for c in stack.webs)} "
            f"(web pids {[c.pid for c in stack.webs]}, worker pids {[c.pid for c in stack.workers]}); "
            "try POST /users, GET/PATCH /users/{id}, /health, /health/metrics; Ctrl-C stops it"
        )
        _say(health_line(stack.webs[0].url or ""))
        while True:
            signals.deferred = True
            try:
                for line in stack.supervise():
                    _say(line, err=True)
            finally:
                signals.deferred = False
            if signals.received:
                raise _Stop(signals.received)
            time.sleep(0.2)
    except _Stop as why:
        _say(f"{why}: stopping the service")
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not abandon the children
        codes = stack.stop()
        print(f"service stopped: exit codes {codes}", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
